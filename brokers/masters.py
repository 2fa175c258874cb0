"""Instrument-master records and the parsing rules both brokers' masters share. Pure Python.

A parser (``brokers/<broker>/master.py``) streams a master file and yields ``InstrumentRecord``s
for the rows the ``KeepFilter`` keeps. Any malformed kept row raises ``InstrumentFileError``
with its 1-based row number (the header is row 1 in a CSV; the first record is row 1 in JSON),
so the loader can reject the whole file and keep the previous master.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from .exceptions import InstrumentFileError
from .exchange import IST

INDEX = "index"
FUTURE = "future"
OPTION = "option"
KINDS = (INDEX, FUTURE, OPTION)

# Canonical underlying symbols for index names as brokers spell them in masters.
INDEX_ALIASES = {
    "NIFTY 50": "NIFTY",
    "NIFTY50": "NIFTY",
    "NIFTY BANK": "BANKNIFTY",
    "NIFTY FIN SERVICE": "FINNIFTY",
    "NIFTY FINANCIAL SERVICES": "FINNIFTY",
    "NIFTY MID SELECT": "MIDCPNIFTY",
    "NIFTY MIDCAP SELECT": "MIDCPNIFTY",
    "INDIA VIX": "INDIAVIX",
}


def canonical_underlying(name: str) -> str:
    """Return the product's symbol for an underlying name ("Nifty Bank" → "BANKNIFTY")."""
    upper = " ".join(name.upper().split())
    return INDEX_ALIASES.get(upper, upper.replace(" ", ""))


@dataclass(frozen=True, slots=True)
class InstrumentRecord:
    """One kept instrument-master row, normalised. Prices are rupees."""

    segment: str
    broker_id: str
    trading_symbol: str
    kind: str
    underlying: str
    expiry: date | None
    strike: Decimal | None
    option_type: str
    lot_size: int
    tick_size: Decimal | None  # None: the master gives none (index rows)
    exchange_token: str = ""


@dataclass(frozen=True, slots=True)
class KeepFilter:
    """Which rows a load keeps: instrument kinds and (optionally) underlyings."""

    kinds: frozenset[str] = frozenset(KINDS)
    underlyings: frozenset[str] | None = None  # None keeps every underlying

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown instrument kinds {sorted(unknown)}; use {', '.join(KINDS)}")

    def keeps(self, kind: str, underlying: str) -> bool:
        """True when a row of this kind and underlying is kept."""
        if kind not in self.kinds:
            return False
        return self.underlyings is None or underlying in self.underlyings


def parse_decimal(raw: str | float | int | None, *, row: int, field: str) -> Decimal:
    """Return ``raw`` as a Decimal; raise InstrumentFileError naming the row and field."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InstrumentFileError(f"{field} is empty", row=row)
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise InstrumentFileError(f"{field} {raw!r} is not a number", row=row) from None
    if not value.is_finite():
        raise InstrumentFileError(f"{field} {raw!r} is not a finite number", row=row)
    return value


def parse_lot_size(raw: str | float | int | None, *, row: int, field: str) -> int:
    """Return a lot size (masters write "65.0"); must be a positive whole number."""
    value = parse_decimal(raw, row=row, field=field)
    if value <= 0 or value != value.to_integral_value():
        raise InstrumentFileError(f"{field} {raw!r} is not a positive whole number", row=row)
    return int(value)


def paise_to_rupees(value: Decimal, *, row: int, field: str) -> Decimal:
    """Convert a tick size written in paise (5.0 = ₹0.05) to rupees; must be positive."""
    if value <= 0:
        raise InstrumentFileError(f"{field} {value} is not a positive tick size", row=row)
    return (value / 100).normalize()


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d-%m-%Y",
    "%d/%m/%Y",
    "%d-%b-%Y",
)
NO_EXPIRY = {"", "0001-01-01", "0001-01-01 00:00:00", "NA", "-1"}


def parse_expiry(raw: str | int | float | None, *, row: int, field: str) -> date | None:
    """Return an expiry date in every form the masters use, or None for "no expiry".

    Accepted: ``2026-09-29``, ``2026-07-30 14:30:00`` (date part taken), ``29-09-2026``,
    ``29/09/2026``, ``29-Sep-2026``, epoch milliseconds (Upstox: 23:59:59 IST of the expiry
    day, converted in IST), and the "no expiry" markers ``0001-01-01``/empty.
    Raises InstrumentFileError for anything else.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise InstrumentFileError(f"{field} {raw!r} is not a date", row=row)
    if isinstance(raw, int | float) or (isinstance(raw, str) and raw.strip().isdigit()):
        millis = int(raw)
        if millis <= 0:
            return None
        try:
            return datetime.fromtimestamp(millis / 1000, tz=UTC).astimezone(IST).date()
        except (OverflowError, OSError, ValueError):
            raise InstrumentFileError(
                f"{field} {raw!r} is not epoch milliseconds", row=row
            ) from None
    text = raw.strip()
    if text in NO_EXPIRY:
        return None
    parsed = _parse_date_text(text)
    if parsed is None:
        raise InstrumentFileError(f"{field} {raw!r} is not a date", row=row)
    return parsed


@lru_cache(maxsize=4096)
def _parse_date_text(text: str) -> date | None:
    """A master holds a few hundred distinct expiry strings: parse each once."""
    if len(text) >= 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit():
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            pass  # not ISO after all (e.g. a day 45): the formats below decide
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None
