"""Limits on the live WebSocket: open sockets per user across every web process, resyncs per
socket, and the session behind a socket.

- **Sockets per holder.** A logged-in user's sockets are counted in Redis, so that the cap
  (``WS_MAX_SOCKETS_PER_USER``) holds across every daphne process; sockets without a login
  (``CHAINS_PUBLIC``) are counted per client address (``WS_MAX_SOCKETS_PER_IP``). Each holder
  has a sorted set ``optionsite:ws:user:<id>`` / ``optionsite:ws:ip:<address>`` of channel
  names scored by when the socket last said it is open; a consumer re-adds itself every
  ``consumers.GROUP_REFRESH_SECONDS`` and removes itself when it closes, and entries older than
  ``SOCKET_TTL_SECONDS`` are dropped before counting, so the sockets of a crashed (or killed)
  process stop counting within a minute. 0 turns a cap off.
- **Resyncs.** ``ResyncThrottle``: at most one snapshot per ``RESYNC_SECONDS`` per socket.
  A resync asked sooner is answered by one snapshot when the second is over; any more asked
  meanwhile are dropped (the client gets that one snapshot, which is all it needs).
- **Sessions.** ``session_user_id`` reads a session the way Django's ``get_user`` does, without
  changing it: the consumer closes 4401 once the session no longer holds its active user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare

from .origin import scope_client_ip
from .store import PREFIX

RESYNC_SECONDS = 1.0
SOCKET_TTL_SECONDS = 60.0  # ≥ 6 refreshes (consumers.GROUP_REFRESH_SECONDS)


@dataclass(frozen=True)
class Holder:
    """Whose sockets a socket counts against: a user's, or an address's without a login."""

    key: str  # the Redis sorted set of the holder's open sockets
    limit: int  # 0: no cap
    refusal: str  # the message a socket beyond the cap is closed with


def holder(scope: dict[str, Any]) -> Holder:
    """The holder of a socket: its logged-in user, else its client address (the rule of
    ``origin.client_ip``: behind DJANGO_PROXY_COUNT proxies, the address the outermost one saw;
    "unknown" when the server does not say, e.g. on a Unix socket)."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        limit = settings.WS_MAX_SOCKETS_PER_USER
        return Holder(
            key=f"{PREFIX}ws:user:{user.pk}",
            limit=limit,
            refusal=(
                f"Too many live chains are open for your user (at most {limit}, "
                "WS_MAX_SOCKETS_PER_USER): close other tabs of this site, then reload this page."
            ),
        )
    address = scope_client_ip(scope) or "unknown"
    limit = settings.WS_MAX_SOCKETS_PER_IP
    return Holder(
        key=f"{PREFIX}ws:ip:{address}",
        limit=limit,
        refusal=(
            f"Too many live chains are open from your address (at most {limit}, "
            "WS_MAX_SOCKETS_PER_IP): close other tabs of this site, then reload this page."
        ),
    )


async def register(client: aioredis.Redis, holder: Holder, member: str, *, now: float) -> bool:
    """Count the socket ``member`` (its channel name) as one of ``holder``'s open sockets, at
    wall-clock time ``now``. True: admitted; False: beyond the holder's cap (then it is not
    counted). Atomic (MULTI), so that two processes admitting at once never both pass the cap.
    Raises RedisError when Redis does not answer."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(holder.key, "-inf", now - SOCKET_TTL_SECONDS)
        pipe.zadd(holder.key, {member: now})
        pipe.zcard(holder.key)
        pipe.expire(holder.key, math.ceil(SOCKET_TTL_SECONDS))
        _, _, count, _ = await pipe.execute()
    if holder.limit and count > holder.limit:
        await client.zrem(holder.key, member)
        return False
    return True


async def refresh(client: aioredis.Redis, holder: Holder, member: str, *, now: float) -> None:
    """Say again that ``member`` is open (re-added if Redis lost it); raises RedisError."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.zadd(holder.key, {member: now})
        pipe.expire(holder.key, math.ceil(SOCKET_TTL_SECONDS))
        await pipe.execute()


async def release(client: aioredis.Redis, holder: Holder, member: str) -> None:
    """Stop counting ``member``; raises RedisError (the entry then ages out)."""
    await client.zrem(holder.key, member)


@dataclass
class ResyncThrottle:
    """At most one snapshot per ``interval`` seconds (loop time). Pure: the caller sends."""

    interval: float = RESYNC_SECONDS
    last: float = -math.inf  # when the last snapshot was sent (or tried)
    pending: bool = False  # a deferred snapshot is scheduled
    dropped: int = field(default=0)

    def ask(self, now: float) -> float | None:
        """A client asked for a resync at ``now``: seconds to wait before sending it (0: send
        now), or None to drop it (a deferred one is already scheduled). A positive answer
        marks one as scheduled until ``due()``."""
        if self.pending:
            self.dropped += 1
            return None
        wait = self.last + self.interval - now
        if wait <= 0:
            return 0.0
        self.pending = True
        return wait

    def due(self) -> None:
        """The scheduled snapshot is being sent."""
        self.pending = False

    def sent(self, now: float) -> None:
        """A snapshot is being sent (of any cause) at ``now``."""
        self.last = now


def session_user_id(session_key: str | None) -> Any:
    """The primary key of the active user the session ``session_key`` holds, or None when it
    holds none any more: deleted (logout), expired, unknown, its user deleted or deactivated
    (``is_active``), or its password changed since (the session hash, as ``get_user``).
    Reads only: unlike ``django.contrib.auth.get_user`` it never flushes or cycles the
    session (the browser holding it would not learn a new key). Blocking (database)."""
    if session_key is None:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        raw_id, backend_path = session[SESSION_KEY], session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    try:
        user_id = get_user_model()._meta.pk.to_python(raw_id)
    except ValidationError:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None:  # deleted, or refused by the backend (ModelBackend: not is_active)
        return None
    stored = session.get(HASH_SESSION_KEY)
    if not stored:
        return None
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(stored, h) for h in hashes):
        return None
    return user.pk
