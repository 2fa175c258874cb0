"""Asyncio rate limiters for broker REST calls. Pure Python, no Django.

One limiter instance stands for one broker limit (one account × one endpoint family) and is
shared by every caller in the process; the limit holds across concurrent callers because a
caller *reserves* its start slot synchronously (no ``await`` between reading the clock and
booking the slot) and only then sleeps until the slot. There is no lock to hold across an
``await``, so a cancelled caller just leaves its slot unused — the limiter errs on the slow side.

Limits are per process: two worker processes sharing one account need separate budgets (or a
shared limiter elsewhere).

Time comes from an injectable monotonic ``clock`` (seconds, float) and an async ``sleep``; tests
pass a virtual clock and measure spacing on it instead of sleeping.

Configured limits (see :func:`dhan_limiters`, :func:`upstox_limiter`):

* Dhan data APIs 5/s, market quotes 1/s, non-trading APIs 20/s.
* Dhan option chain "1 unique request per 3 s" — read safely: *any* two option-chain requests
  start ≥ 3 s apart, and an identical request while one is in flight, or within ``reuse_window``
  seconds after one finished, is answered with that result instead of being sent
  (:class:`UniqueRequestLimiter`).
* Upstox standard APIs 50/s, 500/min, 2000/30 min.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


class RateLimiter(ABC):
    """A limit on request *start* times. Subclasses say when the next start may happen."""

    def __init__(
        self, *, name: str, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.name = name
        self._clock = clock
        self._sleep = sleep

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
        delay = slot - now
        if delay > 0:
            logger.debug("rate limiter %s: waiting %.3fs", self.name, delay)
            await self._sleep(delay)
        return slot


class SpacingLimiter(RateLimiter):
    """``rate`` requests per ``period`` seconds, evenly spaced.

    Consecutive starts are at least ``period / rate`` apart — stricter than a window that
    allows a burst of ``rate`` at once, and so safe however the broker counts its second.
    An idle limiter lets the next request start at once.

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
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
            raise ValueError(f"rate must be an integer ≥ 1, got {rate!r}")
        if not period > 0:
            raise ValueError(f"period must be > 0 seconds, got {period!r}")
        super().__init__(name=name, clock=clock, sleep=sleep)
        self.interval = period / rate
        self._next = -math.inf

    def earliest(self, now: float) -> float:
        return max(now, self._next)

    def commit(self, slot: float) -> None:
        self._next = max(self._next, slot + self.interval)


class SlidingWindowLimiter(RateLimiter):
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
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer ≥ 1, got {limit!r}")
        if not period > 0:
            raise ValueError(f"period must be > 0 seconds, got {period!r}")
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


class CombinedLimiter(RateLimiter):
    """All of several limits at once (e.g. Upstox 50/s *and* 500/min *and* 2000/30 min).

    Parts may be shared with other combinations (Dhan option chain = chain rule + data 5/s);
    one start is booked on every part at the latest time any part allows. Uses the clock and
    sleep of its first part unless given others (all parts must share one clock).
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
        super().__init__(
            name=name,
            clock=clock if clock is not None else parts[0]._clock,
            sleep=sleep if sleep is not None else parts[0]._sleep,
        )
        self.parts = parts

    def earliest(self, now: float) -> float:
        return max(part.earliest(now) for part in self.parts)

    def commit(self, slot: float) -> None:
        for part in self.parts:
            part.commit(slot)


class UniqueRequestLimiter(SpacingLimiter):
    """The Dhan option-chain rule: one request per ``interval`` seconds, identical ones shared.

    :meth:`acquire` spaces *every* request (each retry attempt too) ≥ ``interval`` apart, whatever
    its parameters. :meth:`run` coalesces by key: while a call for ``key`` is in flight, further
    callers await that same call; after it succeeds its result is reused for ``reuse_window``
    seconds (default: ``interval``; 0 = only in-flight sharing). Failures are never reused: the
    callers that were waiting on the failed call get its exception, the next caller sends anew.
    Results are shared objects — they should be immutable.
    """

    def __init__(
        self,
        *,
        interval: float = 3.0,
        reuse_window: float | None = None,
        name: str = "unique-request",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(rate=1, period=interval, name=name, clock=clock, sleep=sleep)
        self.reuse_window = interval if reuse_window is None else reuse_window
        if self.reuse_window < 0:
            raise ValueError(f"reuse_window must be ≥ 0 seconds, got {reuse_window!r}")
        self._in_flight: dict[Hashable, asyncio.Future[Any]] = {}
        self._recent: dict[Hashable, tuple[float, Any]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Return ``await call()``, shared with identical (same ``key``) concurrent/recent calls.

        ``call`` must itself ``acquire`` this limiter before each request it sends. Raises
        whatever ``call`` raises. Cancelling one waiter does not cancel the shared call.
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


@dataclass(frozen=True)
class DhanLimiters:
    """The limiters one DhanHQ account shares between all its REST callers."""

    data: RateLimiter
    quotes: RateLimiter
    option_chain: UniqueRequestLimiter
    non_trading: RateLimiter


def dhan_limiters(
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    chain_interval: float = 3.0,
    chain_reuse_window: float | None = None,
) -> DhanLimiters:
    """Build the DhanHQ limits: data 5/s, quotes 1/s, option chain 1 per 3 s, other 20/s."""
    return DhanLimiters(
        data=SpacingLimiter(rate=5, period=1.0, name="dhan-data", clock=clock, sleep=sleep),
        quotes=SpacingLimiter(rate=1, period=1.0, name="dhan-quotes", clock=clock, sleep=sleep),
        option_chain=UniqueRequestLimiter(
            interval=chain_interval,
            reuse_window=chain_reuse_window,
            name="dhan-option-chain",
            clock=clock,
            sleep=sleep,
        ),
        non_trading=SpacingLimiter(
            rate=20, period=1.0, name="dhan-non-trading", clock=clock, sleep=sleep
        ),
    )


def upstox_limiter(*, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> RateLimiter:
    """Build the Upstox standard-API limit: 50/s spaced, ≤ 500 per minute, ≤ 2000 per 30 min."""
    return CombinedLimiter(
        SpacingLimiter(rate=50, period=1.0, name="upstox-50/s", clock=clock, sleep=sleep),
        SlidingWindowLimiter(
            limit=500, period=60.0, name="upstox-500/min", clock=clock, sleep=sleep
        ),
        SlidingWindowLimiter(
            limit=2000, period=1800.0, name="upstox-2000/30min", clock=clock, sleep=sleep
        ),
        name="upstox-standard",
        clock=clock,
        sleep=sleep,
    )
