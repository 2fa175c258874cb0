"""The exchange simulator's application: the shared state, the tick scheduler.

``build_app(config)`` returns one ``aiohttp.web.Application`` serving both brokers' REST APIs,
feeds and masters plus the ``/sim`` control API on one port. Everything follows the simulated
exchange clock (``clock.SimClock``: ``start`` + ``speed`` × real time): market step *n* happens
at simulated time ``start + n × speed / ticks_per_second``, and each scheduler beat runs the
steps due up to the clock's time now. The events come from the seeded ``Market``, so a seed,
start and step give the same events at the same simulated times however the steps are
batched; a scheduler that cannot keep up holds the clock back rather than skip events. A
catch-up (``catch_up_to``) ends the fast stretch at that exact simulated instant: the steps
before it are ``speed / ticks_per_second`` apart, those after it ``1 / ticks_per_second``; with
``clock_waits_for_feed`` the clock stands at its start until a feed connection subscribes. With
``ticks_per_second=0`` the market moves only on ``POST /sim/step``; ``POST /sim/rate``
changes the rate while running. ``POST /sim/tape`` has the market's events generated ahead of
time and replayed (``tape.Tape``), for load tests beyond what the model generates live on
one core.

The market status follows the product's exchange calendar (``session.Session``) on the
simulated clock, changing at the exact simulated instant whatever the beat (steps stop before
15:30:00 and start after 09:15:00): open around the clock by default, the exchange's hours
with ``exchange_hours``, closed all day when ``holiday`` names the simulator's today a trading
holiday. A change is announced on both feeds (an Upstox market_info frame, a Dhan
market-status packet); a ``market`` fault overrides the status until the session's next
change.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from brokers.exchange import IST

from .auth import UPSTOX_USER_ID, Auth
from .clock import SimClock
from .config import SimConfig
from .control import notify
from .control import routes as control_routes
from .dhan_feed import DhanFeed
from .dhan_rest import DhanRest, dhan_error
from .faults import Faults
from .historical import History
from .limits import ServerLimits
from .market import Market
from .session import Session
from .tape import Tape
from .truth import Truth
from .universe import INDEX, Universe
from .upstox_feed import UpstoxFeed
from .upstox_rest import FEED_PATH, UpstoxRest, upstox_error

logger = logging.getLogger(__name__)

MANUAL_STEP_SECONDS = 0.001  # the virtual time of one step when the market moves only on command
MAX_BACKLOG_SECONDS = 0.5  # a scheduler further behind holds the clock back (counted)


SIM = web.AppKey("simulator", object)


class Simulator:
    """The simulator's state: market, credentials, limits, faults and both feeds."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.dhan_rest = DhanRest(self)
        self.upstox_rest = UpstoxRest(self)
        self.dhan_feed = DhanFeed(self)
        self.upstox_feed = UpstoxFeed(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fresh()

    def _fresh(self) -> None:
        config = self.config
        start = config.start.timestamp() if config.start is not None else time.time()
        until = config.catch_up_to.timestamp() if config.catch_up_to is not None else None
        # Until ``_catch_up`` the market steps at ``speed``; from it on at real time.
        self._catch_up = until if until is not None and until > start else None
        self.speed = config.speed if until is None or self._catch_up is not None else 1.0
        self.clock = SimClock(
            start, speed=config.speed, catch_up_to=until, waiting=config.clock_waits_for_feed
        )
        today = datetime.fromtimestamp(start, IST).date()
        closed = {today: config.holiday} if config.holiday else {}
        self.universe = Universe(
            datetime.fromtimestamp(start, UTC),
            strikes=config.strikes,
            weeklies=config.weeklies,
            monthlies=config.monthlies,
            holidays={"NSE": closed, "BSE": closed},  # an expiry on the holiday moves before it
        )
        self.rate = rate = config.ticks_per_second
        self.market = Market(
            self.universe,
            seed=config.seed,
            start=start,
            step_seconds=self._step_seconds(rate),
        )
        self.truth = Truth(self.market)
        self.market.on_minute = self.truth.record
        self.tape: Tape | None = None
        self.session = Session(exchange_hours=config.exchange_hours, holidays=closed)
        self.auth = Auth(
            dhan_client_id=config.dhan_client_id,
            dhan_token=config.dhan_token,
            upstox_api_key=config.upstox_api_key,
            upstox_api_secret=config.upstox_api_secret,
            upstox_redirect_uri=config.upstox_redirect_uri,
            upstox_token=config.upstox_token,
        )
        self.limits = ServerLimits()
        self.faults = Faults()
        self.faults.market_status = self._session_status = self.session.upstox_status(start)
        self.beats = 0
        self._cache: dict[str, bytes] = {}
        self._change: tuple[float, float | None] | None = None  # (from, next session change)
        self.skipped_steps = 0
        self.ticks_generated = 0
        self._rate_window: list[tuple[float, int]] = []

    # --- helpers the handlers use ------------------------------------------------------------

    def feed(self, broker: str) -> DhanFeed | UpstoxFeed:
        return self.dhan_feed if broker == "dhan" else self.upstox_feed

    def cached(self, name: str, make: Callable[[], bytes]) -> bytes:
        """Bytes built once per simulator state (the masters)."""
        if name not in self._cache:
            self._cache[name] = make()
        return self._cache[name]

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- market ------------------------------------------------------------------------------

    def advance(self, steps: int) -> None:
        """Generate (or replay, with a tape) ``steps`` market steps and deliver their events."""
        if self.tape is not None:
            first = self.market.skip(steps)
            ticks = self.tape.take(steps, first, self.market.step_seconds)
        else:
            ticks = self.market.run(steps)
        self.ticks_generated += len(ticks)
        self.dhan_feed.publish(ticks)
        self.upstox_feed.publish(ticks)
        self.flush()

    def flush(self) -> None:
        self.dhan_feed.flush()
        self.upstox_feed.flush()

    def set_rate(self, ticks_per_second: int) -> None:
        """Change the market's rate from now on (0: only on ``POST /sim/step``)."""
        if ticks_per_second < 0:
            raise ValueError(f"ticks_per_second must be 0 or more, got {ticks_per_second}")
        self.rate = ticks_per_second
        self.market.set_step_seconds(self._step_seconds(ticks_per_second))
        self._rate_window.clear()

    def _step_seconds(self, rate: int) -> float:
        """The simulated time of one step at ``rate`` steps per real second."""
        return self.speed / rate if rate > 0 else MANUAL_STEP_SECONDS

    def load_tape(self, steps: int) -> None:
        """Replay ``steps`` pre-generated market steps from now on (0: the live model again).

        Generating takes ~8 µs a step, during which the simulator answers nothing.
        """
        self.tape = Tape(self.market, steps) if steps > 0 else None

    def market_clock(self) -> float:
        """The simulated exchange time now (epoch seconds)."""
        return self.clock.now()

    def follow_session(self, at: float) -> None:
        """Set and announce the market status the session gives at market time ``at``, when
        the session changed since the last call (a ``market`` fault holds until then)."""
        status = self.session.upstox_status(at)
        if status == self._session_status:
            return
        self._session_status = self.faults.market_status = status
        logger.info("Simulated market: %s", self.session.state(at))
        self.upstox_feed.broadcast_market_info()
        self.dhan_feed.market_status()

    def tick_once(self, now: float) -> None:
        """One scheduler beat at loop time ``now``: run the steps due up to the simulated time
        now, following the session's changes at their exact simulated times."""
        self.beats += 1
        if self.clock.waiting and self._subscribed():  # a feed worker is there: time runs
            self.clock.begin()
        target = self.clock.now()
        if self.rate <= 0:  # the market moves only on POST /sim/step
            self.follow_session(target)
            return
        market = self.market
        budget = max(1, int(self.rate * MAX_BACKLOG_SECONDS))
        ran = 0
        while True:
            at = market.now()
            change = self._next_change(at)
            last = change is None or change > target
            end = target if last or change is None else change
            if self.faults.market_open and not self.faults.stalled():
                due = _steps_until(market, end, inclusive=last)
                if due > budget - ran:  # fell behind: the clock waits for the market
                    self.skipped_steps += due - (budget - ran)
                    due = budget - ran
                    if due > 0:
                        self.advance(due)
                        ran += due
                    self.clock.hold(market.now())
                    break
                if due > 0:
                    self.advance(due)
                    ran += due
            else:
                # Closed or stalled: the market does not move, so /sim/state keeps matching
                # what the feeds delivered last; no catching up afterwards either.
                market.advance_to(end)
            if last:
                break
            market.advance_to(end)
            if end == self._catch_up:  # caught up: real time from this instant on
                self._catch_up, self.speed = None, 1.0
                market.set_step_seconds(self._step_seconds(self.rate))
            self.follow_session(end)
        self.follow_session(target)
        if ran:
            self._rate_window.append((now, ran))

    def _subscribed(self) -> bool:
        feeds = (self.dhan_feed, self.upstox_feed)
        return any(c.subs for feed in feeds for c in feed.connections)

    def _next_change(self, at: float) -> float | None:
        """The next instant after ``at`` where the market stops: the session's next change
        or the end of the catch-up, whichever is first."""
        change = self._next_session_change(at)
        until = self._catch_up
        if until is not None and until > at and (change is None or until < change):
            return until
        return change

    def _next_session_change(self, at: float) -> float | None:
        """The session's next change after ``at`` (cached while it lies ahead)."""
        cached = self._change
        if cached is not None and cached[0] <= at < (cached[1] or cached[0] + 3600.0):
            return cached[1]
        change = self.session.next_change(at)
        self._change = (at, change)
        return change

    async def run_ticker(self) -> None:
        """Beat every ``interval`` seconds of loop time, however long a beat's work takes
        (sleeping a whole interval after the work would stretch the period, and so the gap
        between Upstox frames, by the work's duration)."""
        loop = asyncio.get_running_loop()
        interval = self.config.interval
        beat = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, beat - loop.time()))
            now = loop.time()
            self.tick_once(now)
            beat += interval
            if beat < now:  # more than a beat behind: start counting from now, no bursts
                beat = now + interval

    def measured_rate(self) -> float:
        """Steps per second over the last ~5 s of the scheduler."""
        now = asyncio.get_running_loop().time()
        self._rate_window = [(t, n) for t, n in self._rate_window if t > now - 5.0]
        if len(self._rate_window) < 2:
            return 0.0
        span = now - self._rate_window[0][0]
        return sum(n for _, n in self._rate_window[1:]) / span if span > 0 else 0.0

    # --- control -----------------------------------------------------------------------------

    async def close_feeds(self) -> None:
        for conn in [*self.dhan_feed.connections, *self.upstox_feed.connections]:
            await conn.close(1001, "simulator reset or shutdown")

    async def reset(self) -> None:
        """Close every feed connection and start over with the configured flags."""
        await self.close_feeds()
        self._fresh()
        logger.info("Simulator reset (seed %d)", self.config.seed)

    async def approve_token_request(self, request_id: str) -> dict[str, Any]:
        """Approve a pending Upstox v3 token request and deliver its token to the notifier.

        Raises KeyError when no such request is pending.
        """
        token = self.auth.approve_request(request_id)
        assert token.expires_at is not None
        payload = {
            "client_id": self.config.upstox_api_key,
            "user_id": UPSTOX_USER_ID,
            "access_token": token.value,
            "token_type": "Bearer",
            "expires_at": str(int(token.expires_at * 1000)),
            "issued_at": str(int(token.issued_at * 1000)),
            "message_type": "access_token",
        }
        url = self.config.upstox_notifier_url
        delivered, outcome = (False, "no --upstox-notifier-url configured")
        if url:
            delivered, outcome = await notify(url, payload)
        return {
            "ok": True,
            "approved": request_id,
            "delivered": delivered,
            "notifier": outcome,
            "access_token": token.value,
            "expires_at": payload["expires_at"],
        }

    def describe(self, *, instruments: bool = True) -> dict[str, Any]:
        """What ``GET /sim/state`` returns."""
        market = self.market
        state: dict[str, Any] = {
            "seed": self.config.seed,
            "ticks_per_second": self.rate,
            "tape": self._tape_state(),
            "measured_ticks_per_second": round(self.measured_rate(), 1),
            "steps": market.steps,
            "skipped_steps": self.skipped_steps,
            "beats": self.beats,
            "clock": self._clock_state(),
            "market": {
                "status": self.faults.market_status,
                "session": self.session.describe(self.market_clock()),
                "time": datetime.fromtimestamp(market.now(), UTC).isoformat(),
                "spots": {s.symbol: round(market.spot(s.symbol), 2) for s in self.universe.specs},
                "expiries": {
                    symbol: [d.isoformat() for d in days]
                    for symbol, days in self.universe.expiries.items()
                },
            },
            "faults": self.faults.describe(),
            "connections": {
                "dhan": self.dhan_feed.describe(),
                "upstox": self.upstox_feed.describe(),
            },
            "subscriptions": {
                "dhan": sum(len(c.subs) for c in self.dhan_feed.connections),
                "upstox": sum(len(c.subs) for c in self.upstox_feed.connections),
            },
            "pending_token_requests": len(self.auth.pending_requests()),
        }
        if instruments:
            state["instruments"] = [self._instrument(i) for i in self.universe.instruments]
        return state

    def _clock_state(self) -> dict[str, Any]:
        clock = self.clock
        now = clock.now()
        return {
            "time": datetime.fromtimestamp(now, UTC).isoformat(),
            "ist": datetime.fromtimestamp(now, IST).isoformat(timespec="seconds"),
            "epoch": round(now, 3),
            "start": datetime.fromtimestamp(clock.start, UTC).isoformat(),
            "speed": clock.speed,
            "catch_up_to": (
                None
                if clock.catch_up_to is None
                else datetime.fromtimestamp(clock.catch_up_to, UTC).isoformat()
            ),
            "catching_up": clock.catching_up,
            "waiting": clock.waiting,
            "held_seconds": round(clock.held, 3),
        }

    def _tape_state(self) -> dict[str, int] | None:
        if self.tape is None:
            return None
        return {"steps": len(self.tape.ticks), "loops": self.tape.loops}

    def _instrument(self, i: Any) -> dict[str, Any]:
        return {
            "underlying": i.spec.symbol,
            "kind": i.kind,
            "expiry": i.expiry.isoformat() if i.expiry else None,
            "strike": i.strike,
            "option_type": i.option_type or None,
            "dhan_segment": i.dhan_segment,
            "security_id": i.security_id,
            "upstox_key": i.upstox_key,
            "true_price": round(self.market.true_price(i), 4),
            "ltp": i.ltp,
            "ltt": i.ltt,
            "bid": None if i.kind == INDEX else i.bid,
            "ask": None if i.kind == INDEX else i.ask,
            "volume": i.volume,
            "oi": i.oi,
            "prev_close": i.prev_close,
            "prev_oi": i.prev_oi,
            "iv": None if i.iv is None else round(i.iv, 6),
        }


def _steps_until(market: Market, end: float, *, inclusive: bool) -> int:
    """How many steps of ``market`` fall at or before ``end`` (``inclusive``) or before it."""
    span = (end - market.now()) / market.step_seconds
    # Within a microsecond (what ``Market.now`` is rounded to) a step is on ``end``: epoch
    # seconds carry ~2e-7 s of rounding, which a fixed 1e-9 steps did not cover.
    tolerance = 1e-6 / market.step_seconds
    if inclusive:
        return max(0, math.floor(span + tolerance))
    return max(0, math.ceil(span - tolerance) - 1)


def _api_broker(path: str) -> str | None:
    """The broker whose REST API ``path`` belongs to (REST faults apply), else None."""
    if path.startswith("/dhan/v2/"):
        return "dhan"
    if (
        path.startswith(("/upstox/v2/", "/upstox/v3/"))
        and "/login/authorization/dialog" not in path
    ):
        return "upstox"
    return None


@web.middleware
async def rest_faults(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer REST calls with the configured 5xx/429 while a ``rest_error`` fault lasts."""
    broker = _api_broker(request.path)
    if broker is not None and request.path != FEED_PATH:
        sim: Simulator = request.app[SIM]  # type: ignore[assignment]
        status = sim.faults.rest_error(broker)
        if status == 429:
            if broker == "dhan":
                return dhan_error(429, "DH-904", "Too many requests (simulated fault)")
            return upstox_error(429, "UDAPI10005", "Too Many Request Sent (simulated fault)")
        if status is not None:
            if broker == "dhan":
                return dhan_error(status, "DH-908", "Internal Server Error (simulated fault)")
            return upstox_error(status, "UDAPI100500", "Something went wrong (simulated fault)")
    return await handler(request)


def build_app(config: SimConfig) -> web.Application:
    """The simulator as an aiohttp application (starts its scheduler when the app starts)."""
    sim = Simulator(config)
    app = web.Application(middlewares=[rest_faults])
    app[SIM] = sim
    app.router.add_get("/dhan/feed", sim.dhan_feed.handle)
    app.router.add_routes(sim.dhan_rest.routes())
    app.router.add_routes(sim.upstox_rest.routes())
    app.router.add_routes(History(sim).routes())
    app.router.add_routes(control_routes(sim))

    async def ticker(app: web.Application) -> Any:
        task = asyncio.get_running_loop().create_task(sim.run_ticker())
        yield
        task.cancel()

    async def shutdown(app: web.Application) -> None:
        await sim.close_feeds()

    app.cleanup_ctx.append(ticker)
    app.on_shutdown.append(shutdown)
    return app
