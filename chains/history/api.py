"""The history endpoints of the JSON API (``chains.api.ENDPOINTS``; same login rule, answer
and error shapes as ``/api/v2/options/live``):

- ``history``: the chain-level series per minute of a window, every minute present (a gap's
  figures null);
- ``oi-change``: per strike, the CE and PE OI change between two minutes;
- ``strikes``: per strike and side, minute series of chosen leg fields;
- ``iv-rank``: today's ATM IV, its rank and percentile over the daily closes;
- ``replay`` (``live?at=HH:MM``): the chain as it stood at a minute, in the live answer's shape
  with ``source: "history"``.

Common parameters: ``underlying`` (a tracked one, else 404), ``expiry`` (a tracked expiry, or
one recorded that day, else 404; default the nearest), ``date`` (YYYY-MM-DD, default the
chain's trading day by its feed's exchange clock, ``trading_day.trading_day``: today in IST on
a live market; 400 in the future or before the oldest kept day, HISTORY_DAYS), ``from``/``to``
(HH:MM in 09:15–15:30, from ≤ to; 400 otherwise).

A stored bar whose packed legs cannot be read answers 500 ``history_corrupt`` naming the chain
and minute (logged with the traceback): never a bad request, never a silent gap.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from brokers.exchange import IST, SESSION_CLOSE, SESSION_OPEN
from brokers.models import Instrument, InstrumentKind

from .. import analytics, selectors
from ..api import Answer, as_json, error, parse_expiry
from ..contracts import LegJSON
from ..exceptions import HistoryCorrupt
from . import selectors as history
from .bars import COLUMNS, SIDES, MinuteBar
from .store import CHAIN_FIELDS, oldest_bar_day
from .trading_day import trading_day

logger = logging.getLogger(__name__)

MAX_STRIKES = 20
LEG_KEYS = tuple(LegJSON.__annotations__)  # a replayed leg has the live leg's keys
DEFAULT_FIELDS = ("oi", "ltp", "iv")


class BadRequest(ValueError):
    """A parameter the endpoint cannot answer (status 400, or 404 with the valid values)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "bad_request",
        valid: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.valid = status, code, valid

    def answer(self) -> Answer:
        extra = {} if self.valid is None else {"valid": self.valid}
        return error(self.status, self.code, str(self), **extra)


@dataclass(frozen=True)
class Chain:
    """Which chain and day a request asks about."""

    underlying: str
    expiry: date
    day: date
    account_id: int


def today() -> date:
    return datetime.now(IST).date()


def _chain(query: Mapping[str, str]) -> Chain:
    underlying = (query.get("underlying") or "").strip().upper()
    if not underlying:
        raise BadRequest("underlying is required, e.g. ?underlying=NIFTY")
    now_day = today()
    day = _day(query.get("date"), now_day)
    try:
        tracked = selectors.tracked_chain(underlying)
    except selectors.NotTracked as exc:
        raise BadRequest(str(exc), status=404, code="not_tracked", valid=exc.valid) from None
    try:
        expiry = parse_expiry(query.get("expiry"))
    except ValueError as exc:  # its message names the form to use
        raise BadRequest(str(exc)) from None
    # The chain's trading day (its feed's exchange clock): the default date.
    live_day = trading_day(tracked.account.name, today=now_day)
    if not query.get("date"):
        day = live_day
    listed = sorted(
        set(history.recorded_expiries(tracked.underlying, day))
        | (set(selectors.expiries(tracked)) if day == live_day else set())
    )
    if expiry is None:
        if not listed:
            raise BadRequest(
                f"No history of {tracked.underlying} on {day}.",
                status=404,
                code="no_history",
                valid=[],
            )
        expiry = listed[0]
    elif expiry not in listed:
        valid = [e.isoformat() for e in listed]
        raise BadRequest(
            f"Expiry {expiry.isoformat()} of {tracked.underlying} has no history on {day}. "
            f"Expiries: {', '.join(valid) or 'none'}.",
            status=404,
            code="not_tracked",
            valid=valid,
        )
    return Chain(tracked.underlying, expiry, day, tracked.account_id)


def _day(raw: str | None, now_day: date) -> date:
    if raw is None or raw == "":
        return now_day
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"date {raw!r} is not a date: use YYYY-MM-DD") from None
    if day > now_day:
        raise BadRequest(f"date {day} is in the future (today is {now_day} in IST).")
    oldest = oldest_bar_day(now_day)
    if day < oldest:
        raise BadRequest(
            f"date {day} is beyond the history kept: minute history goes back to {oldest} "
            "(HISTORY_DAYS)."
        )
    return day


def _minute(query: Mapping[str, str], name: str, default: time | None) -> time:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"{name} is required: a time HH:MM between 09:15 and 15:30")
        return default
    try:
        value = time.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} {raw!r} is not a time: use HH:MM (IST)") from None
    if value.second or value.microsecond or value.tzinfo is not None:
        raise BadRequest(f"{name} {raw!r} is not a time: use HH:MM (IST)")
    if not SESSION_OPEN <= value <= SESSION_CLOSE:
        raise BadRequest(f"{name} {raw} is outside the session: use 09:15 to 15:30 (IST)")
    return value


def _window(
    query: Mapping[str, str], chain: Chain, *, required: bool = False
) -> tuple[datetime, datetime]:
    start = _minute(query, "from", None if required else SESSION_OPEN)
    end = _minute(query, "to", None if required else SESSION_CLOSE)
    if start > end:
        raise BadRequest(f"from {start:%H:%M} is after to {end:%H:%M}")
    return datetime.combine(chain.day, start, tzinfo=IST), datetime.combine(
        chain.day, end, tzinfo=IST
    )


def _head(chain: Chain) -> dict[str, Any]:
    return {
        "underlying": chain.underlying,
        "expiry": chain.expiry.isoformat(),
        "date": chain.day.isoformat(),
    }


def _answer(endpoint: Any, query: Mapping[str, str]) -> Answer:
    """``endpoint``'s answer; a BadRequest's 400/404, or 500 ``history_corrupt`` for a stored
    bar that cannot be read. Anything else propagates: the HTTP layer (``chains.api_http``)
    logs it and answers 500 ``server_error``, never a bad request that was not the client's."""
    try:
        return endpoint(query)
    except BadRequest as exc:
        return exc.answer()
    except HistoryCorrupt as exc:
        # Not the client's fault and not a gap: the answer names the bar, the log keeps why.
        logger.error("History API: %s", exc, exc_info=exc)
        return error(500, "history_corrupt", str(exc))


def series(query: Mapping[str, str]) -> Answer:
    """``/api/v2/options/history``: every minute of the window, its chain figures (all null
    for a minute not recorded)."""
    return _answer(_series, query)


def _series(query: Mapping[str, str]) -> Answer:
    chain = _chain(query)
    start, end = _window(query, chain)
    bars = {b.minute: b for b in history.window_bars(chain.underlying, chain.expiry, start, end)}
    rows = []
    for minute in history.session_minutes(
        chain.day, start.timetz().replace(tzinfo=None), end.timetz().replace(tzinfo=None)
    ):
        bar = bars.get(minute)
        rows.append(
            {
                "time": minute.isoformat(),
                **{f: None if bar is None else getattr(bar, f) for f in CHAIN_FIELDS},
            }
        )
    return as_json(
        200,
        {
            "status": "success",
            "data": {
                **_head(chain),
                "from": f"{start:%H:%M}",
                "to": f"{end:%H:%M}",
                "recorded": len(bars),
                "series": rows,
            },
        },
    )


def _as_of(chain: Chain, minute: datetime) -> MinuteBar:
    bar = history.bar_as_of(chain.underlying, chain.expiry, minute)
    if bar is None:
        raise BadRequest(
            f"No history of {chain.underlying} {chain.expiry} on {chain.day} at or before "
            f"{minute:%H:%M}: nothing was recorded by then.",
            status=404,
            code="no_history",
        )
    return bar


def oi_change(query: Mapping[str, str]) -> Answer:
    """``/api/v2/options/oi-change``: per strike, CE and PE OI at ``to`` and its change since
    ``from``, each minute's chain as it stood then (the latest bar at or before it; for
    ``from`` before the day's first bar, that bar)."""
    return _answer(_oi_change, query)


def _oi_change(query: Mapping[str, str]) -> Answer:
    chain = _chain(query)
    start, end = _window(query, chain, required=True)
    last = _as_of(chain, end)
    first = history.bar_as_of(chain.underlying, chain.expiry, start)
    if first is None:
        # Nothing recorded by ``from`` — the open usually: the first minute after the feed
        # connects is a gap — the window starts at the day's first bar (``from_bar`` says so).
        recorded = history.recorded_minutes(chain.underlying, chain.expiry, chain.day)
        first = _as_of(chain, recorded[0])
    before = {
        side: dict(zip(first.legs.strikes, first.legs.side(side).oi, strict=True)) for side in SIDES
    }
    strikes = []
    for i, strike in enumerate(last.legs.strikes):
        row: dict[str, Any] = {"strike": strike}
        for side in SIDES:
            now_oi = last.legs.side(side).oi[i]
            then = before[side].get(strike)
            row[side] = {
                "oi": now_oi,
                "change": None if now_oi is None or then is None else now_oi - then,
            }
        strikes.append(row)
    data = {
        **_head(chain),
        "from": f"{start:%H:%M}",
        "to": f"{end:%H:%M}",
        "from_bar": first.minute.isoformat(),
        "to_bar": last.minute.isoformat(),
        "strikes": strikes,
    }
    return as_json(200, {"status": "success", "data": data})


def strikes(query: Mapping[str, str]) -> Answer:
    """``/api/v2/options/strikes``: for up to ``MAX_STRIKES`` strikes, per side the minute
    series of ``fields`` (default oi, ltp, iv), aligned with ``times`` (null in a gap)."""
    return _answer(_strikes, query)


def _strikes(query: Mapping[str, str]) -> Answer:
    chain = _chain(query)
    start, end = _window(query, chain)
    raw = [s.strip() for s in (query.get("strikes") or "").split(",") if s.strip()]
    if not raw:
        raise BadRequest("strikes is required: up to 20 strikes, e.g. strikes=26000,26100")
    if len(raw) > MAX_STRIKES:
        raise BadRequest(f"{len(raw)} strikes asked: at most {MAX_STRIKES} at a time")
    try:
        wanted = [float(s) for s in raw]
    except ValueError:
        raise BadRequest(
            f"strikes {','.join(raw)!r} are not all numbers: use e.g. strikes=26000,26100"
        ) from None
    fields = [
        f.strip() for f in (query.get("fields") or ",".join(DEFAULT_FIELDS)).split(",") if f.strip()
    ]
    unknown = [f for f in fields if f not in COLUMNS]
    if unknown or not fields:
        raise BadRequest(
            f"unknown field {', '.join(unknown) or '(none)'}: use any of {', '.join(COLUMNS)}"
        )
    bars = {
        b.minute: b
        for b in history.window_bars(chain.underlying, chain.expiry, start, end, with_legs=True)
    }
    listed = set(itertools.chain.from_iterable(b.legs.strikes for b in bars.values()))
    missing = [s for s in wanted if bars and s not in listed]
    if missing:
        raise BadRequest(
            f"strike {', '.join(f'{s:g}' for s in missing)} is not in the chain: its strikes "
            f"run {min(listed):g} to {max(listed):g}"
        )
    minutes = history.session_minutes(
        chain.day, start.timetz().replace(tzinfo=None), end.timetz().replace(tzinfo=None)
    )
    out: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for strike in wanted:
        out[f"{strike:g}"] = {side: {f: [] for f in fields} for side in SIDES}
    for minute in minutes:
        bar = bars.get(minute)
        index = {} if bar is None else {k: i for i, k in enumerate(bar.legs.strikes)}
        for strike in wanted:
            i = index.get(strike)
            for side in SIDES:
                columns = None if bar is None or i is None else bar.legs.side(side)
                for f in fields:
                    out[f"{strike:g}"][side][f].append(
                        None if columns is None else getattr(columns, f)[i]
                    )
    data = {
        **_head(chain),
        "from": f"{start:%H:%M}",
        "to": f"{end:%H:%M}",
        "fields": fields,
        "times": [m.isoformat() for m in minutes],
        "strikes": out,
    }
    return as_json(200, {"status": "success", "data": data})


def iv_rank(query: Mapping[str, str]) -> Answer:
    """``/api/v2/options/iv-rank``: the last daily close's ATM IV (today's once recorded), its
    rank and percentile over up to 252 daily closes, and the days used."""
    return _answer(_iv_rank, query)


def _iv_rank(query: Mapping[str, str]) -> Answer:
    underlying = (query.get("underlying") or "").strip().upper()
    if not underlying:
        raise BadRequest("underlying is required, e.g. ?underlying=NIFTY")
    try:
        tracked = selectors.tracked_chain(underlying)
    except selectors.NotTracked as exc:
        raise BadRequest(str(exc), status=404, code="not_tracked", valid=exc.valid) from None
    rank = history.iv_rank(
        tracked.underlying, today=trading_day(tracked.account.name, today=today())
    )
    data = {
        "underlying": rank.underlying,
        "date": None if rank.day is None else rank.day.isoformat(),
        "expiry": None if rank.expiry is None else rank.expiry.isoformat(),
        "atm_iv": rank.atm_iv,
        "iv_rank": rank.rank,
        "iv_percentile": rank.percentile,
        "days": rank.days,
        "low": rank.low,
        "high": rank.high,
    }
    return as_json(200, {"status": "success", "data": data})


def replay(query: Mapping[str, str]) -> Answer:
    """``/api/v2/options/live?…&at=HH:MM[&date=…]``: the chain as it stood at that minute (the
    latest bar at or before it), shaped as the live answer with ``source: "history"``; legs
    carry what history keeps (OI, volume, LTP, bid, ask, IV, delta), the rest null."""
    return _answer(_replay, query)


def _replay(query: Mapping[str, str]) -> Answer:
    chain = _chain(query)
    at = datetime.combine(chain.day, _minute(query, "at", None), tzinfo=IST)
    bar = _as_of(chain, at)
    options = Instrument.objects.filter(
        account_id=chain.account_id,
        kind=InstrumentKind.OPTION,
        underlying=chain.underlying,
        expiry=chain.expiry,
    ).values_list("strike", "option_type", "broker_id", "lot_size")
    ids = {(float(k), side): broker_id for k, side, broker_id, _ in options}
    lots = {lot for *_, lot in options}
    legs: dict[str, dict[str, Any]] = {}
    for i, strike in enumerate(bar.legs.strikes):
        for side in SIDES:
            cols = bar.legs.side(side)
            if all(getattr(cols, f)[i] is None for f in COLUMNS) and (strike, side) not in ids:
                continue  # the side is not listed at this strike
            legs.setdefault(_strike_key(strike), {})[side] = _leg(cols, i, ids.get((strike, side)))
    data = {
        "underlying": chain.underlying,
        "expiry": chain.expiry.isoformat(),
        "lot_size": lots.pop() if len(lots) == 1 else None,
        "strike_interval": _interval(bar.legs.strikes),
        "atm_strike": analytics.nearest_strike(bar.legs.strikes, bar.forward),
        "spot": bar.spot,
        # A minute bar does not hold the index's previous close: unknown, never guessed.
        "spot_prev_close": None,
        "forward": bar.forward,
        "pcr": bar.pcr,
        "max_pain": bar.max_pain,
        "source": "history",
        "as_of": bar.minute.isoformat(),
        "seq": None,
        "strikes": legs,
    }
    freshness = {
        "state": "history",
        "words": f"Replay {bar.minute:%H:%M}",
        "reason": f"The chain as recorded at {bar.minute:%Y-%m-%d %H:%M} IST.",
        "as_of": bar.minute.isoformat(),
        "seconds_since_tick": None,
    }
    return as_json(200, {"status": "success", "freshness": freshness, "data": data})


def _leg(cols: Any, i: int, instrument: str | None) -> dict[str, Any]:
    leg: dict[str, Any] = dict.fromkeys(LEG_KEYS)
    leg.update(
        instrument_id=instrument,
        ltp=cols.ltp[i],
        bid=cols.bid[i],
        ask=cols.ask[i],
        volume=cols.volume[i],
        oi=cols.oi[i],
        iv=cols.iv[i],
        delta=cols.delta[i],
    )
    return leg


def _strike_key(strike: float) -> str:
    return str(int(strike)) if float(strike).is_integer() else f"{strike:g}"


def _interval(strikes: tuple[float, ...]) -> float | None:
    gaps = [b - a for a, b in itertools.pairwise(strikes) if b > a]
    if not gaps:
        return None
    return max(Counter(gaps).items(), key=lambda item: (item[1], -item[0]))[0]


ENDPOINTS = {"history": series, "oi-change": oi_change, "strikes": strikes, "iv-rank": iv_rank}
