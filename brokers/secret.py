"""A wrapper that keeps secrets out of reprs, logs, f-strings and error messages.

Pure Python. ``Secret`` is deliberately not a ``str``: code must call ``reveal()`` at the one
place the plaintext is needed (an HTTP header, a feed URL), which makes leaks easy to review.
"""

from __future__ import annotations


class Secret:
    """An opaque secret value; ``str``/``repr`` show ``'***'``, ``reveal()`` returns the text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the plaintext. Call only where the broker needs it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values are not picklable: pass ids and load secrets where needed")


def reveal(value: Secret | str | None) -> str:
    """Return the plaintext of a Secret (or a plain str); '' for None."""
    if value is None:
        return ""
    if isinstance(value, Secret):
        return value.reveal()
    return value
