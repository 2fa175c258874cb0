"""Upstox instruments master (JSON array, optionally gzip) → ``InstrumentRecord``s. Pure Python.

The file is one large JSON array; it is streamed record by record with ijson, in bounded
memory: one record may not outgrow ``MAX_RECORD_BYTES`` (ijson would build a 150 MB string
whole before yielding it; the budget stops reading long before) nor the file ``MAX_RECORDS``.
Quirks are in shared/docs/protocols/upstox.md §4: ``expiry`` is epoch ms at 23:59:59 IST,
``tick_size`` is paise, index records carry no lot or tick size.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import ijson

from ..exceptions import InstrumentFileError
from ..masters import (
    FUTURE,
    INDEX,
    MAX_CONTENT_BYTES,
    MAX_RECORD_BYTES,
    MAX_RECORDS,
    OPTION,
    READ_CHUNK,
    RECORD_BUDGET,
    InstrumentRecord,
    KeepFilter,
    RecordBudget,
    RecordTooLarge,
    canonical_underlying,
    kb,
    master_content,
    paise_to_rupees,
    parse_decimal,
    parse_expiry,
    parse_lot_size,
    too_many_records,
)


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
    if gzipped is False:
        return stream
    return master_content(stream, max_bytes=MAX_CONTENT_BYTES, setting="MAX_CONTENT_BYTES")


def parse_instruments(
    stream: BinaryIO, *, keep: KeepFilter, gzipped: bool | None = None
) -> Iterator[InstrumentRecord]:
    """Yield the kept records of an Upstox instruments JSON array read from ``stream``.

    ``gzipped=None`` detects gzip by its magic bytes. Raises InstrumentFileError with the
    1-based record number for malformed JSON or text that is not UTF-8, a broken gzip stream,
    a record that is not an object or is larger than MAX_RECORD_BYTES, more than MAX_RECORDS
    records, or a kept record with a missing/bad field.
    """
    budget = RecordBudget(_open(stream, gzipped), RECORD_BUDGET)
    source = io.BufferedReader(budget, buffer_size=READ_CHUNK)
    number = 0
    try:
        for record in ijson.items(source, "item", use_float=True, buf_size=READ_CHUNK):
            budget.record_done()
            number += 1
            if number > MAX_RECORDS:
                raise too_many_records(number, MAX_RECORDS)
            if not isinstance(record, dict):
                raise InstrumentFileError("is not a JSON object", row=number)
            kind = _kind(record)
            if kind is None:
                continue
            underlying = _underlying(record, kind, number)
            if keep.keeps(kind, underlying):
                yield _record(record, kind=kind, underlying=underlying, row=number)
    except RecordTooLarge:
        raise InstrumentFileError(
            f"a record is larger than {kb(MAX_RECORD_BYTES)}: not an Upstox instruments file",
            row=number + 1,
        ) from None
    except ijson.JSONError as exc:
        where = "after this record" if number else "(a binary file?)"
        raise InstrumentFileError(
            f"malformed JSON {where}: {_one_line(exc)}", row=number + 1
        ) from exc
    except UnicodeDecodeError:
        raise InstrumentFileError(
            "not UTF-8 text (a binary file?): give Upstox's instruments JSON (.json or .json.gz)",
            row=number + 1,
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InstrumentFileError(f"broken gzip stream: {exc}", row=number + 1) from exc
    if number == 0:
        raise InstrumentFileError("no instrument records: expected a JSON array of objects", row=1)


def _one_line(exc: Exception) -> str:
    """ijson's messages may be bytes quoting the bad input over several lines: the first."""
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = str(text).strip().splitlines()
    return lines[0][:200].rstrip(".") if lines else type(exc).__name__


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
        row=row,
    )
