"""WebSocket ``/ws/live-options/<UNDERLYING>?expiry=YYYY-MM-DD``: a chain, streamed.

The messages and their fields are ``chains.contracts``' ``SnapshotMessage``, ``DeltaMessage``,
``StatusMessage`` and ``ErrorMessage`` (README, "Wire schema"). On connect:
``{"type": "snapshot", "seq", "data"}`` (the API's data) and a ``status``; then
``{"type": "delta", "seq", ...}`` for every flush of the chain's group. The channel layer is
at-most-once and drops at capacity: when this consumer sees a gap in ``seq`` it counts it and
sends a fresh snapshot instead (the browser does the same check and can ask
``{"type": "resync"}``). ``{"type": "status", ...}`` (``ChainView.status_message()``, with the
chain's freshness) is sent when its ``status_key()`` changes. A frame that is not JSON text is
answered with ``{"type": "error", "code": "bad_request"}`` and the socket stays open.

Limits (``chains.socket_limits``, kept by ``chains.socket_guard``): a client's resyncs are
answered by at most one snapshot a second (one asked sooner is answered when the second is
over, more are dropped); a user may hold ``WS_MAX_SOCKETS_PER_USER`` open sockets across
every web process (an address without a login ``WS_MAX_SOCKETS_PER_IP``), and one beyond is
closed ``CLOSE_TOO_MANY_SOCKETS`` (4429); the session is checked every
``WS_SESSION_CHECK_SECONDS`` and at every resync a client asks for, and a socket whose session
ended (logout, expiry, user deactivated or deleted, password changed) is closed
``CLOSE_UNAUTHENTICATED`` (4401). An ``error`` message naming the reason comes first; the
browser does not reconnect after either.

Closes: bad parameters 44xx with a code and reason (the browser does not retry those);
``CLOSE_STORE_UNAVAILABLE`` (4503) when Redis does not answer while the socket is being set up;
``CLOSE_SERVER_ERROR`` (4500) when this consumer fails in a way it cannot recover from (logged
with its traceback) — a ``chain.delta`` group message that lacks a key its type requires
(``contracts.parse_chain_delta``) is one. The browser reconnects after either, with backoff.
Every connect ends in a snapshot or one of these closes.

Redis outages, once a client has its snapshot: the socket stays open (rather than closing 4503
and making every browser reconnect at once). Waiting for a delta is not an error: the channel
layer's reads wait longer than its own blocking pop (``CHANNEL_LAYERS``). A Redis failure
anywhere — the channel layer's receive, a status poll, a snapshot read — sends
``{"type": "status", "code": "store_unavailable", ...}`` (stale, as of the last data the client
received) once and marks the consumer for a resync; the watcher task keeps polling, and the
first poll Redis answers re-joins the chain's group (a restarted Redis has lost it) and sends
a fresh snapshot and status. Channels' dispatch loop would end the consumer when the layer's
receive raises (a 1011 close): ``channel_receive`` hands that loop a receive that retries with
backoff instead. The membership is also re-added every ``GROUP_REFRESH_SECONDS``, so a lost
group this consumer never noticed costs at most that long (the next delta's ``seq`` gap then
resyncs the client), and the layer's ``group_expiry`` drops the channels of crashed processes
within minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from . import freshness, selectors, store
from .access import may_view_chains
from .api import parse_expiry, view_data
from .contracts import ChainDeltaEvent, Delta, StatusMessage, delta_message, parse_chain_delta
from .exceptions import ContractError
from .metrics import CHANNEL_GAPS, RESYNCS
from .socket_guard import (
    CLOSE_SERVER_ERROR,
    CLOSE_UNAUTHENTICATED,
    SERVER_FAILED,
    GuardedSocket,
)

logger = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_TRACKED = 4404
CLOSE_STORE_UNAVAILABLE = 4503
STATUS_POLL_SECONDS = 2.0
GROUP_REFRESH_SECONDS = 10.0
RECEIVE_RETRY_SECONDS = (0.25, 2.0)  # first and longest pause between failed layer receives

STORE_UNAVAILABLE = "store_unavailable"
STORE_DOWN = (
    "The chain store (Redis) does not answer: the prices shown are the last received and "
    "update again by themselves when it is back; an admin must check that Redis runs at "
    "REDIS_URL."
)
STORE_DOWN_ON_CONNECT = "The chain store (Redis) does not answer: reconnect in a few seconds."
RESYNC_ONLY = 'Only {"type": "resync"} is understood.'

Receive = Callable[[], Awaitable[dict[str, Any]]]


@database_sync_to_async
def _resolve(underlying: str, expiry: date | None) -> tuple[Any, date]:
    return selectors.resolve(underlying, expiry)


@database_sync_to_async
def _view(chain: Any, expiry: date, *, with_data: bool = True) -> selectors.ChainView:
    if not with_data:
        chain.account.refresh_from_db()  # the token or status may have changed meanwhile
    return selectors.chain_view(chain, expiry, with_data=with_data)


# (group, run, seq) → the delta's JSON text. Every consumer of a chain in this process receives
# the same group message: encoding it once instead of once per client is what lets one process
# serve hundreds of clients (a 160-leg delta is ~45 KB of JSON). A restarted feed worker counts
# seq from 1 again under a new run: the run keeps its deltas apart from the old ones (the chain
# version, ``contracts.version``, as the API's answer cache keys on it too).
_DELTA_TEXT: dict[tuple[str, str, int], str] = {}
_DELTA_TEXT_LIMIT = 512


def delta_text(group: str | None, delta: Delta) -> str:
    """The ``delta`` message of a delta as JSON, encoded once per process."""
    key = (group or "", delta["run"], delta["seq"])
    text = _DELTA_TEXT.get(key)
    if text is None:
        if len(_DELTA_TEXT) >= _DELTA_TEXT_LIMIT:
            _DELTA_TEXT.clear()
        text = _DELTA_TEXT[key] = json.dumps(delta_message(delta))
    return text


class LiveOptionsConsumer(GuardedSocket):
    run: str | None = None
    seq: int | None = None
    as_of: str | None = None  # of the data the client has (a stale status names it)
    status_key: tuple[Any, ...] | None = None
    watcher: asyncio.Task[None] | None = None
    # Redis failed since the last snapshot: the group may be lost and deltas were missed.
    resync_needed: bool = False
    joined_at: float = 0.0  # loop time of the last group_add

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One snapshot read-and-send at a time: an older read never lands after a newer one.
        self._snapshot_lock = asyncio.Lock()

    # --- the channel layer's receive -----------------------------------------------------

    @property
    def channel_receive(self) -> Receive:
        """What channels' dispatch loop awaits for channel-layer messages: the layer's receive
        (set by ``AsyncConsumer.__call__`` through the setter), wrapped so a Redis failure
        does not end the consumer."""
        return self._receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive: Receive) -> None:
        self._layer_receive = receive

    async def _receive_from_layer(self) -> dict[str, Any]:
        """The next channel-layer message. While Redis does not answer, marks the consumer for a
        resync (messages may be lost, the group may be gone) and retries with capped backoff;
        the watcher tells the client and resyncs it. Never raises RedisError."""
        pause, longest = RECEIVE_RETRY_SECONDS
        while True:
            try:
                return await self._layer_receive()
            except RedisError as exc:
                if not self.resync_needed:
                    logger.warning(
                        "%s: the channel layer's receive failed: %s", self.channel_name, exc
                    )
                self.resync_needed = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)

    # --- connect and disconnect ----------------------------------------------------------

    async def connect(self) -> None:
        """Accept, then either send the snapshot and a status and start the watcher, or close
        with a named code: 44xx bad request, 4429 too many sockets, 4503 Redis down, 4500
        anything else (logged)."""
        await self.accept()
        if not may_view_chains(self.scope.get("user")):
            await self._refuse(CLOSE_UNAUTHENTICATED, "unauthenticated", "Log in first.")
            return
        underlying = str(self.scope["url_route"]["kwargs"]["underlying"]).upper()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            expiry = parse_expiry((query.get("expiry") or [""])[0])
            self.chain, self.expiry = await _resolve(underlying, expiry)
        except ValueError as exc:
            await self._refuse(CLOSE_BAD_REQUEST, "bad_request", str(exc))
            return
        except selectors.NotTracked as exc:
            await self._refuse(CLOSE_NOT_TRACKED, "not_tracked", str(exc), valid=exc.valid)
            return
        group = store.group_name(self.chain.underlying, self.expiry)
        try:
            if not await self._admit(store.async_client()):
                return  # beyond the cap: closed 4429
            await self._join(group)
            await self.send_snapshot()
        except RedisError as exc:
            logger.warning("%s: a client was not set up, Redis does not answer: %s", group, exc)
            await self._refuse(CLOSE_STORE_UNAVAILABLE, STORE_UNAVAILABLE, STORE_DOWN_ON_CONNECT)
            return
        except Exception:  # an I/O boundary: log it and close with a name, never half-alive
            logger.exception("%s: a client could not be set up", group)
            await self._refuse(CLOSE_SERVER_ERROR, "server_error", SERVER_FAILED)
            return
        self.watcher = asyncio.create_task(self._watch(), name=f"watch {group}")

    async def _join(self, group: str) -> None:
        """Join (or re-join) the chain's group; ``self.group`` is set once joined. A re-join
        also says again that this socket is open (``socket_limits.refresh``)."""
        await self.channel_layer.group_add(group, self.channel_name)
        if self.group is not None:
            await self._refresh_place()
        self.group = group
        self.joined_at = asyncio.get_running_loop().time()

    async def disconnect(self, code: int) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        if self.group is not None:
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except RedisError as exc:  # the layer's group_expiry drops the channel soon
                logger.warning("%s: leaving the group failed, it expires: %s", self.group, exc)
        await self._leave()
        if self.redis is not None:
            await self.redis.aclose()

    # --- client frames -------------------------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """A client frame: JSON text goes to ``receive_json``; anything else is answered with a
        ``bad_request`` error and the socket stays open."""
        if text_data is None:
            await self._bad_request(f"Binary frames are not understood: send JSON. {RESYNC_ONLY}")
            return
        try:
            content = await self.decode_json(text_data)
        except json.JSONDecodeError as exc:
            await self._bad_request(f"The message is not JSON ({exc.msg}). {RESYNC_ONLY}")
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync" and self.group:
            await self._client_resync()
        else:
            await self._bad_request(RESYNC_ONLY)

    async def _bad_request(self, message: str) -> None:
        await self.send_json({"type": "error", "code": "bad_request", "message": message})

    # --- snapshots and deltas ------------------------------------------------------------

    async def send_snapshot(self) -> None:
        """Read the chain and send it with its status; raises RedisError when Redis does not
        answer (nothing is sent then)."""
        async with self._snapshot_lock:
            self.throttle.sent(asyncio.get_running_loop().time())
            view = await _view(self.chain, self.expiry)
            data = view_data(view)
            self.run = view.data["run"] if view.data is not None else None
            self.seq = data["seq"] if data else None
            self.as_of = data["as_of"] if data else None
            await self.send_json({"type": "snapshot", "seq": self.seq, "data": data})
            await self._send_status(view)

    async def _resync(self) -> None:
        """Send a fresh snapshot (after a Redis failure, re-join the group first); when Redis
        does not answer, tell the client and leave the resync to the watcher."""
        RESYNCS.inc()
        try:
            if self.resync_needed:
                await self._recover()
            else:
                await self.send_snapshot()
        except RedisError as exc:
            await self._store_unavailable(exc)

    async def chain_delta(self, event: dict[str, Any]) -> None:
        """A flush of the chain (group message ``chain.delta``). One that lacks a key its type
        requires is logged with its traceback and closes the socket with 4500 (the writer and
        this process run different code: a client kept open would silently miss updates)."""
        try:
            delta: ChainDeltaEvent = parse_chain_delta(event)
        except ContractError:
            logger.exception("%s: a chain.delta message could not be read", self.group)
            await self.close(code=CLOSE_SERVER_ERROR, reason=SERVER_FAILED)
            return
        seq = delta["seq"]
        if self.seq is None or delta["run"] != self.run:
            # No base to apply a delta to, or a restarted feed worker (its seq says nothing of
            # ours): the snapshot, written before this delta, is the way back.
            await self._resync()
            return
        if seq <= self.seq:
            return  # already in the snapshot this client has
        if seq != self.seq + 1:
            CHANNEL_GAPS.inc()
            if self.redis is not None:  # None: a client refused before setup, being closed
                with contextlib.suppress(RedisError):  # the counter is diagnostics only
                    await store.count_channel_gap(self.redis)
            await self._resync()
            return
        self.seq, self.as_of = seq, delta["as_of"]
        await self.send(text_data=delta_text(self.group, delta))

    # --- status and recovery -------------------------------------------------------------

    async def _send_status(self, view: selectors.ChainView) -> None:
        await self._status(view.status_key(), view.status_message())

    async def _status(self, key: tuple[object, ...], message: StatusMessage) -> None:
        """Send ``message`` unless the last status sent had the same ``key``."""
        if key == self.status_key:
            return
        self.status_key = key
        await self.send_json(message)

    async def _store_unavailable(self, exc: RedisError) -> None:
        """Redis failed: tell the client once that what it shows is the last it received
        (stale, as of the last snapshot or delta), and have the watcher re-join the group and
        resync when Redis answers again."""
        if not self.resync_needed:
            logger.warning("%s: Redis does not answer: %s", self.group, exc)
        self.resync_needed = True
        stale = freshness.stale(
            freshness.parse_time(self.as_of), now=timezone.now(), reason=STORE_DOWN
        )
        await self._status(
            (STORE_UNAVAILABLE,),
            {
                "type": "status",
                "feed_state": "unknown",
                "source": "last_known" if self.seq is not None else None,
                "code": STORE_UNAVAILABLE,
                "message": STORE_DOWN,
                "freshness": stale.to_json(),
            },
        )

    async def _recover(self) -> None:
        """Re-join the group (a restarted Redis has lost it) and send a fresh snapshot; raises
        RedisError (and stays marked for a resync) while Redis does not answer."""
        assert self.group is not None
        await self._join(self.group)
        await self.send_snapshot()
        self.resync_needed = False
        logger.info("%s: Redis answers again: group re-joined, client resynced", self.group)

    async def _watch(self) -> None:
        """Every ``STATUS_POLL_SECONDS`` until cancelled: recover or poll the status; every
        ``WS_SESSION_CHECK_SECONDS``: check the session. Ends by cancellation or when the
        session ended (the socket is closed 4401 then); an unexpected error is logged and
        closes the socket with 4500."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + STATUS_POLL_SECONDS
        next_check = loop.time() + settings.WS_SESSION_CHECK_SECONDS
        try:
            while True:
                await asyncio.sleep(max(0.0, min(next_poll, next_check) - loop.time()))
                if loop.time() >= next_check:
                    next_check = loop.time() + settings.WS_SESSION_CHECK_SECONDS
                    if await self._session_ended():
                        return
                if loop.time() < next_poll:
                    continue
                next_poll = loop.time() + STATUS_POLL_SECONDS
                try:
                    await self._watch_step()
                except RedisError as exc:
                    await self._store_unavailable(exc)
        except Exception:  # the task's boundary: never die unseen, never leave the client hanging
            logger.exception("%s: the status watcher failed; closing the socket", self.group)
            await self.close(code=CLOSE_SERVER_ERROR, reason=SERVER_FAILED)

    async def _watch_step(self) -> None:
        """One watch: after a Redis failure, re-join the group and send a fresh snapshot;
        otherwise refresh the membership when due and send the status if it changed. Raises
        RedisError when Redis does not answer."""
        assert self.group is not None
        if self.resync_needed:
            await self._recover()
            return
        if asyncio.get_running_loop().time() - self.joined_at >= GROUP_REFRESH_SECONDS:
            await self._join(self.group)
        await self._send_status(await _view(self.chain, self.expiry, with_data=False))
