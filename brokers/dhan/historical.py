"""DhanHQ's expired-options history (``POST /v2/charts/rollingoption``): the request, the answer's
shape, and each trading day's close at the money. Pure Python, no Django.

Wire facts (DhanHQ v2 "Expired Options Data"):

* request ``{"exchangeSegment": "NSE_FNO", "interval": "60", "securityId": 13, "instrument":
  "OPTIDX", "expiryFlag": "WEEK"|"MONTH", "expiryCode": 1, "strike": "ATM"|"ATM+1"|…,
  "drvOptionType": "CALL"|"PUT", "requiredData": ["close", "iv", "oi", "spot", "strike"],
  "fromDate": "YYYY-MM-DD", "toDate": "YYYY-MM-DD"}``; ``securityId`` is the underlying's index
  id, ``toDate`` is not included, at most 30 days per call, intervals 1, 5, 15, 25, 60 minutes;
  ``expiryCode`` 1 is the nearest expiry of each day (rolling);
* answer ``{"data": {"ce": {"timestamp": [...], "close": [...], "iv": [...], ...}, "pe": null}}``:
  one object per side asked (the other null), parallel arrays, ``timestamp`` in epoch seconds
  (each bar's start), IV in percent.

The DhanHQ Python SDK's ``expired_options_data`` posts this body unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from brokers.adapters import DayClose, HistoryAsk
from brokers.exceptions import PayloadError
from brokers.exchange import IST, SESSION_CLOSE
from brokers.http import from_epoch, unexpected_answer

if TYPE_CHECKING:
    from brokers.dhan.rest import DhanRestClient

PATH = "/v2/charts/rollingoption"
INTERVALS = ("1", "5", "15", "25", "60")
MAX_DAYS_PER_CALL = 30
FIELDS = ("open", "high", "low", "close", "iv", "volume", "strike", "oi", "spot")
WANTED = ("close", "iv", "oi", "spot", "strike")
NEAREST = 1  # expiryCode of each day's nearest expiry
Side = Literal["CALL", "PUT"]
_SIDE_KEYS: dict[str, str] = {"CALL": "ce", "PUT": "pe"}
IV_DIGITS = 6  # as the live minute bars round ATM IV


@dataclass(frozen=True)
class RollingRequest:
    """One ``rollingoption`` request. ``to_date`` is excluded, as DhanHQ reads it. Raises
    ValueError for a value DhanHQ would refuse (unknown interval, side or field, a range that
    is empty or longer than ``MAX_DAYS_PER_CALL`` days, a strike not ``ATM``/``ATM±n``)."""

    security_id: int
    segment: str
    weekly: bool
    side: Side
    from_date: date
    to_date: date
    interval: str = "60"
    strike: str = "ATM"
    expiry_code: int = NEAREST
    fields: tuple[str, ...] = WANTED

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"interval {self.interval!r}: use one of {', '.join(INTERVALS)}")
        if self.side not in _SIDE_KEYS:
            raise ValueError(f"side {self.side!r}: use CALL or PUT")
        unknown = [f for f in self.fields if f not in FIELDS]
        if unknown or not self.fields:
            raise ValueError(f"requiredData {unknown or '(none)'}: use any of {', '.join(FIELDS)}")
        days = (self.to_date - self.from_date).days
        if not 1 <= days <= MAX_DAYS_PER_CALL:
            raise ValueError(
                f"{self.from_date}..{self.to_date} spans {days} days: DhanHQ takes 1 to "
                f"{MAX_DAYS_PER_CALL} per call (toDate excluded)"
            )
        if strike_offset(self.strike) is None:
            raise ValueError(f"strike {self.strike!r}: use ATM, ATM+1 … ATM+10, ATM-1 … ATM-10")

    def body(self) -> dict[str, Any]:
        """The JSON body DhanHQ documents."""
        return {
            "exchangeSegment": self.segment,
            "interval": self.interval,
            "securityId": self.security_id,
            "instrument": "OPTIDX",
            "expiryFlag": "WEEK" if self.weekly else "MONTH",
            "expiryCode": self.expiry_code,
            "strike": self.strike,
            "drvOptionType": self.side,
            "requiredData": list(self.fields),
            "fromDate": self.from_date.isoformat(),
            "toDate": self.to_date.isoformat(),
        }


def strike_offset(strike: str) -> int | None:
    """``"ATM"`` → 0, ``"ATM+3"`` → 3, ``"ATM-2"`` → -2; None for anything else (|n| > 10)."""
    if strike == "ATM":
        return 0
    if len(strike) < 5 or not strike.startswith("ATM") or strike[3] not in "+-":
        return None
    digits = strike[4:]
    if not digits.isdigit() or not 1 <= int(digits) <= 10 or digits != str(int(digits)):
        return None
    return int(digits) if strike[3] == "+" else -int(digits)


@dataclass(frozen=True)
class RollingBar:
    """One bar of one side: its start (IST) and the figures asked (None where not given)."""

    at: datetime
    close: float | None
    iv: float | None  # percent, as DhanHQ sends it
    oi: float | None
    spot: float | None
    strike: float | None


def parse_rolling_option(answer: Any, side: Side) -> list[RollingBar]:
    """The bars of ``side`` in a ``rollingoption`` answer, in the answer's order.

    A side that is null or has no ``timestamp`` entries means no data: []. Raises PayloadError
    when the answer is not ``{"data": {"ce"|"pe": {...}}}``, a series is not a list, the
    series' lengths differ from ``timestamp``'s, or a value is not a number (null is allowed).
    """
    if not isinstance(answer, Mapping):
        raise PayloadError(f"the answer is {type(answer).__name__}, expected an object")
    if "data" not in answer:
        raise PayloadError("data is missing")
    data = answer["data"]
    if not isinstance(data, Mapping):
        raise PayloadError(f"data is {type(data).__name__}, expected an object")
    key = _SIDE_KEYS[side]
    if key not in data:
        raise PayloadError(f"data.{key} is missing")
    series = data[key]
    if series is None:
        return []
    if not isinstance(series, Mapping):
        raise PayloadError(f"data.{key} is {type(series).__name__}, expected an object")
    stamps = _series(series, key, "timestamp", required=True)
    assert stamps is not None
    columns = {name: _series(series, key, name, required=False) for name in WANTED}
    for name, values in columns.items():
        if values is not None and len(values) != len(stamps):
            raise PayloadError(
                f"data.{key}.{name} has {len(values)} values for {len(stamps)} timestamps"
            )
    bars = []
    for i, stamp in enumerate(stamps):
        if stamp is None:
            raise PayloadError(f"data.{key}.timestamp[{i}] is null")
        figures = {name: None if v is None else v[i] for name, v in columns.items()}
        bars.append(RollingBar(at=from_epoch(stamp, "timestamp").astimezone(IST), **figures))
    return bars


def _series(
    series: Mapping[str, Any], key: str, name: str, *, required: bool
) -> list[float | None] | None:
    values = series.get(name)
    if values is None:
        if required:
            raise PayloadError(f"data.{key}.{name} is missing")
        return None
    if not isinstance(values, list):
        raise PayloadError(f"data.{key}.{name} is {type(values).__name__}, expected a list")
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(f"data.{key}.{name}[{i}] is {value!r}, expected a number")
        out.append(float(value) if math.isfinite(value) else None)
    return out


def day_closes(calls: Sequence[RollingBar], puts: Sequence[RollingBar]) -> dict[date, DayClose]:
    """Each IST day's close at the money from its last CALL and PUT bars.

    Spot and ATM strike come from the last call bar (else the last put bar); ATM IV is the
    mean of the two sides' IV when both were at the same strike (one side's when only it is
    known); the straddle is the sum of their closes at the same strike, else None. ``at`` is
    the session close when the last bar is the session's last, else the bar's start.
    """
    last_call, last_put = _last_per_day(calls), _last_per_day(puts)
    out = {}
    for day in sorted(set(last_call) | set(last_put)):
        call, put = last_call.get(day), last_put.get(day)
        first = call if call is not None else put
        assert first is not None
        same = call is not None and put is not None and call.strike == put.strike
        ivs = [b.iv for b in ((call, put) if same else (first,)) if b is not None and b.iv]
        atm_iv = round(sum(ivs) / len(ivs) / 100.0, IV_DIGITS) if ivs else None
        straddle = None
        if same and call is not None and put is not None and None not in (call.close, put.close):
            straddle = round(call.close + put.close, 2)  # type: ignore[operator]
        latest = max(b.at for b in (call, put) if b is not None)
        out[day] = DayClose(
            day=day,
            at=_close_of(latest),
            spot=first.spot,
            atm_strike=first.strike,
            atm_iv=atm_iv,
            straddle=straddle,
        )
    return out


def _last_per_day(bars: Iterable[RollingBar]) -> dict[date, RollingBar]:
    last: dict[date, RollingBar] = {}
    for bar in bars:
        day = bar.at.date()
        if day not in last or bar.at > last[day].at:
            last[day] = bar
    return last


def _close_of(start: datetime) -> datetime:
    # A bar that starts in the session's last hour runs to the close: its close is the day's.
    close = datetime.combine(start.date(), SESSION_CLOSE, tzinfo=IST)
    return close if close - start <= timedelta(hours=1) else start


def windows(days: Iterable[date]) -> list[tuple[date, date]]:
    """(fromDate, toDate excluded) ranges of at most ``MAX_DAYS_PER_CALL`` days covering
    ``days``, oldest first."""
    ordered = sorted(set(days))
    out: list[tuple[date, date]] = []
    for day in ordered:
        if out and (day - out[-1][0]).days < MAX_DAYS_PER_CALL:
            out[-1] = (out[-1][0], day + timedelta(days=1))
        else:
            out.append((day, day + timedelta(days=1)))
    return out


async def fetch_day_closes(client: DhanRestClient, ask: HistoryAsk) -> dict[date, DayClose]:
    """The ATM closes of ``ask.days`` from DhanHQ (days without data are absent).

    Each window of up to 30 days costs two requests (CALL and PUT), paced by the account's
    data-API limit and retried by the client's policy when transient. Raises BrokerError (a
    bad answer: permanent, code ``unexpected-response``), ValueError for a bad ``ask``.
    """
    wanted = set(ask.days)
    bars: dict[Side, list[RollingBar]] = {"CALL": [], "PUT": []}
    for start, end in windows(ask.days):
        for side in ("CALL", "PUT"):
            request = RollingRequest(
                security_id=int(ask.index.broker_id),
                segment=ask.option_segment,
                weekly=ask.weekly,
                side=side,
                from_date=start,
                to_date=end,
            )
            # The client's own HTTP layer: allowlisted URL, limits, retries, error mapping.
            answer = await client._http.request(
                "POST", PATH, json=request.body(), limiter=client.limiters.data
            )
            try:
                bars[side].extend(parse_rolling_option(answer, side))
            except PayloadError as exc:
                raise unexpected_answer(
                    exc, broker="dhan", label="DhanHQ", what="expired options (rollingoption)"
                ) from None
    closes = day_closes(bars["CALL"], bars["PUT"])
    return {day: close for day, close in closes.items() if day in wanted}
