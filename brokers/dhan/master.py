"""DhanHQ scrip master (CSV, compact or detailed header) → ``InstrumentRecord``s. Pure Python.

Streams the file row by row, in bounded memory: a row may not outgrow ``MAX_RECORD_BYTES`` nor
the file ``MAX_RECORDS`` rows. Header and quirks are in
shared/docs/protocols/dhan.md §3: derivative tick sizes are paise, lot sizes are float strings,
index rows carry the expiry ``0001-01-01``, compact expiries may carry a time of day.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import BinaryIO

from ..exceptions import InstrumentFileError
from ..masters import (
    FUTURE,
    INDEX,
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
    paise_to_rupees,
    parse_decimal,
    parse_expiry,
    parse_lot_size,
    too_many_records,
)

# Logical column → header name, per layout.
COMPACT = {
    "exchange": "SEM_EXM_EXCH_ID",
    "segment": "SEM_SEGMENT",
    "security_id": "SEM_SMST_SECURITY_ID",
    "instrument": "SEM_INSTRUMENT_NAME",
    "trading_symbol": "SEM_TRADING_SYMBOL",
    "lot_size": "SEM_LOT_UNITS",
    "expiry": "SEM_EXPIRY_DATE",
    "strike": "SEM_STRIKE_PRICE",
    "option_type": "SEM_OPTION_TYPE",
    "tick_size": "SEM_TICK_SIZE",
}
DETAILED = {
    "exchange": "EXCH_ID",
    "segment": "SEGMENT",
    "security_id": "SECURITY_ID",
    "instrument": "INSTRUMENT",
    "underlying_symbol": "UNDERLYING_SYMBOL",
    "trading_symbol": "SYMBOL_NAME",
    "lot_size": "LOT_SIZE",
    "expiry": "SM_EXPIRY_DATE",
    "strike": "STRIKE_PRICE",
    "option_type": "OPTION_TYPE",
    "tick_size": "TICK_SIZE",
}

# (exchange, master segment letter) → the feed/REST segment name.
FEED_SEGMENTS = {
    ("NSE", "I"): "IDX_I",
    ("BSE", "I"): "IDX_I",
    ("NSE", "D"): "NSE_FNO",
    ("BSE", "D"): "BSE_FNO",
    ("NSE", "E"): "NSE_EQ",
    ("BSE", "E"): "BSE_EQ",
    ("NSE", "C"): "NSE_CURRENCY",
    ("BSE", "C"): "BSE_CURRENCY",
    ("MCX", "M"): "MCX_COMM",
}
KINDS_BY_INSTRUMENT = {"INDEX": INDEX, "FUTIDX": FUTURE, "OPTIDX": OPTION}


def _layout(header: list[str]) -> dict[str, int]:
    names = [h.strip().lstrip("\ufeff") for h in header]
    layout = DETAILED if "SECURITY_ID" in names else COMPACT
    missing = [col for col in layout.values() if col not in names]
    if missing:
        raise InstrumentFileError(
            f"missing column(s) {', '.join(missing)}: not a DhanHQ scrip master "
            "(compact or detailed header expected)",
            row=1,
        )
    return {logical: names.index(col) for logical, col in layout.items()}


def parse_scrip_master(stream: BinaryIO, *, keep: KeepFilter) -> Iterator[InstrumentRecord]:
    """Yield the kept rows of a Dhan scrip master read from the binary ``stream``.

    Raises InstrumentFileError (with the row number, header = row 1) for a missing column, a
    short row, a row larger than MAX_RECORD_BYTES, more than MAX_RECORDS rows, text that is not
    UTF-8 or holds NUL bytes (a binary file), or a kept row with a bad number, date, option type
    or segment.
    """
    budget = RecordBudget(stream, RECORD_BUDGET)
    text = io.TextIOWrapper(
        io.BufferedReader(budget, buffer_size=READ_CHUNK), encoding="utf-8-sig", newline=""
    )
    reader = csv.reader(text)
    row_number = 0  # the last row read whole
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise InstrumentFileError("the file is empty", row=1) from None
        row_number = 1
        budget.record_done()
        _check_text(header)
        col = _layout(header)
        width = max(col.values()) + 1
        underlying_col = col.get("underlying_symbol")
        for row in reader:
            budget.record_done()
            row_number += 1
            if row_number > MAX_RECORDS:
                raise too_many_records(row_number, MAX_RECORDS)
            if not row:
                continue
            if len(row) < width:
                raise InstrumentFileError(
                    f"has {len(row)} columns, the header needs at least {width}", row=row_number
                )
            kind = KINDS_BY_INSTRUMENT.get(row[col["instrument"]].strip())
            if kind is None:
                continue
            symbol = row[col["trading_symbol"]].strip()
            if underlying_col is not None and row[underlying_col].strip() not in {"", "NA"}:
                underlying = canonical_underlying(row[underlying_col])
            else:
                underlying = canonical_underlying(symbol.split("-", 1)[0])
            if not keep.keeps(kind, underlying):
                continue
            yield _record(row, col, kind=kind, underlying=underlying, symbol=symbol, row=row_number)
    except RecordTooLarge:
        raise InstrumentFileError(
            f"a row is larger than {kb(MAX_RECORD_BYTES)}: not a DhanHQ scrip master",
            row=row_number + 1,
        ) from None
    except UnicodeDecodeError:
        raise InstrumentFileError(_BINARY, row=row_number + 1) from None
    except csv.Error as exc:
        raise InstrumentFileError(f"not a CSV row: {exc}", row=row_number + 1) from None


_BINARY = "not UTF-8 text (a binary file?): give DhanHQ's scrip master CSV (.csv or .csv.gz)"


def _check_text(header: list[str]) -> None:
    if any("\x00" in name for name in header):
        raise InstrumentFileError(_BINARY.replace("not UTF-8 text", "holds NUL bytes"), row=1)


def _record(
    cells: list[str], col: dict[str, int], *, kind: str, underlying: str, symbol: str, row: int
) -> InstrumentRecord:
    exchange = cells[col["exchange"]].strip().upper()
    letter = cells[col["segment"]].strip().upper()
    segment = FEED_SEGMENTS.get((exchange, letter))
    if segment is None:
        raise InstrumentFileError(f"unknown exchange/segment {exchange}/{letter}", row=row)
    security_id = cells[col["security_id"]].strip()
    if not security_id.isdigit():
        raise InstrumentFileError(f"security id {security_id!r} is not a number", row=row)
    tick = parse_decimal(cells[col["tick_size"]], row=row, field="tick size")
    expiry = parse_expiry(cells[col["expiry"]], row=row, field="expiry date")
    strike = None
    option_type = ""
    if kind == INDEX:
        tick_size = tick  # index rows write rupees (0.0500)
        if tick_size <= 0:
            raise InstrumentFileError(f"tick size {tick} is not positive", row=row)
        expiry = None
    else:
        tick_size = paise_to_rupees(tick, row=row, field="tick size")  # derivative rows: paise
        if expiry is None:
            raise InstrumentFileError(f"a {kind} without an expiry date", row=row)
    if kind == OPTION:
        option_type = cells[col["option_type"]].strip().upper()
        if option_type not in {"CE", "PE"}:
            raise InstrumentFileError(f"option type {option_type!r} is not CE or PE", row=row)
        strike = parse_decimal(cells[col["strike"]], row=row, field="strike price")
        if strike <= 0:
            raise InstrumentFileError(f"strike price {strike} is not positive", row=row)
    return InstrumentRecord(
        segment=segment,
        broker_id=security_id,
        trading_symbol=symbol,
        kind=kind,
        underlying=underlying,
        expiry=expiry,
        strike=strike,
        option_type=option_type,
        lot_size=parse_lot_size(cells[col["lot_size"]], row=row, field="lot size"),
        tick_size=tick_size,
        exchange_token=security_id,
        row=row,
    )
