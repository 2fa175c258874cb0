"""Instrument-master records and the parsing rules both brokers' masters share. Pure Python.

A parser (``brokers/<broker>/master.py``) streams a master file and yields ``InstrumentRecord``s
for the rows the ``KeepFilter`` keeps. Any malformed kept row raises ``InstrumentFileError``
with its 1-based row number (the header is row 1 in a CSV; the first record is row 1 in JSON),
so the loader can reject the whole file and keep the previous master.

Limits keep a hostile or broken file cheap to reject: ``master_content`` gunzips and caps what a
file decompresses to; each parser caps one record (``MAX_RECORD_BYTES``: a JSON item, a CSV row)
and the number of records (``MAX_RECORDS``), so memory stays bounded whatever the file holds.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, BinaryIO

from .exceptions import InstrumentFileError
from .exchange import IST

INDEX = "index"
FUTURE = "future"
OPTION = "option"
KINDS = (INDEX, FUTURE, OPTION)

# One record of a real master is well under 1 KB (a JSON item, a CSV row): 64 KB is generous.
MAX_RECORD_BYTES = 64 * 1024
# The real masters list a few hundred thousand records.
MAX_RECORDS = 2_000_000
# What a master may decompress to when a parser is called directly (the loader applies the
# INSTRUMENT_MASTER_MAX_MB setting before that).
MAX_CONTENT_BYTES = 2 * 1024 * 1024 * 1024
# Parsers read in chunks of this size; a record's budget is MAX_RECORD_BYTES plus the read-ahead.
READ_CHUNK = 16 * 1024
RECORD_BUDGET = MAX_RECORD_BYTES + 2 * READ_CHUNK
GZIP_MAGIC = b"\x1f\x8b"
# A download may be a .gz file sent gzip-encoded: two layers at most.
_MAX_GZIP_LAYERS = 2

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
    row: int = 0  # where it is in the file (as InstrumentFileError counts rows)


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


# --- limits ------------------------------------------------------------------------------------


def kb(size: int) -> str:
    """``size`` bytes in KB or MB for messages ("64 KB", "500 MB")."""
    return f"{size / 1024 / 1024:g} MB" if size >= 1024 * 1024 else f"{size / 1024:g} KB"


class _CappedReader(io.RawIOBase):
    """A read-only raw stream over ``raw`` that raises InstrumentFileError(``message``) once
    more than ``limit`` bytes were read. Closing it leaves ``raw`` open."""

    def __init__(self, raw: BinaryIO, limit: int, message: str) -> None:
        super().__init__()
        self._raw = raw
        self._left = limit
        self._message = message

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._raw.read(len(buffer))
        except _GZIP_ERRORS as exc:
            raise _broken_gzip(exc) from exc
        count = len(data)
        self._left -= count
        if self._left < 0:
            raise InstrumentFileError(self._message)
        buffer[:count] = data
        return count

    def readable(self) -> bool:
        return True


_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def _broken_gzip(exc: Exception) -> InstrumentFileError:
    return InstrumentFileError(f"broken gzip stream ({exc}): download the master again")


def master_content(stream: BinaryIO, *, max_bytes: int, setting: str) -> BinaryIO:
    """Return a buffered binary stream of the master's content: ``stream`` itself, or what it
    decompresses to when it is gzip (by its magic bytes, whatever the name; two layers at most).

    Reading past ``max_bytes`` of content raises InstrumentFileError naming ``setting``; gzip
    is decompressed as it is read, so a small file that would unpack to gigabytes costs
    ``max_bytes`` of reading at most and no more memory than a buffer.
    """
    source = io.BufferedReader(_Unclosed(stream))
    for _ in range(_MAX_GZIP_LAYERS):
        try:
            head = source.peek(2)[:2]
        except _GZIP_ERRORS as exc:
            raise _broken_gzip(exc) from exc
        if head != GZIP_MAGIC:
            break
        source = io.BufferedReader(gzip.GzipFile(fileobj=source, mode="rb"))  # type: ignore[arg-type]
    message = (
        f"the file's content is larger than {kb(max_bytes)} ({setting}, after decompression): "
        "not a broker's instrument master, or raise the setting if the broker's master really "
        "grew that large"
    )
    return io.BufferedReader(_CappedReader(source, max_bytes, message), buffer_size=64 * 1024)


class _Unclosed(io.RawIOBase):
    """A raw view of ``raw`` that leaves it open when closed: the caller owns the file."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


class RecordBudget(io.RawIOBase):
    """A raw stream over ``raw`` for parsers: raises RecordTooLarge once more than ``limit``
    bytes were read since the parser last called ``record_done()``."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self.limit = limit
        self._used = 0

    def record_done(self) -> None:
        """A record ended: the next one starts with the whole budget."""
        self._used = 0

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        count = len(data)
        self._used += count
        if self._used > self.limit:
            raise RecordTooLarge
        buffer[:count] = data
        return count

    def readable(self) -> bool:
        return True


class RecordTooLarge(Exception):
    """Internal to the parsers: one record outgrew its budget (they raise InstrumentFileError)."""


def too_many_records(row: int, limit: int) -> InstrumentFileError:
    """The error for a file past ``limit`` (MAX_RECORDS) records."""
    return InstrumentFileError(
        f"more than {limit:,} records: not a broker's instrument master", row=row
    )
