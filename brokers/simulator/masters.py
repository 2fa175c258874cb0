"""Instrument masters generated from the simulator's universe, in each broker's file format.

Pure Python, no Django. The Dhan compact and detailed CSVs and the Upstox gzip JSON list the
same instruments with the same ids as the simulator's REST answers and feeds; they load with
``manage.py loadinstruments`` (``brokers/dhan/master.py``, ``brokers/upstox/master.py``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime, time

from .universe import INDEX, IST, Instrument, Universe

DHAN_COMPACT_HEADER = (
    "SEM_EXM_EXCH_ID",
    "SEM_SEGMENT",
    "SEM_SMST_SECURITY_ID",
    "SEM_INSTRUMENT_NAME",
    "SEM_EXPIRY_CODE",
    "SEM_TRADING_SYMBOL",
    "SEM_LOT_UNITS",
    "SEM_CUSTOM_SYMBOL",
    "SEM_EXPIRY_DATE",
    "SEM_STRIKE_PRICE",
    "SEM_OPTION_TYPE",
    "SEM_TICK_SIZE",
    "SEM_EXPIRY_FLAG",
    "SEM_EXCH_INSTRUMENT_TYPE",
    "SEM_SERIES",
    "SM_SYMBOL_NAME",
)
DHAN_DETAILED_HEADER = (
    "EXCH_ID",
    "SEGMENT",
    "SECURITY_ID",
    "ISIN",
    "INSTRUMENT",
    "UNDERLYING_SECURITY_ID",
    "UNDERLYING_SYMBOL",
    "SYMBOL_NAME",
    "DISPLAY_NAME",
    "INSTRUMENT_TYPE",
    "SERIES",
    "LOT_SIZE",
    "SM_EXPIRY_DATE",
    "STRIKE_PRICE",
    "OPTION_TYPE",
    "TICK_SIZE",
    "EXPIRY_FLAG",
    "",
)
# Detailed-file quirk: NIFTY/BANKNIFTY derivatives name their underlying 26000/26009 there.
_DETAILED_UNDERLYING_ID = {
    "NIFTY": "26000",
    "BANKNIFTY": "26009",
    "FINNIFTY": "26037",
    "MIDCPNIFTY": "26074",
}


def _csv(header: tuple[str, ...], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _flag(instrument: Instrument) -> str:
    return "W" if instrument.weekly else "M"


def dhan_compact(universe: Universe) -> bytes:
    """The compact scrip master (``api-scrip-master.csv``)."""
    rows = []
    for i in universe.instruments:
        spec = i.spec
        if i.kind == INDEX:
            rows.append(
                [
                    spec.exchange,
                    "I",
                    str(i.security_id),
                    "INDEX",
                    "0",
                    spec.symbol,
                    "1.0",
                    spec.index_name,
                    "0001-01-01",
                    "",
                    "XX",
                    "0.0500",
                    "",
                    "INDEX",
                    "X",
                    spec.symbol,
                ]
            )
            continue
        assert i.expiry is not None
        rows.append(
            [
                spec.exchange,
                "D",
                str(i.security_id),
                "OPTIDX",
                "0",
                i.trading_symbol(),
                f"{spec.lot_size}.0",
                i.display_name(),
                f"{i.expiry.isoformat()} 14:30:00",
                f"{i.strike}.00000",
                i.option_type,
                "5.0000",
                _flag(i),
                "OP",
                "NA",
                spec.symbol,
            ]
        )
    return _csv(DHAN_COMPACT_HEADER, rows)


def dhan_detailed(universe: Universe) -> bytes:
    """The detailed scrip master (``api-scrip-master-detailed.csv``, trailing empty column)."""
    rows = []
    for i in universe.instruments:
        spec = i.spec
        if i.kind == INDEX:
            rows.append(
                [
                    spec.exchange,
                    "I",
                    str(i.security_id),
                    "NA",
                    "INDEX",
                    str(i.security_id),
                    spec.symbol,
                    spec.symbol,
                    spec.index_name,
                    "INDEX",
                    "NA",
                    "1.0",
                    "0001-01-01",
                    "-0.01000",
                    "XX",
                    "0.0500",
                    "NA",
                    "",
                ]
            )
            continue
        assert i.expiry is not None
        underlying_id = _DETAILED_UNDERLYING_ID.get(spec.symbol, str(spec.dhan_id))
        rows.append(
            [
                spec.exchange,
                "D",
                str(i.security_id),
                "NA",
                "OPTIDX",
                underlying_id,
                spec.symbol,
                i.trading_symbol(),
                i.display_name(),
                "OP",
                "NA",
                f"{spec.lot_size}.0",
                i.expiry.isoformat(),
                f"{i.strike}.00000",
                i.option_type,
                "5.0000",
                _flag(i),
                "",
            ]
        )
    return _csv(DHAN_DETAILED_HEADER, rows)


def upstox_records(universe: Universe) -> list[dict[str, object]]:
    """The records of Upstox's ``complete.json.gz``, indices first."""
    records: list[dict[str, object]] = []
    for i in universe.instruments:
        spec = i.spec
        if i.kind == INDEX:
            records.append(
                {
                    "segment": spec.upstox_index_segment,
                    "name": spec.index_name,
                    "exchange": spec.exchange,
                    "instrument_type": "INDEX",
                    "instrument_key": spec.upstox_key,
                    "exchange_token": spec.index_exchange_id,
                    "trading_symbol": spec.symbol,
                }
            )
            continue
        assert i.expiry is not None
        expiry = datetime.combine(i.expiry, time(23, 59, 59), tzinfo=IST)
        records.append(
            {
                "weekly": i.weekly,
                "segment": spec.upstox_option_segment,
                "name": spec.symbol,
                "exchange": spec.exchange,
                "expiry": int(expiry.timestamp()) * 1000,
                "instrument_type": i.option_type,
                "asset_symbol": spec.symbol,
                "underlying_symbol": spec.symbol,
                "instrument_key": i.upstox_key,
                "lot_size": spec.lot_size,
                "freeze_quantity": float(spec.freeze_qty),
                "exchange_token": str(i.security_id),
                "minimum_lot": spec.lot_size,
                "asset_key": spec.upstox_key,
                "underlying_key": spec.upstox_key,
                "tick_size": 5.0,
                "asset_type": "INDEX",
                "underlying_type": "INDEX",
                "trading_symbol": i.upstox_symbol(),
                "strike_price": float(i.strike or 0),
                "qty_multiplier": 1.0,
            }
        )
    return records


def upstox_json_gz(universe: Universe, *, exchange: str | None = None) -> bytes:
    """``complete.json.gz`` (or ``NSE.json.gz``/``BSE.json.gz`` with ``exchange``)."""
    records = upstox_records(universe)
    if exchange is not None:
        records = [r for r in records if r["exchange"] == exchange]
    return gzip.compress(json.dumps(records).encode(), compresslevel=6, mtime=0)
