"""Each broker's set of limiters for one account: kept in this process, or shared through
Redis (:class:`~brokers.ratelimit.shared.SlotBook`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .base import Clock, RateLimiter, Sleep
from .local import UniqueRequestLimiter, local_limiter
from .profiles import DHAN, DHAN_CHAIN_INTERVAL, UPSTOX
from .shared import SharedLimiter, SharedUniqueRequestLimiter, SlotBook


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
        data=local_limiter(DHAN["data"], name="dhan-data", clock=clock, sleep=sleep),
        quotes=local_limiter(DHAN["quotes"], name="dhan-quotes", clock=clock, sleep=sleep),
        option_chain=UniqueRequestLimiter(
            interval=chain_interval,
            reuse_window=chain_reuse_window,
            name="dhan-option-chain",
            clock=clock,
            sleep=sleep,
        ),
        non_trading=local_limiter(
            DHAN["non-trading"], name="dhan-non-trading", clock=clock, sleep=sleep
        ),
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
    return local_limiter(UPSTOX["standard"], name="upstox-standard", clock=clock, sleep=sleep)


def shared_upstox_limiter(book: SlotBook, *, sleep: Sleep = asyncio.sleep) -> RateLimiter:
    """The Upstox standard-API limit of ``book``'s account, shared through Redis."""
    return SharedLimiter(
        book, {"standard": UPSTOX["standard"]}, name="upstox-standard", sleep=sleep
    )
