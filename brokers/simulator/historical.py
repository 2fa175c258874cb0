"""The simulated brokers' historical APIs: DhanHQ's expired options (``POST
/dhan/v2/charts/rollingoption``) and Upstox's daily candles (``GET
/upstox/v3/historical-candle/…`` and the v2 path). Wire facts: ``brokers.dhan.historical``,
``brokers.upstox.historical``.

Past days are deterministic from the seed: day ``d`` of ``symbol`` draws from
``Random("history:<seed>:<symbol>:<d>")`` its open and close levels, its ATM IV and its open
interest, independent of any other day and of the live market. The days served are the
simulator's past trading days: weekdays before the simulated today, minus the session's
holidays and those set with ``POST /sim/history/holidays`` (``{"YYYY-MM-DD": "name"}``); a
closed day has no bars, as at the brokers. Auth and rate limits are the REST APIs' own
(DhanHQ: the data-API family, 5/s; Upstox: the token's windows).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from brokers.dhan.historical import FIELDS, INTERVALS, MAX_DAYS_PER_CALL, strike_offset
from brokers.exchange import IST, SESSION_CLOSE, SESSION_OPEN
from chains import black76

from .dhan_rest import dhan_error
from .pricing import CARRY, MIN_YEARS, YEAR_SECONDS, grid
from .universe import UNDERLYINGS, UnderlyingSpec, expiries_for, expiry_close
from .upstox_rest import upstox_error

if TYPE_CHECKING:
    from .app import Simulator

DAY_MOVE = 0.02  # standard deviation of a day's open and close around the spec level
IV_SPREAD = 0.3  # the day's ATM IV: vol × (1 + IV_SPREAD × z), clipped to [0.5, 2] × vol
PUT_PREMIUM = 1.02  # the ATM put's IV over the call's (the skew)


@dataclass(frozen=True)
class PastBar:
    """One bar of a past day at ``offset`` strikes from the money (both sides)."""

    at: datetime  # the bar's start, IST
    spot: float
    strike: int
    expiry: date
    ce_close: float
    pe_close: float
    ce_iv: float  # percent
    pe_iv: float  # percent
    ce_oi: int
    pe_oi: int


def past_bars(
    seed: int,
    spec: UnderlyingSpec,
    day: date,
    *,
    interval: int = 60,
    offset: int = 0,
    weekly: bool = True,
) -> list[PastBar]:
    """Every ``interval``-minute bar of ``day`` (09:15 to before 15:30) at ``offset`` strikes
    from the money, the nearest weekly (or monthly) expiry's options."""
    rng = random.Random(f"history:{seed}:{spec.symbol}:{day.isoformat()}")
    opening = spec.spot * math.exp(DAY_MOVE * rng.gauss(0.0, 1.0))
    closing = spec.spot * math.exp(DAY_MOVE * rng.gauss(0.0, 1.0))
    atm_iv = spec.vol * min(max(1.0 + IV_SPREAD * rng.gauss(0.0, 1.0), 0.5), 2.0)
    base_oi = rng.randint(20_000, 200_000)
    first = datetime.combine(day, SESSION_OPEN, tzinfo=IST)
    session = datetime.combine(day, SESSION_CLOSE, tzinfo=IST) - first
    count = math.ceil(session / timedelta(minutes=interval))
    listed = expiries_for(spec, first, weeklies=1 if weekly else 0, monthlies=1)
    expiry = listed[0][0]
    bars = []
    for k in range(count):
        at = first + timedelta(minutes=interval * k)
        share = (k + 1) / count  # the last bar closes at the day's close
        wobble = 0.0 if k == count - 1 else 0.002 * rng.gauss(0.0, 1.0)
        spot = round(opening + (closing - opening) * share + opening * wobble, 2)
        strike = round(spot / spec.strike_step) * spec.strike_step + offset * spec.strike_step
        years = max((expiry_close(expiry) - at).total_seconds() / YEAR_SECONDS, MIN_YEARS)
        forward = spot * math.exp(CARRY * years)
        iv = atm_iv * (1.0 + 0.05 * (share - 1.0))
        ce_iv, pe_iv = round(iv * 100.0, 2), round(iv * PUT_PREMIUM * 100.0, 2)
        growth = 1.0 + share
        bars.append(
            PastBar(
                at=at,
                spot=spot,
                strike=strike,
                expiry=expiry,
                ce_close=_premium(True, forward, strike, years, ce_iv),
                pe_close=_premium(False, forward, strike, years, pe_iv),
                ce_iv=ce_iv,
                pe_iv=pe_iv,
                ce_oi=int(base_oi * growth * (1.0 + 0.1 * max(offset, 0))),
                pe_oi=int(base_oi * growth * (1.0 + 0.1 * max(-offset, 0))),
            )
        )
    return bars


def _premium(call: bool, forward: float, strike: int, years: float, iv_percent: float) -> float:
    value = black76.price(
        call=call, forward=forward, strike=float(strike), years=years, vol=iv_percent / 100.0
    )
    return max(grid(value), 0.05)


def day_close(seed: int, spec: UnderlyingSpec, day: date, *, weekly: bool = True) -> PastBar:
    """The last bar of ``day`` at the money (what a backfill of that day should store)."""
    return past_bars(seed, spec, day, weekly=weekly)[-1]


class History:
    """The handlers of both brokers' historical endpoints, and the closed days they skip."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.holidays: dict[date, str] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/dhan/v2/charts/rollingoption", self.rolling_option),
            web.get(
                "/upstox/v3/historical-candle/{key}/{unit}/{interval}/{to}/{frm}", self.candles_v3
            ),
            web.get("/upstox/v2/historical-candle/{key}/{interval}/{to}/{frm}", self.candles_v2),
            web.post("/sim/history/holidays", self.set_holidays),
        ]

    def today(self) -> date:
        return datetime.fromtimestamp(self.sim.clock.now(), IST).date()

    def closed(self) -> dict[date, str]:
        return {**self.sim.session.holidays, **self.holidays}

    def trades(self, day: date) -> bool:
        """A past trading day of the simulated exchange."""
        return day < self.today() and day.weekday() < 5 and day not in self.closed()

    # --- DhanHQ ------------------------------------------------------------------------------

    async def rolling_option(self, request: web.Request) -> web.Response:
        rest = self.sim.dhan_rest
        client = rest._client(request)
        if client is None:
            return dhan_error(
                401, "DH-901", "Client ID or user generated access token is invalid or expired."
            )
        body = await rest._body(request)
        if body is None:
            return dhan_error(400, "DH-905", "Request body must be a JSON object")
        asked = _rolling_request(body)
        if isinstance(asked, web.Response):
            return asked
        spec, interval, weekly, offset, side, fields, start, end = asked
        if not self.sim.limits.allow_dhan(client, "data"):
            return dhan_error(
                429, "DH-904", "Too many requests on server from single user breaching rate limits."
            )
        key = "ce" if side == "CALL" else "pe"
        series: dict[str, list[Any]] = {name: [] for name in (*fields, "timestamp")}
        day = start
        while day < end:
            if self.trades(day):
                for bar in past_bars(
                    self.sim.config.seed,
                    spec,
                    day,
                    interval=interval,
                    offset=offset,
                    weekly=weekly,
                ):
                    _append(series, bar, key, fields)
            day += timedelta(days=1)
        return web.json_response({"data": {key: series, ("pe" if key == "ce" else "ce"): None}})

    # --- Upstox ------------------------------------------------------------------------------

    async def candles_v3(self, request: web.Request) -> web.Response:
        unit, interval = request.match_info["unit"], request.match_info["interval"]
        if unit != "days" or interval != "1":
            return upstox_error(
                400, "UDAPI1022", "The simulator serves daily candles only: unit days, interval 1"
            )
        return self._candles(request)

    async def candles_v2(self, request: web.Request) -> web.Response:
        if request.match_info["interval"] != "day":
            return upstox_error(
                400, "UDAPI1022", "The simulator serves daily candles only: interval day"
            )
        return self._candles(request)

    def _candles(self, request: web.Request) -> web.Response:
        token = self.sim.upstox_rest._token(request)
        if isinstance(token, web.Response):
            return token
        spec = self.sim.universe.spec_by_upstox_key(request.match_info["key"])
        if spec is None:
            return upstox_error(400, "UDAPI1021", "Instrument key is invalid")
        try:
            to_date = date.fromisoformat(request.match_info["to"])
            from_date = date.fromisoformat(request.match_info["frm"])
        except ValueError:
            return upstox_error(400, "UDAPI1015", "Date format is invalid: use YYYY-MM-DD")
        if from_date > to_date:
            return upstox_error(400, "UDAPI1016", "to_date must be on or after from_date")
        candles = []
        day = to_date
        while day >= from_date:  # newest first, as Upstox answers
            if self.trades(day):
                bars = past_bars(self.sim.config.seed, spec, day)
                prices = [b.spot for b in bars]
                stamp = datetime.combine(day, datetime.min.time(), tzinfo=IST).isoformat()
                candles.append([stamp, prices[0], max(prices), min(prices), prices[-1], 0, 0])
            day -= timedelta(days=1)
        return web.json_response({"status": "success", "data": {"candles": candles}})

    # --- control -----------------------------------------------------------------------------

    async def set_holidays(self, request: web.Request) -> web.Response:
        """Replace the past holidays: ``{"YYYY-MM-DD": "name", …}``."""
        try:
            body = json.loads(await request.read() or b"null")
            holidays = {date.fromisoformat(k): str(v) for k, v in body.items()}
        except (ValueError, AttributeError):
            return web.json_response(
                {"error": 'send {"YYYY-MM-DD": "holiday name", …}'}, status=400
            )
        self.holidays = holidays
        return web.json_response({d.isoformat(): n for d, n in sorted(holidays.items())})


def _rolling_request(
    body: dict[str, Any],
) -> tuple[UnderlyingSpec, int, bool, int, str, tuple[str, ...], date, date] | web.Response:
    """The parts of a rollingoption body, or the DH-905 answer DhanHQ gives bad input."""

    def bad(message: str) -> web.Response:
        return dhan_error(400, "DH-905", message)

    scrip = body.get("securityId")
    if isinstance(scrip, str) and scrip.isdigit():
        scrip = int(scrip)
    spec = next((s for s in UNDERLYINGS if s.dhan_id == scrip), None)
    if spec is None or body.get("exchangeSegment") != spec.dhan_option_segment:
        return bad(f"No expired options for securityId {scrip!r} in {body.get('exchangeSegment')}")
    if body.get("instrument") != "OPTIDX":
        return bad("instrument must be OPTIDX for an index")
    interval = str(body.get("interval"))
    if interval not in INTERVALS:
        return bad(f"interval must be one of {', '.join(INTERVALS)}")
    flag = body.get("expiryFlag")
    if flag not in ("WEEK", "MONTH"):
        return bad("expiryFlag must be WEEK or MONTH")
    if flag == "WEEK" and spec.weekly_weekday is None:
        return bad(f"{spec.symbol} has no weekly expiries: use expiryFlag MONTH")
    code = body.get("expiryCode")
    if code != 1:
        return bad("the simulator serves expiryCode 1 (the nearest expiry) only")
    offset = strike_offset(str(body.get("strike")))
    if offset is None:
        return bad("strike must be ATM or ATM±1 … ATM±10")
    side = body.get("drvOptionType")
    if side not in ("CALL", "PUT"):
        return bad("drvOptionType must be CALL or PUT")
    fields = body.get("requiredData")
    if not isinstance(fields, list) or not fields or any(f not in FIELDS for f in fields):
        return bad(f"requiredData must list some of {', '.join(FIELDS)}")
    try:
        start = date.fromisoformat(str(body.get("fromDate")))
        end = date.fromisoformat(str(body.get("toDate")))
    except ValueError:
        return bad("fromDate and toDate must be YYYY-MM-DD")
    if not 1 <= (end - start).days <= MAX_DAYS_PER_CALL:
        return bad(f"toDate must be 1 to {MAX_DAYS_PER_CALL} days after fromDate")
    return spec, int(interval), flag == "WEEK", offset, side, tuple(fields), start, end


def _append(series: dict[str, list[Any]], bar: PastBar, key: str, fields: tuple[str, ...]) -> None:
    call = key == "ce"
    close = bar.ce_close if call else bar.pe_close
    values = {
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "iv": bar.ce_iv if call else bar.pe_iv,
        "volume": 0,
        "strike": float(bar.strike),
        "oi": bar.ce_oi if call else bar.pe_oi,
        "spot": bar.spot,
    }
    for name in fields:
        series[name].append(values[name])
    series["timestamp"].append(int(bar.at.timestamp()))
