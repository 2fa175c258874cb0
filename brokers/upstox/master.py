"""Upstox instruments master (JSON array, optionally gzip) → ``InstrumentRecord``s. Pure Python.

The file is one large JSON array; it is streamed record by record with ijson (bounded
memory). Quirks are in shared/docs/protocols/upstox.md §4: ``expiry`` is epoch ms at
23:59:59 IST, ``tick_size`` is paise, index records carry no lot or tick size.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import ijson

from ..exceptions import InstrumentFileError
from ..masters import (
    FUTURE,
    INDEX,
    OPTION,
    InstrumentRecord,
    KeepFilter,
    canonical_underlying,
    paise_to_rupees,
    parse_decimal,
    parse_expiry,
    parse_lot_size,
)

GZIP_MAGIC = b"\x1f\x8b"


def _kind(record: dict[str, Any]) -> str | None:
    segment = str(record.get("segment", ""))
    instrument_type = str(record.get("instrument_type", ""))
    if segment.endswith("_INDEX") or instrument_type == "INDEX":
        return INDEX
    if record.get("underlying_type") != "INDEX":
        return None
    if instrument_type == "FUT":
        return FUTURE
    if instrument_type in {"CE", "PE"}:
        return OPTION
    return None


def _open(stream: BinaryIO, gzipped: bool | None) -> BinaryIO:
    if gzipped is None:
        head = stream.read(2)
        stream.seek(0)
        gzipped = head == GZIP_MAGIC
    return gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream  # type: ignore[return-value]


def parse_instruments(
    stream: BinaryIO, *, keep: KeepFilter, gzipped: bool | None = None
) -> Iterator[InstrumentRecord]:
    """Yield the kept records of an Upstox instruments JSON array read from ``stream``.

    ``gzipped=None`` detects gzip by its magic bytes (the stream must then be seekable).
    Raises InstrumentFileError with the 1-based record number for malformed JSON, a broken
    gzip stream, a record that is not an object, or a kept record with a missing/bad field.
    """
    source = _open(stream, gzipped)
    number = 0
    try:
        for record in ijson.items(source, "item", use_float=True):
            number += 1
            if not isinstance(record, dict):
                raise InstrumentFileError("is not a JSON object", row=number)
            kind = _kind(record)
            if kind is None:
                continue
            underlying = _underlying(record, kind, number)
            if keep.keeps(kind, underlying):
                yield _record(record, kind=kind, underlying=underlying, row=number)
    except ijson.JSONError as exc:
        raise InstrumentFileError(
            f"malformed JSON after this record: {exc}", row=number + 1
        ) from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InstrumentFileError(f"broken gzip stream: {exc}", row=number + 1) from exc
    if number == 0:
        raise InstrumentFileError("no instrument records: expected a JSON array of objects", row=1)


def _field(record: dict[str, Any], key: str, row: int) -> Any:
    value = record.get(key)
    if value is None or value == "":
        raise InstrumentFileError(f"field {key!r} is missing", row=row)
    return value


def _underlying(record: dict[str, Any], kind: str, row: int) -> str:
    if kind == INDEX:
        name = str(record.get("name") or "")
        symbol = str(record.get("trading_symbol") or "")
        if not name and not symbol:
            raise InstrumentFileError("index record without name or trading_symbol", row=row)
        canonical = canonical_underlying(name) if name else ""
        if name and canonical != name.upper().replace(" ", ""):
            return canonical  # a known alias ("Nifty Bank" → BANKNIFTY)
        return canonical_underlying(symbol or name)
    return canonical_underlying(str(_field(record, "underlying_symbol", row)))


def _record(record: dict[str, Any], *, kind: str, underlying: str, row: int) -> InstrumentRecord:
    key = str(_field(record, "instrument_key", row))
    segment = str(_field(record, "segment", row))
    if "|" not in key:
        raise InstrumentFileError(f"instrument_key {key!r} has no segment prefix", row=row)
    if kind == INDEX:
        tick = record.get("tick_size")
        tick_size = None
        if tick:
            tick_size = paise_to_rupees(
                parse_decimal(tick, row=row, field="tick_size"), row=row, field="tick_size"
            )
        lot = record.get("lot_size")
        lot_size = parse_lot_size(lot, row=row, field="lot_size") if lot else 1
        expiry = None
    else:
        tick_size = paise_to_rupees(
            parse_decimal(_field(record, "tick_size", row), row=row, field="tick_size"),
            row=row,
            field="tick_size",
        )
        lot_size = parse_lot_size(_field(record, "lot_size", row), row=row, field="lot_size")
        expiry = parse_expiry(_field(record, "expiry", row), row=row, field="expiry")
        if expiry is None:
            raise InstrumentFileError(f"a {kind} without an expiry", row=row)
    strike = None
    option_type = ""
    if kind == OPTION:
        option_type = str(record["instrument_type"])
        strike = parse_decimal(_field(record, "strike_price", row), row=row, field="strike_price")
        if strike <= 0:
            raise InstrumentFileError(f"strike_price {strike} is not positive", row=row)
    return InstrumentRecord(
        segment=segment,
        broker_id=key,
        trading_symbol=str(record.get("trading_symbol") or record.get("name") or key),
        kind=kind,
        underlying=underlying,
        expiry=expiry,
        strike=strike,
        option_type=option_type,
        lot_size=lot_size,
        tick_size=tick_size,
        exchange_token=str(record.get("exchange_token") or ""),
    )
