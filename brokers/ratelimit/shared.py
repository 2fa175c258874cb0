"""Limits kept in Redis, shared by every process of one account: the :class:`SlotBook` that
reserves start slots atomically, and the limiters booking in it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from ..exceptions import BrokerError
from .base import Clock, IdenticalRequests, RateLimiter, Sleep, T
from .profiles import DHAN_CHAIN_INTERVAL, Window

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

KEY_PREFIX = "optionsite:ratelimit:"


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
                from ..connections import async_client  # reads Django settings: only when used

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
