"""DhanHQ exchange segments: the string names of the JSON API and the numbers of the binary feed.

Pure Python, no Django. This module is the only place the table lives; the codec, the client
messages and the simulator all read it from here.
"""

from __future__ import annotations

# Number 6 is unused by Dhan: it is deliberately absent, so it is refused like any unknown number.
SEGMENT_NAMES: dict[int, str] = {
    0: "IDX_I",
    1: "NSE_EQ",
    2: "NSE_FNO",
    3: "NSE_CURRENCY",
    4: "BSE_EQ",
    5: "MCX_COMM",
    7: "BSE_CURRENCY",
    8: "BSE_FNO",
}

SEGMENT_NUMBERS: dict[str, int] = {name: number for number, name in SEGMENT_NAMES.items()}

# Indexed by the header byte: the name, or None for a number Dhan does not define. A 256-entry
# tuple turns the decoder's lookup into one index operation with no exception path.
SEGMENT_BY_BYTE: tuple[str | None, ...] = tuple(SEGMENT_NAMES.get(n) for n in range(256))


def segment_number(name: str) -> int:
    """Return the binary segment number for a segment name such as ``"NSE_FNO"``.

    Raises ValueError for a name Dhan does not define (names are case-sensitive).
    """
    try:
        return SEGMENT_NUMBERS[name]
    except KeyError:
        known = ", ".join(SEGMENT_NUMBERS)
        raise ValueError(
            f"unknown Dhan exchange segment {name!r}; expected one of {known}"
        ) from None


def segment_name(number: int) -> str:
    """Return the segment name for a binary segment number; raises ValueError if undefined."""
    try:
        return SEGMENT_NAMES[number]
    except KeyError:
        raise ValueError(f"unknown Dhan exchange segment number {number!r}") from None
