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

Modules: ``profiles`` (the brokers' windows), ``base`` (the limiter interface, identical-request
sharing), ``local`` (limits kept in this process), ``shared`` (limits kept in Redis, per
account), ``sets`` (each broker's set of limiters for one account). Every public name is
importable from ``brokers.ratelimit``.

Pure Python, no Django — except that a :class:`SlotBook` given no Redis client makes one with
``brokers.connections.async_client()`` (``settings.REDIS_URL``) on first use.
"""

from __future__ import annotations

from .base import Clock, IdenticalRequests, RateLimiter, Sleep
from .local import (
    CombinedLimiter,
    LocalLimiter,
    SlidingWindowLimiter,
    SpacingLimiter,
    UniqueRequestLimiter,
)
from .profiles import DHAN, DHAN_CHAIN_INTERVAL, UPSTOX, Window, spaced
from .sets import (
    DhanLimiters,
    dhan_limiters,
    shared_dhan_limiters,
    shared_upstox_limiter,
    upstox_limiter,
)
from .shared import KEY_PREFIX, SharedLimiter, SharedUniqueRequestLimiter, SlotBook

__all__ = [
    "DHAN",
    "DHAN_CHAIN_INTERVAL",
    "KEY_PREFIX",
    "UPSTOX",
    "Clock",
    "CombinedLimiter",
    "DhanLimiters",
    "IdenticalRequests",
    "LocalLimiter",
    "RateLimiter",
    "SharedLimiter",
    "SharedUniqueRequestLimiter",
    "Sleep",
    "SlidingWindowLimiter",
    "SlotBook",
    "SpacingLimiter",
    "UniqueRequestLimiter",
    "Window",
    "dhan_limiters",
    "shared_dhan_limiters",
    "shared_upstox_limiter",
    "spaced",
    "upstox_limiter",
]
