"""Upstox's historical candles (``GET /v3/historical-candle/…``): the path, the answer's shape,
and each trading day's close of the index. Pure Python, no Django.

Wire facts (Upstox API "Historical Candle Data"):

* v3 ``GET /v3/historical-candle/{instrument_key}/{unit}/{interval}/{to_date}/{from_date}``
  (unit ``minutes|hours|days|weeks|months``; daily candles: ``days/1``), v2
  ``GET /v2/historical-candle/{instrument_key}/{interval}/{to_date}/{from_date}`` (interval
  ``day``); the instrument key is URL-encoded (``NSE_INDEX%7CNifty%2050``), both dates
  included;
* answer ``{"status": "success", "data": {"candles": [[timestamp, open, high, low, close,
  volume, oi], …]}}``, newest first, ``timestamp`` ISO 8601 with +05:30.

Upstox's history is candles of the index (or a listed future): no option IV, so a day's close
from Upstox has the spot only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from brokers.adapters import DayClose, HistoryAsk
from brokers.exceptions import PayloadError
from brokers.exchange import IST, SESSION_CLOSE
from brokers.http import unexpected_answer

if TYPE_CHECKING:
    from brokers.upstox.rest import UpstoxRestClient

UNITS = ("minutes", "hours", "days", "weeks", "months")
MAX_DAYS_PER_CALL = 3650  # daily candles: a decade per call
NO_IV = (
    "Upstox's historical candles carry no option IV: the rows hold the spot close only, so IV "
    "rank needs a DhanHQ account's backfill or days recorded live."
)


def candle_path(
    instrument_key: str, to_date: date, from_date: date, *, unit: str = "days", interval: int = 1
) -> str:
    """The v3 path of the candles of ``instrument_key`` from ``from_date`` to ``to_date`` (both
    included). Raises ValueError for an empty key, an unknown unit, interval < 1 or
    ``from_date`` after ``to_date``."""
    if not instrument_key or "|" not in instrument_key:
        raise ValueError(f"instrument key {instrument_key!r}: expected e.g. 'NSE_INDEX|Nifty 50'")
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r}: use one of {', '.join(UNITS)}")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"interval {interval!r}: a whole number ≥ 1")
    if from_date > to_date:
        raise ValueError(f"from {from_date} is after to {to_date}")
    key = quote(instrument_key, safe="")
    return f"/v3/historical-candle/{key}/{unit}/{interval}/{to_date:%Y-%m-%d}/{from_date:%Y-%m-%d}"


@dataclass(frozen=True)
class Candle:
    """One candle: its start (IST) and prices; ``oi`` 0 for an index, as Upstox sends it."""

    at: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    oi: float


def parse_candles(answer: Any) -> list[Candle]:
    """The candles of a historical-candle answer, oldest first.

    Raises PayloadError when the answer is not ``{"status": "success", "data": {"candles":
    [...]}}``, a candle has fewer than 6 entries, a time that is not ISO 8601 with an offset,
    or a price that is not a number.
    """
    if not isinstance(answer, Mapping):
        raise PayloadError(f"the answer is {type(answer).__name__}, expected an object")
    if answer.get("status") != "success":
        raise PayloadError(f"status is {answer.get('status')!r}, expected 'success'")
    data = answer.get("data")
    if not isinstance(data, Mapping):
        raise PayloadError(f"data is {type(data).__name__}, expected an object")
    rows = data.get("candles")
    if not isinstance(rows, list):
        raise PayloadError(f"data.candles is {type(rows).__name__}, expected a list")
    candles = [_candle(i, row) for i, row in enumerate(rows)]
    return sorted(candles, key=lambda c: c.at)


def _candle(i: int, row: Any) -> Candle:
    if not isinstance(row, list) or len(row) < 6:
        raise PayloadError(f"candles[{i}] is {row!r}, expected [time, o, h, l, c, volume, oi]")
    stamp = row[0]
    try:
        at = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise PayloadError(f"candles[{i}][0] is {stamp!r}, expected an ISO time with offset")
    numbers = []
    for j, value in enumerate([*row[1:7], *([0] * (7 - len(row)))]):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(f"candles[{i}][{j + 1}] is {value!r}, expected a number")
        numbers.append(float(value))
    return Candle(at.astimezone(IST), *numbers)


def day_closes(candles: Iterable[Candle]) -> dict[date, DayClose]:
    """Each IST day's spot close from daily candles: spot only, as of the session close."""
    out = {}
    for candle in candles:
        day = candle.at.date()
        out[day] = DayClose(
            day=day,
            at=datetime.combine(day, SESSION_CLOSE, tzinfo=IST),
            spot=candle.close,
            atm_strike=None,
            atm_iv=None,
            straddle=None,
        )
    return out


async def fetch_day_closes(client: UpstoxRestClient, ask: HistoryAsk) -> dict[date, DayClose]:
    """The spot closes of ``ask.days`` from Upstox's daily candles of the index (one request;
    days without a candle are absent). Paced by the account's shared limit and retried by the
    client's policy when transient. Raises BrokerError (a bad answer: permanent, code
    ``unexpected-response``)."""
    if not ask.days:
        return {}
    first, last = min(ask.days), max(ask.days)
    if (last - first) > timedelta(days=MAX_DAYS_PER_CALL):
        raise ValueError(f"{first}..{last}: at most {MAX_DAYS_PER_CALL} days per call")
    path = candle_path(ask.index.broker_id, last, first)
    # The client's own request: bearer token, shared limit, retries, error mapping.
    answer = await client._get(path)
    try:
        candles = parse_candles(answer)
    except PayloadError as exc:
        raise unexpected_answer(
            exc, broker="upstox", label="Upstox", what="historical candles"
        ) from None
    wanted = set(ask.days)
    return {day: close for day, close in day_closes(candles).items() if day in wanted}
