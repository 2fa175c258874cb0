"""Publishing a feed worker's chains: Redis snapshots, channel-layer deltas, database copies.

Every write is fenced by the account's lock (``chains.ownership``): a worker that no longer
holds it writes nothing, and says so by raising ``LockLost`` — the worker then stands down.
A Redis failure is counted (``publish_errors``) and the next flush tries again: the book keeps
every change, so nothing is lost but time. After each flush the history recorder
(``chains.feed.history``) judges the minute boundaries no tick crossed (a quiet market).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from redis.exceptions import RedisError

from .. import store
from ..book import ChainBook, FeedBook, stored_snapshot
from ..contracts import StoredSnapshot, chain_delta_event
from ..ownership import FeedLock, take_rest_chains
from ..persisted import save_snapshots
from .history import HistoryRecorder
from .status import Counters

logger = logging.getLogger(__name__)


class LockLost(Exception):
    """This worker no longer holds its account's lock: it must stop writing and stand by."""


class Publisher:
    """Writes the chains of ``account`` while ``lock`` is held."""

    def __init__(
        self,
        *,
        account: str,
        redis: Any,
        layer: Any,
        lock: FeedLock,
        counters: Counters,
        history: HistoryRecorder | None = None,
    ) -> None:
        self.account = account
        self.history = history
        self.redis = redis
        self.layer = layer
        self.lock = lock
        self.counters = counters
        self.broker = ""
        self.last_persist = time.monotonic()

    def snapshot(self, chain: ChainBook) -> StoredSnapshot:
        return stored_snapshot(chain, account=self.account, broker=self.broker)

    async def flush(self, book: FeedBook, now: datetime | None = None) -> int:
        """Flush ``book``: write each changed chain's snapshot (fenced), then publish its
        delta. Returns the number of deltas sent. Raises LockLost when the lock is no longer
        this worker's: nothing of this flush was written then."""
        if not self.lock.held():
            raise LockLost(f"the feed lock of {self.account} ran out before a flush")
        now = now or datetime.now(UTC)
        started = time.perf_counter()
        sent = 0
        # Every snapshot is taken before anything awaits: each is the state its delta describes
        # (ticks applied meanwhile belong to the next flush).
        flushed = [(chain, delta, self.snapshot(chain)) for chain, delta in book.flush(now)]
        if self.history is not None:
            self.history.at_flush()
        for chain, delta, snapshot in flushed:
            try:
                # Snapshot first: a consumer resyncing after a gap never gets an older seq.
                written = await self.lock.write_if_held(store.snapshot_items(snapshot))
                if not written:
                    raise LockLost(f"another worker holds the feed lock of {self.account}")
                await self.layer.group_send(
                    store.group_name(chain.underlying, chain.expiry),
                    chain_delta_event(
                        underlying=chain.underlying, expiry=chain.expiry.isoformat(), delta=delta
                    ),
                )
            except RedisError as exc:
                self.counters.publish_errors += 1
                # Pending again, so the next flush writes the whole snapshot even in a quiet
                # market (consumers see the seq gap and resync from it).
                chain.header_dirty = True
                logger.error("Publishing %s %s failed: %s", chain.underlying, chain.expiry, exc)
                continue
            sent += 1
        self.counters.deltas += sent
        if flushed:  # timed when there was something to publish (chains.metrics)
            self.counters.flushed(seconds=time.perf_counter() - started, published=sent > 0)
        return sent

    async def persist(self, book: FeedBook) -> None:
        """Save every published chain's snapshot to the database (the last-known fallback),
        unless the lock is no longer held (the new holder persists its own)."""
        self.last_persist = time.monotonic()
        if not self.lock.held():
            return
        snapshots = [self.snapshot(c) for c in book.chains.values() if c.seq > 0]
        if snapshots:
            await sync_to_async(save_snapshots)(self.account, snapshots)

    async def apply_rest_chains(self, book: FeedBook | None) -> int:
        """Merge the REST chains the repopulate task handed over (this worker is the one writer
        of its chains); newer wins per leg, so an older REST row never replaces a tick. The
        next flush publishes what changed. Returns the number of legs changed. Raises
        RedisError (the queue stays for the next call) and ContractError (a handover this
        worker cannot read: the queue is emptied)."""
        if book is None:
            return 0  # not prepared yet: leave the queue for after prepare()
        changed = 0
        for item in await take_rest_chains(self.redis, self.account):
            chain = book.chains.get((item.underlying, item.expiry))
            if chain is None:
                logger.info(
                    "REST chain %s %s is not followed by %s: skipped",
                    item.underlying,
                    item.expiry,
                    self.account,
                )
                continue
            changed += chain.apply_rest(item.spot, item.rows, item.observed_at)
        self.counters.rest_legs += changed
        return changed
