"""Sessions kept in the database and served from Redis, and the login check of the JSON API.

``SessionStore`` (``SESSION_ENGINE = "chains.sessions"``) works as Django's ``cached_db``: the
database row is the truth (a Redis restart or eviction logs nobody out), and Redis holds a copy
(``optionsite:session:<key>``, the session's JSON) read on every request. Unlike Django's:

- a copy lives at most ``SESSION_CACHE_SECONDS`` (and never past the session's expiry): a copy
  Redis failed to replace at logout cannot outlive that;
- an ended session's copy is replaced with ``ENDED`` (for ``SESSION_CACHE_SECONDS``), and a
  copy made from the database is written only where none is: a request that read the session
  just before the logout cannot put it back (Django's ``cached_db`` can);
- while Redis does not answer, sessions are read from and written to the database only (the
  outage is logged once, its end once): the login pages and admin keep working; the chain pages
  and the API answer 503 by themselves, as they need Redis for the chain.

``asession_user_id(session)`` (``session_user_id`` off the event loop) is the login check of
the JSON API: the id of the active user a
session holds, verified as ``django.contrib.auth.get_user`` verifies it (a backend of this
site, the user exists and is active, the session's password hash is the user's current one),
in one Redis round trip (``CHECK``: the session's copy and the user's cached state, compared in
Redis) instead of loading the session and the user from the database. The user's state (the
session hashes its current password accepts; none when inactive or gone) is cached
``SESSION_USER_CACHE_SECONDS`` (``optionsite:session-user:<backend>:<id>``) and dropped when the
user is saved or deleted (signals: at once, and again once the change is committed; replaced
with ``CHANGED`` for ``CHANGED_SECONDS``, which a read of the database from just before the
change cannot overwrite). So a
logout, a deactivation, a deletion or a password change refuses the user's sessions at their
next request; only a change that bypasses ``save()`` (a queryset ``update()``) waits out
``SESSION_USER_CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.sessions.backends import db
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils.crypto import constant_time_compare
from redis.commands.core import AsyncScript, Script
from redis.exceptions import RedisError

from brokers.connections import async_client, sync_client

logger = logging.getLogger(__name__)

COPY_PREFIX = "optionsite:session:"
USER_PREFIX = "optionsite:session-user:"
# What an ended session's copy and a changed user's state are replaced with (for
# SESSION_CACHE_SECONDS and CHANGED_SECONDS): a request that read the database just before the
# change cannot put the old state back (copies and states are written only where none is).
ENDED = b"ended"
CHANGED = b"changed"
CHANGED_SECONDS = 5

# KEYS[1] the session's copy; ARGV[1] USER_PREFIX. Returns {0} no copy or none readable (read
# the database), {1} no login in it or a hash the user does not accept, {2, id, backend} the
# user's state is not cached (read the database), {3, id, backend} the user is logged in.
CHECK = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
if raw == 'ended' then return {1} end
local ok, s = pcall(cjson.decode, raw)
if not ok or type(s) ~= 'table' then return {0} end
local id, backend, hash = s['_auth_user_id'], s['_auth_user_backend'], s['_auth_user_hash']
if type(id) ~= 'string' or type(backend) ~= 'string' or type(hash) ~= 'string' then
  return {1}
end
local state = redis.call('GET', ARGV[1] .. backend .. ':' .. id)
if not state or state == 'changed' then return {2, id, backend} end
for _, accepted in ipairs(cjson.decode(state)) do
  if accepted == hash then return {3, id, backend} end
end
return {1}
"""


class _Outage:
    """Redis failures of the session store: the first of an outage logged as an error, its end
    as a warning (one line a request would flood the log)."""

    def __init__(self) -> None:
        self.failing = False
        self._lock = threading.Lock()

    def failed(self, what: str, exc: RedisError) -> None:
        with self._lock:
            first, self.failing = not self.failing, True
        if first:
            logger.error(
                "Sessions: %s in Redis failed (%s); sessions are read from the database until "
                "Redis answers (check REDIS_URL).",
                what,
                exc,
            )

    def answered(self) -> None:
        if not self.failing:
            return
        with self._lock:
            ended, self.failing = self.failing, False
        if ended:
            logger.warning("Sessions: Redis answers again; sessions are read from it.")


outage = _Outage()


def copy_key(session_key: str) -> str:
    return f"{COPY_PREFIX}{session_key}"


class SessionStore(db.SessionStore):
    """Django's database store with a copy of each session in Redis (see the module's
    docstring)."""

    def _copy_seconds(self, age: int) -> int:
        return max(1, min(settings.SESSION_CACHE_SECONDS, age))

    def _write_copy(self, data: dict[str, Any], age: int, *, only_new: bool) -> None:
        """Write the copy (``only_new``: unless one exists, an ended session's included)."""
        key = self._get_or_create_session_key()
        value = self.serializer().dumps(data)
        try:
            sync_client().set(copy_key(key), value, ex=self._copy_seconds(age), nx=only_new)
        except RedisError as exc:  # the database has it: only the copy is missing
            outage.failed("caching a session", exc)
            return
        outage.answered()

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        try:
            raw = sync_client().get(copy_key(self.session_key))
        except RedisError as exc:
            outage.failed("reading a session", exc)
            raw = None
        else:
            outage.answered()
            if raw == ENDED:
                return {}
            if raw is not None:
                return self.serializer().loads(raw)
        row = self._get_session_from_db()
        if row is None:
            return {}
        data: dict[str, Any] = self.decode(row.session_data)
        if not outage.failing:  # only where none is: a logout meanwhile left its mark
            self._write_copy(data, self.get_expiry_age(expiry=row.expire_date), only_new=True)
        return data

    def save(self, must_create: bool = False) -> None:
        # The database first: a copy is never newer than the truth. When Redis fails, an older
        # copy lives on for at most SESSION_CACHE_SECONDS.
        super().save(must_create)
        data = self._get_session(no_load=must_create)
        self._write_copy(data, self.get_expiry_age(), only_new=False)

    def delete(self, session_key: str | None = None) -> None:
        # The database row goes first: from then on no copy is made from it. A copy Redis failed
        # to drop is served for at most SESSION_CACHE_SECONDS once Redis answers again.
        super().delete(session_key)
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        try:
            sync_client().set(copy_key(key), ENDED, ex=settings.SESSION_CACHE_SECONDS)
        except RedisError as exc:
            logger.error(
                "Sessions: marking the copy of an ended session in Redis failed (%s): it is "
                "gone from the database, and its copy expires within %d s.",
                exc,
                settings.SESSION_CACHE_SECONDS,
            )

    async def aload(self) -> dict[str, Any]:
        return await sync_to_async(self.load)()

    async def asave(self, must_create: bool = False) -> None:
        await sync_to_async(self.save)(must_create)

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete)(session_key)


# --- the login check of the JSON API ------------------------------------------------------------

_script: tuple[redis.Redis, Script] | None = None


def _check_script() -> tuple[redis.Redis, Script]:
    """``CHECK`` registered with the process's client (again when the client was replaced)."""
    global _script
    client = sync_client()
    if _script is None or _script[0] is not client:
        _script = (client, client.register_script(CHECK))
    return _script


def user_key(backend_path: str, user_id: Any) -> str:
    """The key of a user's cached state; ``user_id`` as the session stores it (a string)."""
    return f"{USER_PREFIX}{backend_path}:{user_id}"


def session_user_id(session: Any) -> Any:
    """The primary key of the active user the stored session ``session`` names (by its key:
    a SessionStore, loaded or not; changes not saved are not seen) holds, or None: no login in
    it, a backend this site does not use, a user that is gone or inactive, or
    a password changed since the login. One Redis round trip when the session's copy and the
    user's state are cached; the database otherwise (and both are cached then). Never changes
    the session. Raises RedisError when Redis does not answer."""
    key = session.session_key
    if key is None:
        return None
    client, script = _check_script()
    checked = _from_check(script(keys=[copy_key(key)], args=[USER_PREFIX], client=client))
    return _checked_in_database(session) if checked is _UNKNOWN else checked


_async_scripts: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[aioredis.Redis, AsyncScript]
] = weakref.WeakKeyDictionary()


async def asession_user_id(session: Any) -> Any:
    """``session_user_id`` for the event loop: the round trip to Redis is awaited on the loop
    (other requests go on meanwhile) instead of holding the one thread that runs every
    request's synchronous part; the database, when needed, is read on that thread."""
    key = session.session_key
    if key is None:
        return None
    loop = asyncio.get_running_loop()
    if loop not in _async_scripts:  # one client per event loop (daphne runs one)
        client = async_client()
        _async_scripts[loop] = (client, client.register_script(CHECK))
    client, script = _async_scripts[loop]
    found = await script(keys=[copy_key(key)], args=[USER_PREFIX], client=client)
    checked = _from_check(found)
    if checked is not _UNKNOWN:
        return checked
    return await database_sync_to_async(_checked_in_database)(session)


_UNKNOWN = object()  # CHECK could not decide: read the database


def _from_check(found: list[Any]) -> Any:
    """The user id ``CHECK`` decided (None: refused), or ``_UNKNOWN``."""
    code = int(found[0])
    if code == 1:
        return None
    if code == 3:
        raw_id, backend_path = (v.decode() for v in found[1:3])
        if backend_path not in settings.AUTHENTICATION_BACKENDS:
            return None
        return get_user_model()._meta.pk.to_python(raw_id)
    return _UNKNOWN


def _checked_in_database(session: Any) -> Any:
    """``session_user_id`` from the session itself (loaded from the database when it has no
    copy) and the user's state (from the database when not cached; cached then)."""
    try:
        raw_id, backend_path = session[SESSION_KEY], session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    stored = session.get(HASH_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS or not stored:
        return None
    accepted = _user_hashes(backend_path, str(raw_id))
    if not any(constant_time_compare(stored, h) for h in accepted):
        return None
    return get_user_model()._meta.pk.to_python(raw_id)


def _user_hashes(backend_path: str, raw_id: str) -> list[str]:
    """The session hashes user ``raw_id`` accepts now (none: the backend refuses the user),
    from the database; cached for SESSION_USER_CACHE_SECONDS."""
    try:
        user_id = get_user_model()._meta.pk.to_python(raw_id)
    except ValidationError:
        return []
    user = load_backend(backend_path).get_user(user_id)
    if user is None:  # deleted, or refused by the backend (ModelBackend: not is_active)
        hashes: list[str] = []
    else:
        hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    # Only where none is: a change of the user meanwhile left its mark (CHANGED) for a moment.
    sync_client().set(user_key(backend_path, raw_id), json.dumps(hashes),
                      ex=settings.SESSION_USER_CACHE_SECONDS, nx=True)  # fmt: skip
    return hashes


def forget_user(user_id: Any) -> None:
    """Replace the cached state of user ``user_id`` with ``CHANGED``: its sessions are checked
    against the database for the next CHANGED_SECONDS, then cached again. A Redis failure is
    logged: the state then ends within SESSION_USER_CACHE_SECONDS."""
    try:
        with sync_client().pipeline(transaction=False) as pipe:
            for backend in settings.AUTHENTICATION_BACKENDS:
                pipe.set(user_key(backend, user_id), CHANGED, ex=CHANGED_SECONDS)
            pipe.execute()
    except RedisError as exc:
        logger.error(
            "Sessions: dropping the cached login state of user %s failed (%s): its sessions "
            "follow the change within %d s.",
            user_id,
            exc,
            settings.SESSION_USER_CACHE_SECONDS,
        )


def _user_changed(instance: Any, **kwargs: Any) -> None:
    # A new user has no cached state, and a login's last_login update changes nothing the
    # state holds. Otherwise now, and again once the change is committed: a request in between
    # may have read the state the database still held.
    if kwargs.get("created") or kwargs.get("update_fields") == frozenset({"last_login"}):
        return
    user_id = str(instance.pk)
    forget_user(user_id)
    transaction.on_commit(lambda: forget_user(user_id))


def connect_signals() -> None:
    """Drop a user's cached state whenever the user is saved or deleted (``ChainsConfig.ready``
    calls this once the user model is known)."""
    model = get_user_model()
    post_save.connect(_user_changed, sender=model, dispatch_uid="chains.sessions.user_saved")
    post_delete.connect(_user_changed, sender=model, dispatch_uid="chains.sessions.user_deleted")
