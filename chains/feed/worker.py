"""The feed worker of one broker account: broker WebSocket → chain book → Channels + Redis.

A supervisor of small parts, each testable on its own:

- ``session.FeedSession`` — one broker connection: open, subscribe, receive, liveness;
- ``publisher.Publisher`` — snapshots, deltas and database copies, fenced by the lock;
- ``history.HistoryRecorder`` — a minute bar per chain at each minute of the exchange clock,
  written off the loop;
- ``status`` — what the worker is doing, its counts and Redis trouble, published as the feed
  status record;
- ``tokens.TokenLifecycle`` — the account's settings and adapter, refusals, new tokens;
- ``chains.ownership.FeedLock`` — the one-writer rule.

``run`` strings them together and supervises them:

    verify configuration (FeedConfigError: the command exits non-zero) → loop:
      stand by until the account's lock is ours → hold it: build the books, prime them from
      REST, and run together (``asyncio.TaskGroup``) the lock keeper, the status reporter,
      the flusher, the history writer, the account watcher and the connection loop → on the
      way out unsubscribe, flush and persist (only while the lock is still ours) and release
      the lock.

A lost lock (another holder, or Redis unreachable until the lock could expire) ends the
holding: the socket is closed, nothing more is written, and the worker stands by again. Any
other death of a task is logged with its traceback, shown as state ``error`` with what
happened, and the holding restarts after a capped, jittered pause: never half-alive. Each
account has its own worker and lifecycle. SIGTERM (``stop`` set) ends everything cleanly.

The connection loop: re-read the account, open the feed (Upstox: authorize again), receive
until the socket closes or goes silent → back off (capped, full jitter; reset after a
connection that delivered frames) → again. A permanent broker refusal (expired/invalid token,
no data plan) marks the account and waits for a new token instead of hammering the broker;
the token is checked over REST only when a failure suggests a token problem.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from redis.exceptions import RedisError

from brokers.adapters import AccountConfig, FeedAdapter, InstrumentRef
from brokers.exceptions import CodecError
from brokers.ticks import Disconnect, MarketStatus, Tick

from .. import store
from ..book import FeedBook
from ..ownership import FeedLock
from ..plan import ChainPlan, chain_plans
from . import books
from .connection import Connection
from .history import HistoryRecorder
from .publisher import LockLost, Publisher
from .settings import FeedSettings
from .status import (
    ERROR,
    PREPARING,
    STANDBY,
    STOPPED,
    STOPPING,
    STORE_UNAVAILABLE,
    Counters,
    FeedStatus,
    Health,
    StoreTrouble,
    feed_status,
)
from .supervision import guarded, primary
from .tokens import TokenLifecycle, on_disconnect, running, wait

logger = logging.getLogger(__name__)


class FeedWorker:
    def __init__(
        self,
        account: str,
        *,
        settings: FeedSettings | None = None,
        channel_layer: Any,
        redis: Any,
    ) -> None:
        if channel_layer is None:
            raise ValueError("the feed worker needs a channel layer (CHANNEL_LAYERS)")
        self.account = account
        self.settings = s = settings or FeedSettings()
        self.layer = channel_layer
        self.redis = redis
        self.health = Health()
        self.counters = Counters()
        self.lock = FeedLock(redis, account, ttl=s.lock_ttl, margin=s.lock_margin)
        self.tokens = TokenLifecycle(account=account, settings=s, health=self.health, redis=redis)
        self.history = HistoryRecorder(
            account=account,
            lock=self.lock,
            health=self.health,
            counters=self.counters,
            enabled=s.history_recording,
            queue_minutes=s.history_queue_minutes,
        )
        self.publisher = Publisher(
            account=account,
            redis=redis,
            layer=channel_layer,
            lock=self.lock,
            counters=self.counters,
            history=self.history,
        )
        self.book: FeedBook | None = None
        self.plans: list[ChainPlan] = []
        self.index_refs: list[InstrumentRef] = []
        self.leg_refs: list[InstrumentRef] = []
        self.market: dict[str, str] = {}
        self.connection = Connection(
            account=account,
            settings=s,
            tokens=self.tokens,
            counters=self.counters,
            health=self.health,
            handle=self.handle_frame,
        )
        self.tokens.on_new_token = self.connection.switch_token
        self.store_trouble = StoreTrouble(account, self.counters)

    # --- the parts' state, as one worker -----------------------------------------------------

    @property
    def state(self) -> str:
        return self.health.state

    @property
    def error(self) -> str:
        return self.health.error

    @property
    def config(self) -> AccountConfig | None:
        return self.tokens.config

    @property
    def adapter(self) -> FeedAdapter | None:
        return self.tokens.adapter

    # --- steps -----------------------------------------------------------------------------

    async def verify(self) -> None:
        """Read and check the account and its chains; FeedConfigError when a person must act."""
        config = await self.tokens.load()
        self.plans = await sync_to_async(chain_plans)(self.account)
        self.publisher.broker = config.kind

    async def prepare(self) -> None:
        """Centre strike windows on the spot (REST) and build fresh books (a new ``run``)."""
        adapter = self.tokens.open_adapter()
        spots = await books.fetch_spots(adapter, self.plans, account=self.account)
        self.book, self.index_refs, self.leg_refs = books.build(
            self.plans, spots, account=self.account
        )
        self.history.follow(self.book)

    async def prime(self, stop: asyncio.Event | None = None) -> None:
        """Populate every chain from the broker's REST option chain (within its rate limit),
        until ``stop`` is set."""
        assert self.book is not None
        await books.prime(self.book, self.tokens.open_adapter, self.index_refs, stop=stop)

    def handle_frame(self, frame: bytes | str, received_at: float) -> None:
        """Decode one frame and apply every event; malformed frames are counted and skipped."""
        adapter, book = self.tokens.adapter, self.book
        assert adapter is not None and book is not None
        counters = self.counters
        counters.frames += 1
        counters.last_frame_at = counters.last_traffic_at = received_at
        if isinstance(frame, str):
            counters.decode_errors += 1
            logger.warning(
                "Unexpected text frame from %s (%d chars) skipped", self.account, len(frame)
            )
            return
        try:
            events = adapter.decode(frame)
        except CodecError as exc:
            counters.decode_errors += 1
            logger.warning("Malformed frame from %s skipped: %s", self.account, exc)
            events = exc.events  # what decoded before the bad packet is not lost
        apply = book.apply
        due = self.history.due  # the exchange clocks' next minute boundary (history)
        ticks = 0
        for event in events:
            if type(event) is Tick:
                stamp = event.exchange_time
                if stamp is not None and stamp >= due:
                    self._crossing(event, stamp, events, received_at)
                    due = self.history.due
                ticks += 1
                apply(event, received_at)
            elif isinstance(event, MarketStatus):
                self.market[event.segment] = event.status
            elif isinstance(event, Disconnect):
                on_disconnect(event)
        if ticks:
            counters.ticks += ticks
            counters.last_tick_at = received_at

    def _crossing(self, tick: Tick, stamp: datetime, events: list[Any], received_at: float) -> None:
        """``tick`` may be the first of its exchange stamped at or after a minute boundary:
        before it is applied, apply the frame's later ticks of that exchange stamped before
        the boundary (an Upstox frame's entries are in no order; applying them again in turn
        changes nothing), then let the history recorder take the boundary's bars."""
        history, book = self.history, self.book
        assert book is not None
        clock = history.passes(tick.instrument, stamp)
        if clock is None:
            return
        boundary = clock.boundary
        assert boundary is not None
        later = False
        for event in events:
            if event is tick:
                later = True
            elif (
                later
                and type(event) is Tick
                and event.exchange_time is not None
                and event.exchange_time < boundary
                and history.clock_of(event.instrument) is clock
            ):
                book.apply(event, received_at)
        history.cross(clock, stamp)

    async def flush(self, now: datetime | None = None) -> int:
        """Flush the book: write snapshots, publish deltas. Returns the number of deltas.
        Raises LockLost when the lock is not this worker's."""
        assert self.book is not None
        return await self.publisher.flush(self.book, now)

    async def persist(self) -> None:
        """Save every chain's snapshot to the database (the last-known fallback)."""
        assert self.book is not None
        await self.publisher.persist(self.book)

    async def apply_rest_chains(self) -> int:
        """Merge the REST chains the repopulate task handed over; the number of legs changed
        (0 when Redis fails: the queue waits for the next call)."""
        try:
            return await self.publisher.apply_rest_chains(self.book)
        except RedisError as exc:
            self.store_trouble.failed("Reading the REST chains handed to", exc)
            return 0

    def status(self) -> FeedStatus:
        return feed_status(
            account=self.account,
            broker=self.config.kind if self.config else None,
            health=self.health,
            counters=self.counters,
            heartbeat_seconds=self.settings.status_interval,
            lock_held=self.lock.held(),
            book=self.book,
            market=self.market,
            history_recording=self.history.enabled,
        )

    async def write_status(self) -> bool:
        """Publish the status record (TTL = the lock's) while this worker holds the lock, or
        while nobody does (a stopping or failed worker says so). False when not written."""
        item = store.feed_status_item(self.account, self.status(), ttl=self.settings.lock_ttl)
        try:
            written = await self.lock.write_if_held([item], or_free=True)
        except RedisError as exc:
            self.store_trouble.failed("Writing the feed status of", exc)
            return False
        self._store_recovered()
        return written

    # --- supervision ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. FeedConfigError from the first verification propagates
        (the command exits non-zero); everything after it is supervised here."""
        await self.verify()
        crashes_in_a_row = 0
        try:
            while not stop.is_set():
                if not await self._stand_by(stop):
                    break
                try:
                    await self._hold(stop)
                    crashes_in_a_row = 0
                except LockLost as exc:
                    logger.error("Feed of %s stands down: %s", self.account, exc)
                    self.health.set(STANDBY, f"stood down: {exc}")
                except Exception as exc:
                    crashes_in_a_row += 1
                    self.counters.crashes += 1
                    # At least crash_pause: a failure that repeats must not spin, and the
                    # error stays on the status page long enough to be seen.
                    delay = max(
                        self.settings.crash_pause, self.connection.backoff(crashes_in_a_row)
                    )
                    logger.error(
                        "Feed of %s failed (%s: %s); restarting it in %.1fs",
                        self.account,
                        type(exc).__name__,
                        exc,
                        delay,
                        exc_info=exc,
                    )
                    self.health.set(
                        ERROR,
                        f"the feed worker failed ({type(exc).__name__}: {exc}) and restarts "
                        "by itself; if this repeats, send the runfeed log to the developers",
                    )
                    self.health.retry_at = time.time() + delay
                    await self.write_status()
                    if await wait(stop, delay):
                        break
        finally:
            self.health.set(STOPPED)
            await self.tokens.close_adapter()
            await self.write_status()

    async def _stand_by(self, stop: asyncio.Event) -> bool:
        """Wait until this worker holds the account's lock (True) or ``stop`` is set (False)."""
        said = False
        while not stop.is_set():
            try:
                if await self.lock.acquire():
                    self._store_recovered()
                    self.health.set(PREPARING, "")
                    return True
                left = await self.redis.pttl(self.lock.key)
                delay = min(self.settings.lock_poll, max(0.05, left / 1000))
                if self.health.state != STANDBY or not said:
                    logger.info("Feed of %s is held by another worker: standing by", self.account)
                    said = True
                self.health.set(STANDBY)
            except RedisError as exc:
                self.store_trouble.failed("Taking the feed lock of", exc)
                self.health.set(STORE_UNAVAILABLE, f"Redis does not answer ({exc}): waiting for it")
                delay = self.settings.lock_poll
            if await wait(stop, delay):
                return False
        return False

    async def _hold(self, stop: asyncio.Event) -> None:
        """Feed while holding the lock. Returns when ``stop`` is set; raises LockLost, or the
        first unexpected exception of a task (the others are cancelled first)."""
        try:
            await self.prepare()
            async with asyncio.TaskGroup() as group:
                for name, work, forever in (
                    ("lock keeper", self._keep_lock(stop), True),
                    ("status reporter", self._report(stop), True),
                    ("flusher", self._flusher(stop), True),
                    ("history writer", self.history.run(stop), True),
                    ("account watcher", self.tokens.watch(stop), True),
                    ("REST prime", self.prime(stop), False),
                    (
                        "feed connection",
                        self.connection.run(stop, self.index_refs, self.leg_refs),
                        True,
                    ),
                ):
                    group.create_task(guarded(name, work, stop, forever=forever))
        except BaseExceptionGroup as group:
            raise primary(group) from None
        finally:
            await self._shutdown()

    async def _keep_lock(self, stop: asyncio.Event) -> None:
        """Renew the lock every ``status_interval``; LockLost once it is gone or cannot be
        renewed before this worker's deadline (it must stop writing by then)."""
        lock = self.lock
        while running(stop):
            left = lock.seconds_left()
            if left <= 0:
                raise LockLost(f"the feed lock of {self.account} could not be renewed in time")
            try:
                async with asyncio.timeout(left):
                    renewed = await lock.renew()
            except (RedisError, TimeoutError) as exc:
                if not lock.held():
                    raise LockLost(
                        f"Redis did not answer before the feed lock of {self.account} could "
                        f"expire ({type(exc).__name__}: {exc})"
                    ) from exc
                self.store_trouble.failed("Renewing the feed lock of", exc)
            else:
                if not renewed:
                    raise LockLost(f"another worker holds the feed lock of {self.account}")
            if lock.take_key_lost():  # Redis restarted empty: our snapshots are gone too
                self._republish_all()
            await wait(stop, min(self.settings.status_interval, max(0.01, lock.seconds_left())))

    async def _report(self, stop: asyncio.Event) -> None:
        while running(stop):
            await self.write_status()
            await self.apply_rest_chains()
            await wait(stop, self.settings.status_interval)

    async def _flusher(self, stop: asyncio.Event) -> None:
        while running(stop):
            await asyncio.sleep(self.settings.flush_interval)
            await self.flush()
            if time.monotonic() - self.publisher.last_persist >= self.settings.persist_interval:
                await self._persist_logged()

    async def _persist_logged(self) -> None:
        try:
            await self.persist()
        except DatabaseError as exc:
            self.counters.store_errors += 1
            logger.error("Saving the snapshots of %s to the database failed: %s", self.account, exc)

    async def _shutdown(self) -> None:
        """Leave the holding: unsubscribe and close the socket, flush and persist what the
        book holds (only while the lock is ours), release the lock. Never raises Redis or
        database errors (they are logged): the way out must not hide why we left."""
        self.health.set(STOPPING)
        session, self.connection.session = self.connection.session, None
        if session is not None:
            await session.unsubscribe_and_close(self.index_refs, self.leg_refs)
        if self.book is not None and await self._still_ours():
            try:
                await self.flush()
            except (RedisError, LockLost) as exc:
                logger.error("Final flush of %s skipped: %s", self.account, exc)
            await self._persist_logged()
        try:
            await self.lock.release()
        except RedisError as exc:
            logger.warning(
                "Releasing the feed lock of %s failed (%s): it expires", self.account, exc
            )

    async def _still_ours(self) -> bool:
        """Renew the lock once more for the way out (the keeper stopped with ``stop``); True
        when it is still this worker's."""
        if not self.lock.held():
            return False
        try:
            return await self.lock.renew()
        except RedisError as exc:
            logger.error("Renewing the feed lock of %s to leave failed: %s", self.account, exc)
            return False

    # --- after Redis trouble -------------------------------------------------------------------

    def _store_recovered(self) -> None:
        if self.store_trouble.recovered():
            self._republish_all()

    def _republish_all(self) -> None:
        """Make the next flush write every chain's snapshot again: a restarted Redis lost them,
        and a quiet chain would otherwise have none until its next tick."""
        for chain in self.book.chains.values() if self.book else ():
            chain.header_dirty = True
