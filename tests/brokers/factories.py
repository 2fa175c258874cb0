"""Builders for test data: accounts with clearly fake secrets, small master files."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date, datetime, time, timedelta

from brokers.masters import IST
from brokers.models import BrokerAccount
from brokers.secret import Secret

FAKE_DHAN_TOKEN = "FAKE-DHAN-TOKEN-eyJhbGciOiJIUzUxMiJ9.test-only"
FAKE_UPSTOX_SECRET = "FAKE-UPSTOX-SECRET-test-only-0000"
FAKE_UPSTOX_TOKEN = "FAKE-UPSTOX-TOKEN-test-only-1111"


def dhan_account(name: str = "main", **fields: object) -> BrokerAccount:
    account = BrokerAccount(name=name, kind="dhan", client_id="1000000001", **fields)
    account.set_access_token(FAKE_DHAN_TOKEN)
    account.save()
    return account


def upstox_account(name: str = "ux", *, token: bool = True, **fields: object) -> BrokerAccount:
    account = BrokerAccount(name=name, kind="upstox", client_id="fake-api-key", **fields)
    account.api_secret = Secret(FAKE_UPSTOX_SECRET)
    account.set_access_token(FAKE_UPSTOX_TOKEN if token else "")
    account.save()
    return account


DHAN_COMPACT_HEADER = [
    "SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME",
    "SEM_EXPIRY_CODE", "SEM_TRADING_SYMBOL", "SEM_LOT_UNITS", "SEM_CUSTOM_SYMBOL",
    "SEM_EXPIRY_DATE", "SEM_STRIKE_PRICE", "SEM_OPTION_TYPE", "SEM_TICK_SIZE", "SEM_EXPIRY_FLAG",
    "SEM_EXCH_INSTRUMENT_TYPE", "SEM_SERIES", "SM_SYMBOL_NAME",
]  # fmt: skip
DHAN_DETAILED_HEADER = [
    "EXCH_ID", "SEGMENT", "SECURITY_ID", "ISIN", "INSTRUMENT", "UNDERLYING_SECURITY_ID",
    "UNDERLYING_SYMBOL", "SYMBOL_NAME", "DISPLAY_NAME", "INSTRUMENT_TYPE", "SERIES", "LOT_SIZE",
    "SM_EXPIRY_DATE", "STRIKE_PRICE", "OPTION_TYPE", "TICK_SIZE", "EXPIRY_FLAG", "",
]  # fmt: skip


def dhan_compact_rows(
    expiry: date, strikes: list[int], *, first_id: int = 40000
) -> list[list[str]]:
    """NIFTY index + options at ``strikes`` for one expiry, plus rows the loader must skip."""
    rows = [
        ["NSE", "I", "13", "INDEX", "0", "NIFTY", "1.0", "Nifty 50", "0001-01-01", "", "XX",
         "0.0500", "", "INDEX", "X", "NIFTY"],
        ["NSE", "E", "1333", "EQUITY", "0", "HDFCBANK", "1.0", "HDFC Bank", "0001-01-01", "",
         "XX", "5.0000", "", "EQ", "EQ", "HDFCBANK"],
        ["NSE", "D", "39999", "FUTIDX", "0", f"NIFTY-{expiry:%b%Y}-FUT", "75.0",
         f"NIFTY {expiry:%b} FUT", f"{expiry.isoformat()} 14:30:00", "-0.01000", "XX", "10.0000",
         "M", "FUTIDX", "NA", "NIFTY"],
    ]  # fmt: skip
    sid = first_id
    for strike in strikes:
        for opt in ("CE", "PE"):
            rows.append(
                ["NSE", "D", str(sid), "OPTIDX", "0", f"NIFTY-{expiry:%b%Y}-{strike}-{opt}", "75.0",
                 f"NIFTY {expiry:%d %b} {strike} {'CALL' if opt == 'CE' else 'PUT'}",
                 f"{expiry.isoformat()} 14:30:00", f"{strike}.00000", opt, "5.0000", "W",
                 "OP", "NA", "NIFTY"]
            )  # fmt: skip
            sid += 1
    return rows


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def expiry_millis(day: date) -> int:
    """Upstox writes expiries as epoch ms at 23:59:59 IST of the day."""
    return int(datetime.combine(day, time(23, 59, 59), tzinfo=IST).timestamp() * 1000)


def upstox_records(expiry: date, strikes: list[int], *, first_token: int = 50000) -> list[dict]:
    records: list[dict] = [
        {"segment": "NSE_INDEX", "name": "Nifty 50", "exchange": "NSE", "instrument_type": "INDEX",
         "instrument_key": "NSE_INDEX|Nifty 50", "exchange_token": "26000",
         "trading_symbol": "NIFTY"},
        {"segment": "NSE_INDEX", "name": "Nifty Bank", "exchange": "NSE",
         "instrument_type": "INDEX", "instrument_key": "NSE_INDEX|Nifty Bank",
         "exchange_token": "26009", "trading_symbol": "BANKNIFTY"},
        {"segment": "NSE_EQ", "name": "HDFC BANK LTD", "exchange": "NSE", "instrument_type": "EQ",
         "instrument_key": "NSE_EQ|INE040A01034", "lot_size": 1, "tick_size": 10.0,
         "trading_symbol": "HDFCBANK"},
    ]  # fmt: skip
    token = first_token
    for strike in strikes:
        for opt in ("CE", "PE"):
            records.append(
                {"weekly": True, "segment": "NSE_FO", "name": "NIFTY", "exchange": "NSE",
                 "expiry": expiry_millis(expiry), "instrument_type": opt, "asset_symbol": "NIFTY",
                 "underlying_symbol": "NIFTY", "instrument_key": f"NSE_FO|{token}",
                 "lot_size": 75, "freeze_quantity": 1800.0, "exchange_token": str(token),
                 "minimum_lot": 75, "asset_key": "NSE_INDEX|Nifty 50",
                 "underlying_key": "NSE_INDEX|Nifty 50", "tick_size": 5.0, "asset_type": "INDEX",
                 "underlying_type": "INDEX",
                 "trading_symbol": f"NIFTY {strike} {opt} {expiry:%d %b %y}".upper(),
                 "strike_price": float(strike), "qty_multiplier": 1.0}
            )  # fmt: skip
            token += 1
    return records


def json_bytes(records: list[dict], *, gz: bool = False) -> bytes:
    raw = json.dumps(records).encode()
    return gzip.compress(raw) if gz else raw


def next_thursday(today: date | None = None) -> date:
    today = today or date.today()
    return today + timedelta(days=(3 - today.weekday()) % 7 or 7)
