"""The feed worker's status: what it is doing, its counters, and the record it publishes.

The record (``FeedStatus``) is written to Redis every ``status_interval`` seconds by the lock's
holder only (a fenced write, ``chains.ownership``), with a TTL equal to the lock's: it can never
outlive the holder it describes. ``updated_at`` is its heartbeat — a reader treats a record
whose heartbeat is older than a few ``heartbeat_seconds`` as gone (a frozen or killed worker's
key may live on for up to the TTL) — and ``lock_held`` says whether the writer still held the
lock when it wrote.
"""

from __future__ import annotations

import logging
import os
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

from ..book import ChainBook, ChainStats, FeedBook
from ..contracts import require_keys
from ..exceptions import ContractError

logger = logging.getLogger(__name__)

# What the worker is doing (``FeedStatus.state``).
STARTING = "starting"
STANDBY = "standby"  # another worker holds the account's lock
PREPARING = "preparing"  # lock held: building the books, centring the strike windows
CONNECTING = "connecting"
LIVE = "live"  # connected, frames arriving
QUIET = "quiet"  # connected, pongs arrive, no frame for FEED_QUIET_AFTER seconds
BACKOFF = "backoff"  # the connection dropped: waiting before the next attempt
TOKEN_WAIT = "token_wait"  # noqa: S105 - a state: the broker refused the account, waiting for a token
ERROR = "error"  # a task of the worker died: the session restarts after a pause
STORE_UNAVAILABLE = "store_unavailable"  # Redis does not answer
STOPPING = "stopping"
STOPPED = "stopped"
STATES = (
    STARTING,
    STANDBY,
    PREPARING,
    CONNECTING,
    LIVE,
    QUIET,
    BACKOFF,
    TOKEN_WAIT,
    ERROR,
    STORE_UNAVAILABLE,
    STOPPING,
    STOPPED,
)


class ChainStatus(ChainStats):
    """One chain the worker follows, in its status record (``FeedStatus.chains``): how
    populated it is (``ChainBook.stats``), whether it is ready and why, and its version."""

    ready: bool
    reason: str
    seq: int
    as_of: str | None


class HistogramJSON(TypedDict):
    """A histogram in the status record (``Histogram.to_json``): ``counts[i]`` observations
    ≤ ``bounds[i]`` and above the bound before it, the last entry those above every bound (not
    cumulative); their ``sum`` and ``count``. ``chains.metrics`` serves them as Prometheus
    histograms."""

    bounds: list[float]
    counts: list[int]
    sum: float
    count: int


# Seconds. A flush writes a few snapshots and deltas to Redis (milliseconds); the lag of a
# tick to its publication is at most a flush interval (250 ms) plus the flush when all is well.
FLUSH_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class Histogram:
    """Counts of observations per bucket (upper bounds ``bounds``, as Prometheus' ``le``):
    an observation costs a bisection, the record carries a few dozen numbers."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def to_json(self) -> HistogramJSON:
        return {
            "bounds": list(self.bounds),
            "counts": list(self.counts),
            "sum": round(self.total, 6),
            "count": sum(self.counts),
        }


class FeedStatus(TypedDict):
    """The feed status record in Redis (``optionsite:feed:<account>``)."""

    account: str
    broker: str | None
    state: str
    error: str
    pid: int
    updated_at: str  # the heartbeat
    heartbeat_seconds: float
    lock_held: bool
    connected_since: str | None
    last_frame_at: str | None
    last_frame_age: float | None
    last_tick_at: str | None
    retry_at: str | None  # backoff: when the next connection attempt is made
    ticks_per_second: float
    frames: int
    ticks: int
    unrouted: int
    reconnects: int
    crashes: int
    decode_errors: int
    publish_errors: int
    store_errors: int
    deltas: int
    rest_legs: int
    market: dict[str, str]
    chains: list[ChainStatus]
    # Intraday history (``chains.feed.history``): on or off (HISTORY_RECORDING), minute bars
    # written, failures (a failed write or a full queue: those minutes are gaps), the last
    # failure in words, and the latest minute written (IST, ISO).
    history_recording: bool
    history_bars: int
    history_errors: int
    history_last_error: str
    history_last_minute: str | None
    # Flushes that published something: how long each took, and the lag from the newest tick
    # they carried (its arrival) to the end of its publication (``Counters.flushed``).
    flush_seconds: HistogramJSON
    publish_lag_seconds: HistogramJSON


REQUIRED = frozenset(FeedStatus.__annotations__)
CHAIN_REQUIRED = frozenset(ChainStatus.__annotations__)


def parse_feed_status(raw: object) -> FeedStatus:
    """``raw`` (decoded JSON) as a FeedStatus, each of its chains checked too. Raises
    ContractError (a ValueError) naming the missing keys and, when some are missing, the
    unexpected ones (a renamed key shows as both)."""
    status = require_keys("A feed status record", raw, REQUIRED)
    what = f"The feed status record of {status['account']}"
    if not isinstance(status["chains"], list):
        raise ContractError(f"{what} has chains that are not a JSON list.")
    for chain in status["chains"]:
        require_keys(f"{what}, a chain in it,", chain, CHAIN_REQUIRED)
    return status  # type: ignore[return-value]


@dataclass
class Health:
    """What the worker is doing now (``state``, one of ``STATES``) and the last error a person
    should see; shared by the worker's parts."""

    state: str = STARTING
    error: str = ""
    retry_at: float | None = None  # epoch seconds of the next connection attempt (backoff)

    def set(self, state: str, error: str | None = None) -> None:
        self.state = state
        if error is not None:
            self.error = error


@dataclass
class Counters:
    """What the worker counts; times are epoch seconds (``time.time()``)."""

    frames: int = 0
    ticks: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    crashes: int = 0
    publish_errors: int = 0
    store_errors: int = 0
    deltas: int = 0
    rest_legs: int = 0  # legs changed by REST chains the repopulate task handed over
    history_bars: int = 0  # minute bars written (chains.feed.history)
    history_errors: int = 0  # history writes failed and minutes dropped: gaps
    history_last_error: str = ""
    history_last_minute: datetime | None = None  # the latest minute written
    last_frame_at: float | None = None
    last_tick_at: float | None = None
    last_traffic_at: float | None = None
    connected_since: float | None = None
    rate_ticks: int = 0
    rate_at: float = field(default_factory=time.monotonic)
    ticks_per_second: float = 0.0
    flush_seconds: Histogram = field(default_factory=lambda: Histogram(FLUSH_BOUNDS))
    publish_lag_seconds: Histogram = field(default_factory=lambda: Histogram(LAG_BOUNDS))
    lag_tick_at: float | None = None  # the tick whose lag was observed last

    def flushed(self, *, seconds: float, published: bool) -> None:
        """A flush that had changes took ``seconds``; when it ``published`` them and ticks
        arrived since the last observation, the lag of the newest of them (arrival to now)."""
        self.flush_seconds.observe(seconds)
        tick_at = self.last_tick_at
        if published and tick_at is not None and tick_at != self.lag_tick_at:
            self.publish_lag_seconds.observe(max(0.0, time.time() - tick_at))
            self.lag_tick_at = tick_at

    def tick_rate(self) -> float:
        """Ticks per second since the last call at least half a second ago."""
        now = time.monotonic()
        elapsed = now - self.rate_at
        if elapsed >= 0.5:
            self.ticks_per_second = (self.ticks - self.rate_ticks) / elapsed
            self.rate_ticks, self.rate_at = self.ticks, now
        return self.ticks_per_second


@dataclass
class StoreTrouble:
    """A worker's Redis failures: each counted (``Counters.store_errors``), and one outage
    logged once — its first failure as an error, its end as a warning."""

    account: str
    counters: Counters
    failing: bool = False  # a failure was logged and not yet its recovery

    def failed(self, what: str, exc: Exception) -> None:
        """Count a failure of ``what`` ("Writing the feed status of"); log the first."""
        self.counters.store_errors += 1
        if not self.failing:
            self.failing = True
            logger.error("%s %s failed: %s (Redis; retrying)", what, self.account, exc)

    def recovered(self) -> bool:
        """Redis answered: True (logged) when that ends an outage — what a restarted Redis
        lost must then be written again; False when there was none."""
        if not self.failing:
            return False
        self.failing = False
        logger.warning("Redis answers again for the feed of %s", self.account)
        return True


def iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def chain_status(chain: ChainBook) -> ChainStatus:
    """``chain``'s entry in the status record."""
    ready, reason = chain.readiness()
    as_of = chain.as_of.isoformat() if chain.as_of else None
    return {**chain.stats(), "ready": ready, "reason": reason, "seq": chain.seq, "as_of": as_of}


def feed_status(
    *,
    account: str,
    broker: str | None,
    health: Health,
    counters: Counters,
    heartbeat_seconds: float,
    lock_held: bool,
    book: FeedBook | None,
    market: dict[str, str],
    history_recording: bool,
) -> FeedStatus:
    """The record for this moment (``updated_at`` now) of a worker doing ``health`` with
    ``book`` (None before its books are built)."""
    c, now = counters, time.time()
    retry_at = health.retry_at if health.state == BACKOFF else None
    return {
        "account": account,
        "broker": broker,
        "state": health.state,
        "error": health.error,
        "pid": os.getpid(),
        "updated_at": iso(now) or "",
        "heartbeat_seconds": heartbeat_seconds,
        "lock_held": lock_held,
        "connected_since": iso(c.connected_since),
        "last_frame_at": iso(c.last_frame_at),
        "last_frame_age": round(now - c.last_frame_at, 1) if c.last_frame_at else None,
        "last_tick_at": iso(c.last_tick_at),
        "retry_at": iso(retry_at),
        "ticks_per_second": round(c.tick_rate(), 1),
        "frames": c.frames,
        "ticks": c.ticks,
        "unrouted": book.ticks_unrouted if book else 0,
        "reconnects": c.reconnects,
        "crashes": c.crashes,
        "decode_errors": c.decode_errors,
        "publish_errors": c.publish_errors,
        "store_errors": c.store_errors,
        "deltas": c.deltas,
        "rest_legs": c.rest_legs,
        "market": dict(market),
        "chains": [chain_status(chain) for chain in book.chains.values()] if book else [],
        "history_recording": history_recording,
        "history_bars": c.history_bars,
        "history_errors": c.history_errors,
        "history_last_error": c.history_last_error,
        "history_last_minute": (
            c.history_last_minute.isoformat() if c.history_last_minute else None
        ),
        "flush_seconds": c.flush_seconds.to_json(),
        "publish_lag_seconds": c.publish_lag_seconds.to_json(),
    }
