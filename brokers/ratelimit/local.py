"""Limits kept in this process: spacing, sliding windows, their combination, and the DhanHQ
option-chain rule. Time comes from an injectable clock and sleep (tests use virtual time)."""

from __future__ import annotations

import asyncio
import math
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import cast

from .base import Clock, IdenticalRequests, RateLimiter, Sleep, T
from .profiles import DHAN_CHAIN_INTERVAL, Window, spaced
from .shared import SharedLimiter


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


def _shared_form(limiter: RateLimiter) -> SharedLimiter | None:
    if isinstance(limiter, SharedLimiter):
        return limiter
    if isinstance(limiter, CombinedLimiter):
        return limiter._shared
    return None


def _local_window(window: Window, *, name: str, clock: Clock, sleep: Sleep) -> LocalLimiter:
    if window.limit == 1:
        return SpacingLimiter(rate=1, period=window.period, name=name, clock=clock, sleep=sleep)
    return SlidingWindowLimiter(
        limit=window.limit, period=window.period, name=name, clock=clock, sleep=sleep
    )


def local_limiter(
    windows: Sequence[Window], *, name: str, clock: Clock, sleep: Sleep
) -> LocalLimiter:
    """The in-process limiter of ``windows``."""
    if len(windows) == 1:
        return _local_window(windows[0], name=name, clock=clock, sleep=sleep)
    parts = [
        _local_window(w, name=f"{name} {w.limit}/{w.period:g}s", clock=clock, sleep=sleep)
        for w in windows
    ]
    return CombinedLimiter(*parts, name=name, clock=clock, sleep=sleep)
