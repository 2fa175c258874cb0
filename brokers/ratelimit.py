"""Rate limiters for broker REST calls.

Broker limits are the account's: every process that calls with the account's token (feed
worker, Celery worker, ``feedcheck``, admin actions) spends one budget. :class:`SharedLimiter`
keeps that budget in Redis, per account and endpoint class, so every process sees every other's
requests; :func:`shared_dhan_limiters` and :func:`shared_upstox_limiter` build an account's set
(``brokers.adapters.adapter_for`` does, by account name). The in-process limiters
(:class:`SpacingLimiter`, :class:`SlidingWindowLimiter`, :func:`dhan_limiters`,
:func:`upstox_limiter`) keep the same profile for a client that has the account to itself
(tests, a one-off script).

Every limiter *reserves* a caller's start slot first and only then sleeps until it — no
polling: in process the slot is booked with no ``await`` between reading the clock and booking
it; in Redis one Lua script reads and books atomically, so two processes never get the same
slot. A cancelled caller just leaves its slot unused: the limiters err on the slow side.

Limits (:data:`DHAN`, :data:`UPSTOX`), as windows of "at most N starts in any P seconds":

* DhanHQ data APIs 5/s, market quotes 1/s, non-trading APIs 20/s, each spaced evenly.
* DhanHQ option chain (and expiry list): DhanHQ allows "1 unique request per 3 s", read safely —
  *any* two option-chain requests of the account start ≥ 3.5 s apart (a field report saw 805 at
  3.2 s), and each also counts against the data APIs. In process, an identical request in
  flight, or answered within ``reuse_window`` seconds, is answered with that result instead of
  being sent (:class:`UniqueRequestLimiter`, :class:`SharedUniqueRequestLimiter`).
* Upstox standard APIs 50/s spaced, ≤ 500 per minute, ≤ 2000 per 30 minutes.

Pure Python, no Django — except that a :class:`SlotBook` given no Redis client makes one with
``brokers.connections.async_client()`` (``settings.REDIS_URL``) on first use.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis.exceptions import RedisError

from .exceptions import BrokerError

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

KEY_PREFIX = "optionsite:ratelimit:"


# --- profiles -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` request starts in any ``period`` seconds (limit 1: starts spaced by
    ``period``). Raises ``ValueError`` for a limit below 1 or a period that is not positive."""

    limit: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"limit must be an integer ≥ 1, got {self.limit!r}")
        if not self.period > 0:
            raise ValueError(f"period must be > 0 seconds, got {self.period!r}")


def spaced(rate: int, period: float = 1.0) -> Window:
    """``rate`` starts per ``period`` seconds, evenly spaced (stricter than a burst window, so
    safe however the broker counts its second)."""
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
        raise ValueError(f"rate must be an integer ≥ 1, got {rate!r}")
    if not period > 0:
        raise ValueError(f"period must be > 0 seconds, got {period!r}")
    return Window(1, period / rate)


# DhanHQ documents 1 unique option chain per 3 s; a field report (2026) saw 805 at 3.2 s.
DHAN_CHAIN_INTERVAL = 3.5

# Endpoint class → its windows. Class names are part of the Redis keys.
DHAN: dict[str, tuple[Window, ...]] = {
    "data": (spaced(5),),
    "quotes": (spaced(1),),
    "option-chain": (Window(1, DHAN_CHAIN_INTERVAL),),
    "non-trading": (spaced(20),),
}
UPSTOX: dict[str, tuple[Window, ...]] = {
    "standard": (spaced(50), Window(500, 60.0), Window(2000, 1800.0)),
}


# --- the interface --------------------------------------------------------------------------


class RateLimiter(ABC):
    """A limit on request *start* times."""

    def __init__(self, *, name: str, sleep: Sleep = asyncio.sleep) -> None:
        self.name = name
        self._sleep = sleep

    @abstractmethod
    async def acquire(self) -> float:
        """Wait until one request may start; return its reserved start time (seconds on the
        limiter's clock). Raises ``BrokerError`` (transient) when the slot cannot be reserved."""

    async def _wait(self, slot: float, now: float) -> float:
        delay = slot - now
        if delay > 0:
            logger.debug("rate limiter %s: waiting %.3fs", self.name, delay)
            await self._sleep(delay)
        return slot


class IdenticalRequests:
    """Identical requests (same key) share one call: the DhanHQ option-chain rule, in process.

    While a call for ``key`` is in flight, further callers await that same call; after it
    succeeds its result is reused for ``reuse_window`` seconds (0 = only in-flight sharing).
    Failures are never reused: the callers that were waiting on the failed call get its
    exception, the next caller sends anew. Results are shared objects — they should be immutable.
    """

    def __init__(self, *, reuse_window: float, clock: Clock, name: str) -> None:
        if reuse_window < 0:
            raise ValueError(f"reuse_window must be ≥ 0 seconds, got {reuse_window!r}")
        self.reuse_window = reuse_window
        self.name = name
        self._clock = clock
        self._in_flight: dict[Hashable, asyncio.Future[Any]] = {}
        self._recent: dict[Hashable, tuple[float, Any]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Return ``await call()``, shared with identical (same ``key``) concurrent/recent calls.

        ``call`` must itself acquire the limiter before each request it sends. Raises whatever
        ``call`` raises. Cancelling one waiter does not cancel the shared call.
        """
        now = self._clock()
        self._forget_older_than(now - self.reuse_window)
        recent = self._recent.get(key)
        if recent is not None:
            logger.debug("rate limiter %s: reusing a result %.3fs old", self.name, now - recent[0])
            return cast(T, recent[1])
        shared = self._in_flight.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._call_and_remember(key, call))
            # Retrieve the exception even if every waiter was cancelled (no "never retrieved").
            shared.add_done_callback(lambda fut: fut.cancelled() or fut.exception())
            self._in_flight[key] = shared
        return cast(T, await asyncio.shield(shared))

    async def _call_and_remember(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        finally:
            del self._in_flight[key]
        if self.reuse_window > 0:
            self._recent[key] = (self._clock(), result)
        return result

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [k for k, (at, _) in self._recent.items() if at <= cutoff]:
            del self._recent[key]


# --- in process -----------------------------------------------------------------------------


class LocalLimiter(RateLimiter):
    """A limit kept in this process. Subclasses say when the next start may happen.

    Time comes from an injectable monotonic ``clock`` (seconds, float) and an async ``sleep``;
    tests pass a virtual clock and measure spacing on it instead of sleeping.
    """

    def __init__(
        self, *, name: str, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        super().__init__(name=name, sleep=sleep)
        self._clock = clock

    @abstractmethod
    def earliest(self, now: float) -> float:
        """Return the earliest start time (≥ ``now``) this limit allows for the next request."""

    @abstractmethod
    def commit(self, slot: float) -> None:
        """Book a start at ``slot`` (≥ the value :meth:`earliest` returned)."""

    async def acquire(self) -> float:
        """Wait until one request may start; return its booked start time on the clock.

        The slot is booked before sleeping, so concurrent callers queue in call order.
        """
        now = self._clock()
        slot = self.earliest(now)
        self.commit(slot)
        return await self._wait(slot, now)


class SpacingLimiter(LocalLimiter):
    """``rate`` requests per ``period`` seconds, evenly spaced: consecutive starts are at least
    ``period / rate`` apart. An idle limiter lets the next request start at once.

    Raises ``ValueError`` for a rate below 1 or a period that is not positive.
    """

    def __init__(
        self,
        *,
        rate: int,
        period: float = 1.0,
        name: str = "spacing",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval = spaced(rate, period).period
        super().__init__(name=name, clock=clock, sleep=sleep)
        self._next = -math.inf

    def earliest(self, now: float) -> float:
        return max(now, self._next)

    def commit(self, slot: float) -> None:
        self._next = max(self._next, slot + self.interval)


class SlidingWindowLimiter(LocalLimiter):
    """At most ``limit`` starts in any ``period``-second window; bursts up to ``limit`` allowed.

    Raises ``ValueError`` for a limit below 1 or a period that is not positive.
    """

    def __init__(
        self,
        *,
        limit: int,
        period: float,
        name: str = "window",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        Window(limit, period)  # validates
        super().__init__(name=name, clock=clock, sleep=sleep)
        self.limit = limit
        self.period = period
        self._starts: deque[float] = deque(maxlen=limit)

    def earliest(self, now: float) -> float:
        if not self._starts:
            return now
        # Booked starts are non-decreasing, so the oldest of the last `limit` is _starts[0].
        slot = max(now, self._starts[-1])
        if len(self._starts) == self.limit:
            slot = max(slot, self._starts[0] + self.period)
        return slot

    def commit(self, slot: float) -> None:
        self._starts.append(slot)


class CombinedLimiter(LocalLimiter):
    """All of several limits at once (e.g. Upstox 50/s *and* 500/min *and* 2000/30 min).

    In-process parts may be shared with other combinations (DhanHQ option chain = chain rule +
    data 5/s); one start is booked on every part at the latest time any part allows. Uses the
    clock and sleep of its first part unless given others (all parts must share one clock).

    Shared parts (one account's :class:`SlotBook`) are reserved together in one atomic script:
    :meth:`acquire` books one start in every part's Redis keys. Raises ``ValueError`` for no
    parts, for shared parts of different books, or for shared and in-process parts mixed (a
    start booked in one could not be undone when the other refuses it).
    """

    def __init__(
        self,
        *parts: RateLimiter,
        name: str = "combined",
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not parts:
            raise ValueError("CombinedLimiter needs at least one limiter")
        shared = [s for s in map(_shared_form, parts) if s is not None]
        self._shared: SharedLimiter | None = None
        if shared:
            if len(shared) != len(parts):
                raise ValueError(
                    f"{name}: cannot combine limiters shared through Redis with in-process "
                    "ones; build every part for the account from the same SlotBook"
                )
            self._shared = SharedLimiter.joined(shared, name=name, sleep=sleep)
            super().__init__(name=name, sleep=self._shared._sleep)
        else:
            first = cast(LocalLimiter, parts[0])
            super().__init__(
                name=name,
                clock=clock if clock is not None else first._clock,
                sleep=sleep if sleep is not None else first._sleep,
            )
        self.parts = parts

    def earliest(self, now: float) -> float:
        return max(self._local_part(part).earliest(now) for part in self.parts)

    def commit(self, slot: float) -> None:
        for part in self.parts:
            self._local_part(part).commit(slot)

    async def acquire(self) -> float:
        """Wait until every part allows one start; return the reserved start time."""
        if self._shared is not None:
            return await self._shared.acquire()
        return await super().acquire()

    def _local_part(self, part: RateLimiter) -> LocalLimiter:
        if self._shared is not None or not isinstance(part, LocalLimiter):
            raise TypeError(f"{self.name} is kept in Redis: it has no in-process schedule")
        return part


class UniqueRequestLimiter(SpacingLimiter):
    """The DhanHQ option-chain rule in process: one request per ``interval`` seconds, identical
    ones shared.

    :meth:`acquire` spaces *every* request (each retry attempt too) ≥ ``interval`` apart, whatever
    its parameters. :meth:`run` coalesces by key (see :class:`IdenticalRequests`); the result of
    a call is reused for ``reuse_window`` seconds (default: ``interval``).
    """

    def __init__(
        self,
        *,
        interval: float = DHAN_CHAIN_INTERVAL,
        reuse_window: float | None = None,
        name: str = "unique-request",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(rate=1, period=interval, name=name, clock=clock, sleep=sleep)
        self._identical = IdenticalRequests(
            reuse_window=interval if reuse_window is None else reuse_window, clock=clock, name=name
        )
        self.reuse_window = self._identical.reuse_window

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """See :meth:`IdenticalRequests.run`."""
        return await self._identical.run(key, call)


def _local_window(window: Window, *, name: str, clock: Clock, sleep: Sleep) -> LocalLimiter:
    if window.limit == 1:
        return SpacingLimiter(rate=1, period=window.period, name=name, clock=clock, sleep=sleep)
    return SlidingWindowLimiter(
        limit=window.limit, period=window.period, name=name, clock=clock, sleep=sleep
    )


def _local(windows: Sequence[Window], *, name: str, clock: Clock, sleep: Sleep) -> LocalLimiter:
    """The in-process limiter of ``windows``."""
    if len(windows) == 1:
        return _local_window(windows[0], name=name, clock=clock, sleep=sleep)
    parts = [
        _local_window(w, name=f"{name} {w.limit}/{w.period:g}s", clock=clock, sleep=sleep)
        for w in windows
    ]
    return CombinedLimiter(*parts, name=name, clock=clock, sleep=sleep)


# --- shared through Redis -------------------------------------------------------------------

# Reserve the earliest start that every window of every key allows, at or after now, and book
# it in every key. KEYS: one sorted set of booked starts (µs, as scores) per endpoint class.
# ARGV: now in µs ("" = this Redis server's clock), a member unique to this reservation, then
# per key the number of its windows and each window's limit and period (µs).
# Bookings never go before the latest one (callers queue in reservation order), so the starts
# that bound a window are the latest ones: the limit-th latest must be a period before the slot.
_RESERVE = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local slot = now
local keep, horizon = {}, {}
local at = 3
for i, key in ipairs(KEYS) do
  local windows = tonumber(ARGV[at])
  at = at + 1
  keep[i], horizon[i] = 0, 0
  for _ = 1, windows do
    local limit, period = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    at = at + 2
    keep[i] = math.max(keep[i], limit)
    horizon[i] = math.max(horizon[i], period)
    local edge = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
    if edge[2] then
      slot = math.max(slot, tonumber(edge[2]) + period)
    end
  end
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    slot = math.max(slot, tonumber(last[2]))
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, slot, ARGV[2])
  -- Starts older than the longest window, or beyond the largest limit, bound nothing.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - horizon[i])
  redis.call('ZREMRANGEBYRANK', key, 0, -(keep[i] + 1))
  redis.call('PEXPIRE', key, math.ceil((slot - now + horizon[i]) / 1000) + 1000)
end
return {slot, now}
"""


class SlotBook:
    """One account's shared rate-limit state in Redis, for the limiters of one process.

    Keys: ``optionsite:ratelimit:<account>:<class>``, each a sorted set of booked start times
    that expires one longest window after its last booking. ``redis`` is the async client to
    use (its owner closes it); without one, a client is made with
    ``brokers.connections.async_client()`` on first use — use the book in one event loop and
    close it with :meth:`aclose`. ``clock`` None (production) takes the time from the Redis
    server, one time base for every process on every host; tests pass a clock in seconds.
    ``broker`` names the broker in the errors.
    """

    def __init__(
        self,
        account: str,
        *,
        broker: str,
        redis: aioredis.Redis | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not account:
            raise ValueError("a SlotBook needs the account's name")
        self.account = account
        self.broker = broker
        self._clock = clock
        self._redis = redis
        self._owns_client = redis is None
        self._script: AsyncScript | None = None

    def key(self, endpoint_class: str) -> str:
        """The Redis key of ``endpoint_class`` for this account."""
        return f"{KEY_PREFIX}{self.account}:{endpoint_class}"

    async def reserve(self, rules: Mapping[str, Sequence[Window]]) -> tuple[float, float]:
        """Book the earliest start every window of every class in ``rules`` allows.

        Returns ``(slot, now)`` in seconds on the book's clock; the caller waits ``slot - now``.
        Raises ``BrokerError`` (transient, code ``"ratelimit-unavailable"``) when Redis does not
        answer: no request may be sent then, since every other process of the account could be
        spending the same budget unseen. Does not hang: the client's timeouts bound the wait.
        """
        now = "" if self._clock is None else str(round(self._clock() * 1_000_000))
        keys: list[str] = []
        args: list[str | int] = [now, uuid.uuid4().hex]
        for endpoint_class, windows in rules.items():
            keys.append(self.key(endpoint_class))
            args.append(len(windows))
            for window in windows:
                args += [window.limit, round(window.period * 1_000_000)]
        try:
            slot_us, now_us = await self._reserve_script()(keys=keys, args=args)
        except RedisError as exc:
            # No in-process fallback: each process would then spend the whole budget on its
            # own, and DhanHQ answers the excess with 805 and may block the account for it.
            raise BrokerError(
                f"The {self.broker} rate limit of account {self.account!r} is shared by every "
                f"process through Redis, and Redis did not answer ({exc}): the request was not "
                "sent. Check that Redis (REDIS_URL) is running and reachable; requests resume "
                "by themselves once it answers.",
                broker=self.broker,
                permanent=False,
                code="ratelimit-unavailable",
            ) from exc
        return int(slot_us) / 1_000_000, int(now_us) / 1_000_000

    def _reserve_script(self) -> AsyncScript:
        if self._script is None:
            if self._redis is None:
                from .connections import async_client  # reads Django settings: only when used

                self._redis = async_client()
            self._script = self._redis.register_script(_RESERVE)
        return self._script

    async def aclose(self) -> None:
        """Close the Redis client this book made (an injected one is left to its owner)."""
        if self._owns_client and self._redis is not None:
            client, self._redis, self._script = self._redis, None, None
            await client.aclose()


class SharedLimiter(RateLimiter):
    """A limit of the account kept in Redis: ``rules`` maps endpoint classes to their windows,
    and one start is booked in every class at once (:meth:`SlotBook.reserve`).

    The caller sleeps until its reserved slot; two callers in any processes never get the same
    one. :meth:`acquire` returns the slot on the book's clock (Redis server time by default) and
    raises ``BrokerError`` (transient) when Redis does not answer.
    """

    def __init__(
        self,
        book: SlotBook,
        rules: Mapping[str, Sequence[Window]],
        *,
        name: str,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not rules:
            raise ValueError(f"{name}: a shared limiter needs at least one endpoint class")
        super().__init__(name=name, sleep=sleep)
        self.book = book
        self.rules: dict[str, tuple[Window, ...]] = {k: tuple(v) for k, v in rules.items()}

    @classmethod
    def joined(
        cls, parts: Sequence[SharedLimiter], *, name: str, sleep: Sleep | None = None
    ) -> SharedLimiter:
        """One limiter booking in every class of ``parts`` (which must share one book)."""
        books = {id(part.book) for part in parts}
        if len(books) != 1:
            raise ValueError(f"{name}: shared limiters of different accounts cannot be combined")
        rules: dict[str, tuple[Window, ...]] = {}
        for part in parts:
            for endpoint_class, windows in part.rules.items():
                merged = rules.get(endpoint_class, ()) + windows
                rules[endpoint_class] = tuple(dict.fromkeys(merged))
        return SharedLimiter(
            parts[0].book, rules, name=name, sleep=sleep if sleep is not None else parts[0]._sleep
        )

    async def acquire(self) -> float:
        slot, now = await self.book.reserve(self.rules)
        return await self._wait(slot, now)


class SharedUniqueRequestLimiter(SharedLimiter):
    """The DhanHQ option-chain rule for the whole account: every request (each retry too) of
    any process starts ≥ ``interval`` seconds after the previous one; in this process, identical
    requests share one call (:meth:`run`, see :class:`IdenticalRequests`; ``reuse_window``
    defaults to ``interval``, measured on ``clock``)."""

    def __init__(
        self,
        book: SlotBook,
        *,
        interval: float = DHAN_CHAIN_INTERVAL,
        reuse_window: float | None = None,
        endpoint_class: str = "option-chain",
        name: str = "unique-request",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(book, {endpoint_class: (Window(1, interval),)}, name=name, sleep=sleep)
        self.interval = interval
        self._identical = IdenticalRequests(
            reuse_window=interval if reuse_window is None else reuse_window, clock=clock, name=name
        )
        self.reuse_window = self._identical.reuse_window

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """See :meth:`IdenticalRequests.run`."""
        return await self._identical.run(key, call)


def _shared_form(limiter: RateLimiter) -> SharedLimiter | None:
    if isinstance(limiter, SharedLimiter):
        return limiter
    if isinstance(limiter, CombinedLimiter):
        return limiter._shared
    return None


# --- the brokers' sets ----------------------------------------------------------------------


@dataclass(frozen=True)
class DhanLimiters:
    """The limiters one DhanHQ account's REST callers share. ``option_chain`` is combined with
    ``data`` by the REST client for each option-chain request."""

    data: RateLimiter
    quotes: RateLimiter
    option_chain: UniqueRequestLimiter | SharedUniqueRequestLimiter
    non_trading: RateLimiter


def dhan_limiters(
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    chain_interval: float = DHAN_CHAIN_INTERVAL,
    chain_reuse_window: float | None = None,
) -> DhanLimiters:
    """The DhanHQ limits kept in this process (for a client that has the account to itself):
    data 5/s, quotes 1/s, option chain 1 per ``chain_interval`` s, non-trading 20/s."""
    return DhanLimiters(
        data=_local(DHAN["data"], name="dhan-data", clock=clock, sleep=sleep),
        quotes=_local(DHAN["quotes"], name="dhan-quotes", clock=clock, sleep=sleep),
        option_chain=UniqueRequestLimiter(
            interval=chain_interval,
            reuse_window=chain_reuse_window,
            name="dhan-option-chain",
            clock=clock,
            sleep=sleep,
        ),
        non_trading=_local(DHAN["non-trading"], name="dhan-non-trading", clock=clock, sleep=sleep),
    )


def shared_dhan_limiters(
    book: SlotBook,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    chain_interval: float = DHAN_CHAIN_INTERVAL,
    chain_reuse_window: float | None = None,
) -> DhanLimiters:
    """The DhanHQ limits of ``book``'s account, shared with every process through Redis (same
    profile as :func:`dhan_limiters`; ``clock`` only times in-process result reuse)."""
    return DhanLimiters(
        data=SharedLimiter(book, {"data": DHAN["data"]}, name="dhan-data", sleep=sleep),
        quotes=SharedLimiter(book, {"quotes": DHAN["quotes"]}, name="dhan-quotes", sleep=sleep),
        option_chain=SharedUniqueRequestLimiter(
            book,
            interval=chain_interval,
            reuse_window=chain_reuse_window,
            name="dhan-option-chain",
            clock=clock,
            sleep=sleep,
        ),
        non_trading=SharedLimiter(
            book, {"non-trading": DHAN["non-trading"]}, name="dhan-non-trading", sleep=sleep
        ),
    )


def upstox_limiter(*, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> RateLimiter:
    """The Upstox standard-API limit kept in this process: 50/s spaced, ≤ 500 per minute,
    ≤ 2000 per 30 min."""
    return _local(UPSTOX["standard"], name="upstox-standard", clock=clock, sleep=sleep)


def shared_upstox_limiter(book: SlotBook, *, sleep: Sleep = asyncio.sleep) -> RateLimiter:
    """The Upstox standard-API limit of ``book``'s account, shared through Redis."""
    return SharedLimiter(
        book, {"standard": UPSTOX["standard"]}, name="upstox-standard", sleep=sleep
    )
