"""The limits a live chain socket lives by (``chains.socket_limits``), as a consumer base class:
its place among its holder's open sockets (close ``CLOSE_TOO_MANY_SOCKETS``, 4429, beyond the
cap), its resyncs (one snapshot a second at most) and the session it was opened with (close
``CLOSE_UNAUTHENTICATED``, 4401, once it ended). ``consumers.LiveOptionsConsumer`` builds on it:
it calls ``_admit`` while connecting, ``_refresh_place`` when it re-joins its group,
``_session_ended`` from its watcher, ``_client_resync`` for a client's ``resync`` and
``_leave`` when disconnecting, and provides ``_resync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from . import socket_limits
from .metrics import OPEN_SOCKETS

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_SERVER_ERROR = 4500
SERVER_FAILED = "The server failed: reconnect."
SESSION_ENDED = (
    "Your session has ended (logged out, expired, or your user was changed): log in again to "
    "see live prices."
)

_session_user_id = database_sync_to_async(socket_limits.session_user_id)


class GuardedSocket(AsyncJsonWebsocketConsumer):
    group: str | None = None  # the chain's group once joined (names the socket in logs)
    redis: aioredis.Redis | None = None
    holder: socket_limits.Holder | None = None  # set once counted among its holder's sockets
    user_id: Any = None  # the logged-in user the socket was opened by (None: no login)
    session_key: str | None = None
    deferred: asyncio.Task[None] | None = None  # a throttled resync, sent when due

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.throttle = socket_limits.ResyncThrottle()

    async def _resync(self) -> None:
        """Send a fresh snapshot (the subclass's)."""
        raise NotImplementedError

    async def _refuse(self, code: int, name: str, message: str, **extra: Any) -> None:
        """Tell the client why (an ``error`` message) and close with ``code``."""
        await self.send_json({"type": "error", "code": name, "message": message, **extra})
        await self.close(code=code, reason=message[:120])

    # --- the socket's place among its holder's ---------------------------------------------

    async def _admit(self, redis: aioredis.Redis) -> bool:
        """Remember who opened the socket and count it among its holder's open sockets in
        Redis. False: beyond the cap, and the socket is being closed 4429 with a message
        naming the setting. Raises RedisError when Redis does not answer."""
        self.redis = redis
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self.user_id = user.pk
            self.session_key = self.scope["session"].session_key
        holder = socket_limits.holder(self.scope)
        if not await socket_limits.register(redis, holder, self.channel_name, now=time.time()):
            logger.info("A live socket was refused, beyond its cap: %s", holder.key)
            await self._refuse(CLOSE_TOO_MANY_SOCKETS, "too_many_sockets", holder.refusal)
            return False
        self.holder = holder
        OPEN_SOCKETS.inc()  # until _leave
        return True

    async def _refresh_place(self) -> None:
        """Say again that this socket is open (re-added if Redis lost it); raises RedisError."""
        if self.holder is not None and self.redis is not None:
            await socket_limits.refresh(self.redis, self.holder, self.channel_name, now=time.time())

    async def _leave(self) -> None:
        """Cancel a scheduled resync and stop counting this socket (if Redis does not answer,
        its entry ages out within ``socket_limits.SOCKET_TTL_SECONDS``)."""
        if self.deferred is not None:
            self.deferred.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.deferred
        if self.holder is not None:
            OPEN_SOCKETS.dec()
        if self.holder is not None and self.redis is not None:
            try:
                await socket_limits.release(self.redis, self.holder, self.channel_name)
            except RedisError as exc:
                logger.warning("%s: uncounting the socket failed, it ages out: %s", self.group, exc)

    # --- resyncs and the session -----------------------------------------------------------

    async def _client_resync(self) -> None:
        """A resync the client asked for: after a session check, a snapshot now, or one second
        after the last (``socket_limits.ResyncThrottle``), or nothing when one is scheduled
        already."""
        wait = self.throttle.ask(asyncio.get_running_loop().time())
        if wait is None:
            return
        if wait > 0:
            self.deferred = asyncio.create_task(self._deferred_resync(wait), name="resync")
        elif not await self._session_ended():
            await self._resync()

    async def _deferred_resync(self, wait: float) -> None:
        """The throttled resync, ``wait`` seconds from now. Ends by cancellation or after the
        resync; an unexpected error is logged and closes the socket with 4500."""
        try:
            await asyncio.sleep(wait)
            self.throttle.due()
            if not await self._session_ended():
                await self._resync()
        except Exception:  # the task's boundary: never die unseen
            logger.exception("%s: a resync failed; closing the socket", self.group)
            await self.close(code=CLOSE_SERVER_ERROR, reason=SERVER_FAILED)

    async def _session_ended(self) -> bool:
        """Whether the session this socket was opened with no longer holds its user
        (``socket_limits.session_user_id``); if so the client is told and the socket closed
        4401. Always False for a socket opened without a login, and under CHAINS_PUBLIC
        (anyone may watch then). Raises what the session store raises."""
        if self.user_id is None or settings.CHAINS_PUBLIC:
            return False
        if await _session_user_id(self.session_key) == self.user_id:
            return False
        logger.info(
            "%s: the session of user %s ended; closing its socket", self.group, self.user_id
        )
        await self._refuse(CLOSE_UNAUTHENTICATED, "session_ended", SESSION_ENDED)
        return True
