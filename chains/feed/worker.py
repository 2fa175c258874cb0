"""The feed worker of one broker account: broker WebSocket → chain book → Channels + Redis.

Made of single-step methods a test can call one at a time (``prepare``, ``handle_frame``,
``flush``, ``persist``, ``write_status``) and ``run``, which strings them together:

    verify configuration (FeedConfigError: exit non-zero) → wait for the account's lock
    (standby) → resolve chains, centre strike windows, build the chain books → loop:
    re-read the account, open the feed (Upstox: authorize again), subscribe, receive until
    the socket closes or goes silent → back off (capped, jittered) → again.

A permanent broker error (expired/invalid token, no data plan) marks the account and waits
for a new token instead of hammering the broker. SIGTERM (``stop`` set): unsubscribe, flush,
persist snapshots, release the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from asgiref.sync import sync_to_async
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from brokers.accounts import account_config, mark_account
from brokers.adapters import (
    AccountConfig,
    DhanAdapter,
    FeedAdapter,
    InstrumentRef,
    account_status_for,
    adapter_for,
)
from brokers.exceptions import BrokerError, CodecError, FeedConfigError
from brokers.signals import ACCOUNT_SAVED
from brokers.ticks import Disconnect, MarketStatus, Tick

from .. import store
from ..book import ChainBook, FeedBook, stored_snapshot
from ..ownership import FeedLock, take_rest_chains
from ..persisted import save_snapshots
from ..plan import ChainPlan, chain_plans

logger = logging.getLogger(__name__)

# While frames arrive faster than they are handled, the receive loop still lets the flusher and
# the housekeeping (status, lock renewal) run at least this often (seconds).
YIELD_EVERY = 0.05


@dataclass
class FeedSettings:
    """Timings of the worker (settings FEED_* override them)."""

    flush_interval: float = 0.25
    status_interval: float = 1.0
    persist_interval: float = 300.0
    liveness_timeout: float = 60.0
    ping_interval: float = 10.0
    quiet_after: float = 5.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    token_poll_interval: float = 2.0
    lock_ttl: float = 10.0
    lock_poll: float = 2.0
    open_timeout: float = 10.0


@dataclass
class Counters:
    frames: int = 0
    ticks: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    publish_errors: int = 0
    deltas: int = 0
    rest_legs: int = 0  # legs changed by REST chains the repopulate task handed over
    last_frame_at: float | None = None
    last_traffic_at: float | None = None
    connected_since: float | None = None
    rate_ticks: int = 0
    rate_at: float = field(default_factory=time.monotonic)
    ticks_per_second: float = 0.0


class Stale(Exception):
    """No frame and no pong for the liveness timeout: the connection is rebuilt."""


class PermanentFeedError(Exception):
    """The broker refuses this account until a person acts (carries the account status)."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


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
        self.settings = settings or FeedSettings()
        self.layer = channel_layer
        self.redis = redis
        self.counters = Counters()
        self.state = "starting"
        self.error = ""
        self.config: AccountConfig | None = None
        self.adapter: FeedAdapter | None = None
        self.book: FeedBook | None = None
        self.plans: list[ChainPlan] = []
        self.index_refs: list[InstrumentRef] = []
        self.leg_refs: list[InstrumentRef] = []
        self.market: dict[str, str] = {}
        self.lock = FeedLock(redis, account, ttl=self.settings.lock_ttl)
        self._ws: ClientConnection | None = None
        self._swap_requested = False  # the socket is being closed to use a new token
        self._account_changed = asyncio.Event()
        self._last_persist = time.monotonic()

    # --- steps -----------------------------------------------------------------------------

    async def verify(self) -> None:
        """Read and check the account and its chains; FeedConfigError when a person must act."""
        self.config = await sync_to_async(account_config)(self.account)
        self.plans = await sync_to_async(chain_plans)(self.account)

    async def prepare(self) -> None:
        """Centre strike windows on the spot (REST), build the books, prime from REST."""
        assert self.config is not None
        self.adapter = adapter_for(self.config)
        spots = await self._spots()
        books = []
        for plan in self.plans:
            narrowed = plan.narrowed(spots.get(plan.index.broker_id))
            books.append(narrowed.new_book())
            self.leg_refs.extend(leg.ref for leg in narrowed.legs)
            if narrowed.index not in self.index_refs:
                self.index_refs.append(narrowed.index)
            logger.info(
                "Chain %s %s on %s: %d strikes, %d instruments (window %s)",
                narrowed.underlying,
                narrowed.expiry,
                self.account,
                len(narrowed.strikes()),
                len(narrowed.legs),
                f"±{plan.window}" if plan.window is not None and narrowed is not plan else "all",
            )
        self.book = FeedBook(books)

    async def _spots(self) -> dict[str, float]:
        assert self.adapter is not None
        wanted = {}
        for plan in self.plans:
            if plan.window is not None:
                wanted.setdefault(plan.index, plan.expiry)  # plans are nearest expiry first
        if not wanted:
            return {}
        try:
            return await self.adapter.spots(list(wanted.items()))
        except BrokerError as exc:
            logger.warning(
                "Could not fetch spot prices for %s (%s): following every strike until the "
                "next restart centres the strike windows",
                self.account,
                exc,
            )
            return {}

    async def prime(self) -> None:
        """Populate every chain from the broker's REST option chain (within its rate limit)."""
        assert self.adapter is not None and self.book is not None
        for chain in self.book.chains.values():
            index = next(r for r in self.index_refs if r.broker_id == chain.index_instrument)
            started = time.time()
            try:
                rest = await self.adapter.option_chain(index, chain.expiry)
            except BrokerError as exc:
                logger.warning(
                    "REST prime of %s %s failed: %s", chain.underlying, chain.expiry, exc
                )
                continue
            applied = chain.apply_rest(rest.spot, rest.rows, started)
            stats = chain.stats()
            logger.info(
                "Primed %s %s from REST: %d legs updated, %s of %s legs priced, spot %s",
                chain.underlying,
                chain.expiry,
                applied,
                stats["legs_priced"],
                stats["legs"],
                stats["spot"],
            )

    def handle_frame(self, frame: bytes | str, received_at: float) -> None:
        """Decode one frame and apply every event; malformed frames are counted and skipped."""
        assert self.adapter is not None and self.book is not None
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
            events = self.adapter.decode(frame)
        except CodecError as exc:
            counters.decode_errors += 1
            logger.warning("Malformed frame from %s skipped: %s", self.account, exc)
            events = exc.events  # what decoded before the bad packet is not lost
        apply = self.book.apply
        for event in events:
            if type(event) is Tick:
                counters.ticks += 1
                apply(event, received_at)
            elif isinstance(event, MarketStatus):
                self.market[event.segment] = event.status
            elif isinstance(event, Disconnect):
                self._on_disconnect(event)

    def _on_disconnect(self, event: Disconnect) -> None:
        status = DhanAdapter.disconnect_status(event.reason_code)
        text = f"DhanHQ closed the feed: {event.reason} (code {event.reason_code})"
        if status is not None:
            raise PermanentFeedError(text + _what_to_do(status), status=status)
        logger.warning("%s; reconnecting", text)

    async def flush(self, now: datetime | None = None) -> int:
        """Flush the book: write snapshots, publish deltas. Returns the number of deltas."""
        assert self.book is not None
        now = now or datetime.now(UTC)
        sent = 0
        for chain, delta in self.book.flush(now):
            try:
                # Snapshot first: a consumer resyncing after a gap never gets an older seq.
                await store.write_snapshot(self.redis, self._snapshot(chain))
                await self.layer.group_send(
                    store.group_name(chain.underlying, chain.expiry),
                    {"type": "chain.delta", "underlying": chain.underlying,
                     "expiry": chain.expiry.isoformat(), **delta},
                )  # fmt: skip
            except RedisError as exc:
                self.counters.publish_errors += 1
                logger.error("Publishing %s %s failed: %s", chain.underlying, chain.expiry, exc)
                continue
            sent += 1
        self.counters.deltas += sent
        return sent

    def _snapshot(self, chain: ChainBook) -> dict[str, Any]:
        assert self.config is not None
        return stored_snapshot(chain, account=self.account, broker=self.config.kind)

    async def persist(self) -> None:
        """Save every chain's snapshot to the database (the last-known fallback)."""
        assert self.book is not None
        snapshots = [self._snapshot(c) for c in self.book.chains.values() if c.seq > 0]
        if snapshots:
            await sync_to_async(save_snapshots)(self.account, snapshots)
        self._last_persist = time.monotonic()

    async def apply_rest_chains(self) -> int:
        """Merge the REST chains the repopulate task handed over (this worker is the one writer
        of its chains); newer wins per leg, so an older REST row never replaces a tick. The
        next flush publishes what changed. Returns the number of legs changed."""
        if self.book is None:
            return 0  # not prepared yet: leave the queue for after prepare()
        try:
            handed = await take_rest_chains(self.redis, self.account)
        except RedisError as exc:
            logger.error("Reading REST chains handed to %s failed: %s", self.account, exc)
            return 0
        changed = 0
        for item in handed:
            chain = self.book.chains.get((item["underlying"], date.fromisoformat(item["expiry"])))
            if chain is None:
                logger.info(
                    "REST chain %s %s is not followed by %s: skipped",
                    item["underlying"], item["expiry"], self.account,
                )  # fmt: skip
                continue
            changed += chain.apply_rest(item["spot"], item["rows"], item["observed_at"])
        self.counters.rest_legs += changed
        return changed

    def status(self) -> dict[str, Any]:
        c = self.counters
        now_mono, now = time.monotonic(), time.time()
        elapsed = now_mono - c.rate_at
        if elapsed >= 0.5:
            c.ticks_per_second = (c.ticks - c.rate_ticks) / elapsed
            c.rate_ticks, c.rate_at = c.ticks, now_mono
        chains = []
        for chain in self.book.chains.values() if self.book else []:
            ready, reason = chain.readiness()
            chains.append({**chain.stats(), "ready": ready, "reason": reason, "seq": chain.seq,
                           "as_of": chain.as_of.isoformat() if chain.as_of else None})  # fmt: skip
        return {
            "account": self.account,
            "broker": self.config.kind if self.config else None,
            "state": self.state,
            "error": self.error,
            "pid": os.getpid(),
            "connected_since": _iso(c.connected_since),
            "last_frame_at": _iso(c.last_frame_at),
            "last_frame_age": round(now - c.last_frame_at, 1) if c.last_frame_at else None,
            "ticks_per_second": round(c.ticks_per_second, 1),
            "frames": c.frames,
            "ticks": c.ticks,
            "unrouted": self.book.ticks_unrouted if self.book else 0,
            "reconnects": c.reconnects,
            "decode_errors": c.decode_errors,
            "publish_errors": c.publish_errors,
            "deltas": c.deltas,
            "rest_legs": c.rest_legs,
            "market": self.market,
            "chains": chains,
            "updated_at": _iso(now),
        }

    async def write_status(self) -> None:
        try:
            await store.write_feed_status(self.redis, self.account, self.status())
        except RedisError as exc:
            logger.error("Writing the feed status of %s failed: %s", self.account, exc)

    # --- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. FeedConfigError propagates (the command exits non-zero)."""
        await self.verify()
        self.state = "standby"
        await self.write_status()
        while not await self.lock.acquire():
            logger.info("Feed of %s is held by another worker: standing by", self.account)
            if await _wait(stop, self.settings.lock_poll):
                return
        background = [
            asyncio.create_task(self._housekeeping(stop)),
            asyncio.create_task(self._watch_account(stop)),
        ]
        try:
            await self.prepare()
            background.append(asyncio.create_task(self._flusher(stop)))
            background.append(asyncio.create_task(self.prime()))
            await self._connect_loop(stop)
        finally:
            self.state = "stopping"
            await self._shutdown()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.lock.release()
            if self.adapter is not None:
                await self.adapter.aclose()
            self.state = "stopped"
            await self.write_status()

    async def _connect_loop(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                if attempt or self._swap_requested:
                    await self._refresh_account()  # tokens roll over daily
                    if attempt >= 2 and not self._swap_requested:
                        await self._check_token()  # a bad token often shows only as drops
                self._swap_requested = False
                await self._session(stop)
                attempt = 0
                continue
            except PermanentFeedError as exc:
                await self._mark_account(exc.status, str(exc))
                await self._wait_for_new_token(stop)
                attempt = 0
                continue
            except FeedConfigError as exc:  # e.g. the token was removed in admin meanwhile
                self.state, self.error = "token_wait", str(exc)
                logger.error("Feed of %s paused: %s", self.account, exc)
                await self._wait_for_new_token(stop)
                attempt = 0
                continue
            except (OSError, ConnectionClosed, InvalidHandshake, Stale, TimeoutError) as exc:
                if self._swap_requested:
                    self.counters.reconnects += 1
                    logger.info("Reconnecting %s with its new token", self.account)
                    continue
                self.error = f"{type(exc).__name__}: {exc}"
                logger.warning("Feed of %s lost: %s", self.account, self.error)
            except BrokerError as exc:
                if exc.permanent:
                    await self._mark_account(_status_for(exc), str(exc))
                    await self._wait_for_new_token(stop)
                    attempt = 0
                    continue
                self.error = str(exc)
                logger.warning("Feed of %s: %s", self.account, exc)
            if stop.is_set():
                break
            attempt += 1
            self.counters.reconnects += 1
            cap = min(self.settings.backoff_cap, self.settings.backoff_base * 2**attempt)
            delay = random.uniform(0, cap)  # full jitter
            self.state = "backoff"
            logger.info("Reconnecting %s in %.1fs (attempt %d)", self.account, delay, attempt)
            if await _wait(stop, delay):
                break

    async def _session(self, stop: asyncio.Event) -> None:
        assert self.adapter is not None
        self.state = "connecting"
        url, safe_url = await self.adapter.feed_url()
        logger.info("Connecting %s to %s", self.account, safe_url)
        try:
            ws = await connect(url, open_timeout=self.settings.open_timeout, ping_interval=None,
                               max_size=2**23, close_timeout=2)  # fmt: skip
        except InvalidURI as exc:
            raise BrokerError(
                f"Bad feed URL for {self.account}: fix the feed base URL in admin",
                broker=self.adapter.kind,
                permanent=True,
                code="bad-url",
            ) from exc
        self._ws = ws
        counters = self.counters
        counters.connected_since = counters.last_traffic_at = time.time()
        self.state, self.error = "live", ""
        pinger = asyncio.create_task(self._pinger(ws))
        try:
            for message in self.adapter.subscribe(self.index_refs, self.leg_refs):
                await ws.send(message)
            await self._receive(ws, stop)
        finally:
            pinger.cancel()
            self._ws = None
            counters.connected_since = None
            if not stop.is_set():
                await ws.close()

    async def _receive(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        """Receive until the socket closes, ``stop`` is set or the feed goes stale.

        One plain ``recv()`` per frame: a frame already buffered is handed over without an
        event-loop round trip (a Task and an ``asyncio.wait`` per frame cost more than
        decoding and applying a Dhan frame). That also means a backlog would never let the
        loop run anything else (flushes, status, the lock's renewal), so the loop is yielded
        to at least every ``YIELD_EVERY`` seconds. A watchdog, one task per session, marks the
        feed quiet, detects staleness and ends this loop on ``stop`` by cancelling it.
        """
        receiver = asyncio.current_task()
        assert receiver is not None
        verdict: list[Stale] = []
        watchdog = asyncio.create_task(self._watchdog(receiver, stop, verdict))
        handle = self.handle_frame
        next_yield = time.time() + YIELD_EVERY
        try:
            while True:
                frame = await ws.recv()
                received = time.time()
                handle(frame, received)
                self.state = "live"
                if received >= next_yield:
                    await asyncio.sleep(0)
                    next_yield = received + YIELD_EVERY
        except asyncio.CancelledError:
            if not verdict and not stop.is_set():
                raise  # cancelled by someone else: not ours to swallow
            receiver.uncancel()
            if verdict:
                raise verdict[0] from None
        finally:
            watchdog.cancel()

    async def _watchdog(
        self, receiver: asyncio.Task[Any], stop: asyncio.Event, verdict: list[Stale]
    ) -> None:
        settings, counters = self.settings, self.counters
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait({stopping}, timeout=min(1.0, settings.quiet_after))
                if stopping in done:
                    receiver.cancel()
                    return
                now = time.time()
                silent = now - (counters.last_traffic_at or 0)
                if silent >= settings.liveness_timeout:
                    verdict.append(Stale(f"no frame or pong for {silent:.0f}s"))
                    receiver.cancel()
                    return
                if now - (counters.last_frame_at or 0) >= settings.quiet_after:
                    self.state = "quiet"  # connected, pongs arrive, no ticks: market closed?
        finally:
            stopping.cancel()

    async def _pinger(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.settings.ping_interval)
                waiter = await ws.ping()
                # A late pong is not an error by itself: the liveness timeout in _receive
                # decides when silence means a dead socket.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, self.settings.ping_interval)
                    self.counters.last_traffic_at = time.time()

    async def _flusher(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.flush_interval)
            await self.flush()
            if time.monotonic() - self._last_persist >= self.settings.persist_interval:
                await self.persist()

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.write_status()
            await self.apply_rest_chains()
            if not await self.lock.renew():
                logger.error("Lost the feed lock of %s: stopping this worker", self.account)
                stop.set()
                return
            await _wait(stop, self.settings.status_interval)

    async def _shutdown(self) -> None:
        ws = self._ws
        if ws is not None and self.adapter is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                for message in self.adapter.unsubscribe(self.index_refs, self.leg_refs):
                    await ws.send(message)
                await ws.close()
        if self.book is not None:
            await self.flush()
            await self.persist()

    # --- tokens ----------------------------------------------------------------------------

    async def _mark_account(self, status: str, message: str) -> None:
        self.state, self.error = "token_wait", message
        logger.error("Feed of %s stopped: %s", self.account, message)
        await sync_to_async(mark_account)(self.account, status, message)

    async def _refresh_account(self) -> None:
        """Re-read the account (tokens roll over daily); rebuild the adapter when it changed."""
        config = await sync_to_async(account_config)(self.account)
        if config != self.config:
            if self.adapter is not None:
                await self.adapter.aclose()
            self.config, self.adapter = config, adapter_for(config)
            logger.info("Account %s changed: using its new settings", self.account)

    async def _check_token(self) -> None:
        assert self.adapter is not None
        try:
            await self.adapter.check_token()
        except BrokerError as exc:
            if exc.permanent:
                raise PermanentFeedError(str(exc), status=_status_for(exc)) from exc
            # Transient (network, 5xx, 429): the check says nothing about the token; the
            # reconnect goes ahead and its outcome is logged.
            logger.warning("Token check of %s inconclusive: %s", self.account, exc)

    async def _wait_for_new_token(self, stop: asyncio.Event) -> None:
        """Wait until the account has a different token: woken by the account-saved message
        (``_watch_account``), with a slow database re-read as the fallback."""
        old = self.config
        while not stop.is_set():
            self._account_changed.clear()
            if await _wait_any(stop, self._account_changed, self.settings.token_poll_interval):
                return
            try:
                config = await sync_to_async(account_config)(self.account)
            except FeedConfigError as exc:
                self.error = str(exc)
                continue
            if old is None or config.access_token != old.access_token:
                logger.info("Account %s has a new token: resuming the feed", self.account)
                await self._refresh_account()
                return

    async def _watch_account(self, stop: asyncio.Event) -> None:
        """Follow the account-saved messages (``brokers.signals``): a new token is used within
        a second — reconnecting only when the token really changed."""
        while not stop.is_set():
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(ACCOUNT_SAVED)
                while not stop.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["data"] == self.account.encode():
                        await self._on_account_saved()
            except RedisError as exc:
                logger.warning("Account messages for %s interrupted (%s): retrying", self.account,
                               exc)  # fmt: skip
                await _wait(stop, 2.0)
            finally:
                await pubsub.aclose()

    async def _on_account_saved(self) -> None:
        try:
            config = await sync_to_async(account_config)(self.account)
        except FeedConfigError:
            self._account_changed.set()  # the waiting loop re-reads and reports it
            return
        if self.config is not None and config.access_token == self.config.access_token:
            return  # saved without a new token: nothing to do
        logger.info("Account %s has a new token: switching the feed to it", self.account)
        self._account_changed.set()
        ws = self._ws
        if ws is not None:
            self._swap_requested = True
            await ws.close(1000, "switching to a new token")


def _status_for(exc: BrokerError) -> str:
    return account_status_for(exc) or "auth_failed"


def _what_to_do(status: str) -> str:
    if status == "token_expired":
        return ": enter a new access token in admin → Broker accounts"
    if status == "auth_failed":
        return ": check the client id and token in admin → Broker accounts"
    return ": check the account's data plan and tracked chains"


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


async def _wait_any(stop: asyncio.Event, event: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds`` or until ``event``; True when ``stop`` was set meanwhile."""
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(event.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
