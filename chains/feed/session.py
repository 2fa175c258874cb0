"""One connection of a broker feed: open it, subscribe, receive until it ends.

Knows nothing of books or Redis: every frame goes to the ``handle`` callback. Liveness is any
frame or pong: no traffic for ``liveness_timeout`` raises ``Stale`` (the caller reconnects);
no frame for ``quiet_after`` marks the feed ``quiet`` (connected, a closed or silent market).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI

from brokers.adapters import FeedAdapter, InstrumentRef
from brokers.exceptions import BrokerError

from .settings import FeedSettings
from .status import CONNECTING, LIVE, QUIET, Counters, Health

logger = logging.getLogger(__name__)

FrameHandler = Callable[[bytes | str, float], None]


class Stale(Exception):
    """No frame and no pong for the liveness timeout: the connection is rebuilt."""


class FeedSession:
    """``run()`` holds one connection; ``close()`` ends it early (a token swap)."""

    def __init__(
        self,
        *,
        account: str,
        adapter: FeedAdapter,
        settings: FeedSettings,
        counters: Counters,
        health: Health,
        handle: FrameHandler,
    ) -> None:
        self.account = account
        self.adapter = adapter
        self.settings = settings
        self.counters = counters
        self.health = health
        self.handle = handle
        self.ws: ClientConnection | None = None
        self.frames_at_open: int | None = None

    @property
    def delivered(self) -> bool:
        """True once this session's socket has delivered a frame."""
        return self.frames_at_open is not None and self.counters.frames > self.frames_at_open

    async def run(
        self, stop: asyncio.Event, index: list[InstrumentRef], legs: list[InstrumentRef]
    ) -> None:
        """Connect, subscribe ``index`` and ``legs``, receive until the socket closes (raises
        ConnectionClosed), goes silent (Stale) or ``stop`` is set (returns). Raises OSError,
        InvalidHandshake, TimeoutError and BrokerError from the connection attempt."""
        self.health.set(CONNECTING)
        url, safe_url = await self.adapter.feed_url()
        logger.info("Connecting %s to %s", self.account, safe_url)
        try:
            ws = await connect(
                url,
                open_timeout=self.settings.open_timeout,
                ping_interval=None,
                max_size=2**23,
                close_timeout=2,
            )
        except InvalidURI as exc:
            raise BrokerError(
                f"Bad feed URL for {self.account}: fix the feed base URL in admin",
                broker=self.adapter.kind,
                permanent=True,
                code="bad-url",
            ) from exc
        self.ws = ws
        counters = self.counters
        counters.connected_since = counters.last_traffic_at = time.time()
        self.frames_at_open = counters.frames
        self.health.set(LIVE, "")
        pinger = asyncio.create_task(self._pinger(ws))
        try:
            for message in self.adapter.subscribe(index, legs):
                await ws.send(message)
            await self.receive(ws, stop)
        finally:
            pinger.cancel()
            self.ws = None
            counters.connected_since = None
            if not stop.is_set():
                await ws.close()

    async def close(self, code: int, reason: str) -> None:
        """Close the socket (``run`` then raises ConnectionClosed)."""
        if self.ws is not None:
            await self.ws.close(code, reason)

    async def unsubscribe_and_close(
        self, index: list[InstrumentRef], legs: list[InstrumentRef]
    ) -> None:
        """Say goodbye to the broker (shutdown): unsubscribe everything, close."""
        ws = self.ws
        if ws is None:
            return
        # A socket that is already gone has nothing left to unsubscribe.
        with contextlib.suppress(ConnectionClosed, OSError):
            for message in self.adapter.unsubscribe(index, legs):
                await ws.send(message)
            await ws.close()

    async def receive(self, ws: Any, stop: asyncio.Event) -> None:
        """Receive until the socket closes, ``stop`` is set or the feed goes stale.

        One plain ``recv()`` per frame: a frame already buffered is handed over without an
        event-loop round trip (a Task and an ``asyncio.wait`` per frame cost more than
        decoding and applying a Dhan frame). That also means a backlog would never let the
        loop run anything else (flushes, status, the lock's renewal), so the loop is yielded
        to at least every ``yield_every`` seconds. A watchdog, one task per session, marks the
        feed quiet, detects staleness and ends this loop on ``stop`` by cancelling it.
        """
        receiver = asyncio.current_task()
        assert receiver is not None
        verdict: list[Stale] = []
        watchdog = asyncio.create_task(self._watchdog(receiver, stop, verdict))
        handle, health = self.handle, self.health
        every = self.settings.yield_every
        next_yield = time.time() + every
        try:
            while True:
                frame = await ws.recv()
                received = time.time()
                handle(frame, received)
                health.state = LIVE
                if received >= next_yield:
                    await asyncio.sleep(0)
                    next_yield = received + every
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
                    self.health.state = QUIET  # connected, pongs arrive, no frames
        finally:
            stopping.cancel()

    async def _pinger(self, ws: ClientConnection) -> None:
        # Ends quietly when the socket closes or the session ends (it is cancelled).
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.settings.ping_interval)
                waiter = await ws.ping()
                # A late pong is not an error by itself: the liveness timeout in receive()
                # decides when silence means a dead socket.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, self.settings.ping_interval)
                    self.counters.last_traffic_at = time.time()
