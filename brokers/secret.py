"""A wrapper that keeps secrets out of reprs, logs, f-strings and error messages.

Pure Python. ``Secret`` is deliberately not a ``str``: code must call ``reveal()`` at the one
place the plaintext is needed (an HTTP header, a feed URL), which makes leaks easy to review.

A secret read from the database is *sealed*: it holds the ciphertext and decrypts on the first
``reveal()``, so a secret that no configured key decrypts breaks only the code that needs its
plaintext (with a message naming the account and field), not every query that loads the row.
"""

from __future__ import annotations

from collections.abc import Callable

from .exceptions import SecretDecryptionError
from .logredact import remember

# (ciphertext, label) -> plaintext; raises SecretDecryptionError naming label.
Opener = Callable[[str, str], str]


class Secret:
    """An opaque secret value; ``str``/``repr`` show ``'***'``, ``reveal()`` returns the text."""

    __slots__ = ("_ciphertext", "_label", "_opener", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps str, not {type(value).__name__}")
        self._value: str | None = value
        self._ciphertext: str | None = None
        self._opener: Opener | None = None
        self._label = "a secret"

    @classmethod
    def sealed(cls, ciphertext: str, opener: Opener, *, label: str) -> Secret:
        """A secret stored as ``ciphertext`` (non-empty), decrypted by ``opener`` on first use.

        ``label`` names it in errors (e.g. "the access token of broker account 'main'")."""
        if not ciphertext:
            raise ValueError("a sealed Secret needs ciphertext; use Secret('') for no secret")
        secret = cls("")
        secret._value = None
        secret._ciphertext = ciphertext
        secret._opener = opener
        secret._label = label
        return secret

    @property
    def ciphertext(self) -> str | None:
        """The stored ciphertext this secret was read from; None for a secret set in code."""
        return self._ciphertext

    @property
    def label(self) -> str:
        return self._label

    def describe(self, label: str) -> None:
        """Name this secret in errors from now on (the model field does, once it knows the row)."""
        self._label = label

    def reveal(self) -> str:
        """Return the plaintext. Call only where the broker needs it.

        Raises SecretDecryptionError (naming the secret, never its value) when it was read from
        the database and no configured key decrypts it. The plaintext is remembered by the log
        redaction, which masks it verbatim in every later log record of this process.
        """
        if self._value is None:
            assert self._ciphertext is not None and self._opener is not None
            self._value = self._opener(self._ciphertext, self._label)
        remember(self._value)
        return self._value

    @property
    def readable(self) -> bool:
        """False when this secret was read from the database and no configured key decrypts it."""
        try:
            self.reveal()
        except SecretDecryptionError:
            return False
        return True

    def problem(self) -> str | None:
        """The message of why the plaintext cannot be had (None when it can)."""
        try:
            self.reveal()
        except SecretDecryptionError as exc:
            return str(exc)
        return None

    def __bool__(self) -> bool:
        # A stored ciphertext is a secret, readable or not: it never stands for "no secret".
        return bool(self._ciphertext) or bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        if self._ciphertext is not None and self._ciphertext == other._ciphertext:
            return True
        try:
            return self.reveal() == other.reveal()
        except SecretDecryptionError:
            return False  # one nobody can read equals nothing but its own ciphertext

    def __hash__(self) -> int:
        return hash(("Secret", self.reveal()))

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
