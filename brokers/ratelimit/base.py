"""The limiter interface, and identical requests sharing one call (in process)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


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
