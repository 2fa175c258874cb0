"""Chain snapshots and feed status in Redis: the feed worker writes, web processes read.

Keys (prefix ``optionsite:``):
- ``chain:<UNDERLYING>:<EXPIRY>`` — the chain's full snapshot (API ``data`` shape plus
  ``account``/``broker``), rewritten on every flush that changed the chain, so a consumer that
  resyncs after a gap never gets an older ``seq`` than a delta it already missed.
- ``feed:<ACCOUNT>`` — the feed worker's status and counters; expires when the worker stops
  refreshing it, so a missing key means the feed is down.
- ``counter:channel_gaps`` — deltas consumers found missing (the channel layer drops at
  capacity); shown on the status page.
- ``rest:<ACCOUNT>`` — REST chains the repopulate task fetched for a chain whose feed worker
  is running: the worker merges them (one writer per chain). While no feed worker holds the
  account, the task writes the snapshot itself with ``replace_snapshot`` (optimistic lock).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis
from django.conf import settings

from .exceptions import SnapshotContention

PREFIX = "optionsite:"
FEED_STATUS_TTL = 15  # seconds: a feed worker refreshes its status every second
GAPS_KEY = f"{PREFIX}counter:channel_gaps"


def chain_key(underlying: str, expiry: date | str) -> str:
    day = expiry.isoformat() if isinstance(expiry, date) else expiry
    return f"{PREFIX}chain:{underlying}:{day}"


def meta_key(underlying: str, expiry: date | str) -> str:
    day = expiry.isoformat() if isinstance(expiry, date) else expiry
    return f"{PREFIX}chain-meta:{underlying}:{day}"


def feed_key(account: str) -> str:
    return f"{PREFIX}feed:{account}"


def group_name(underlying: str, expiry: date | str) -> str:
    """The Channels group of a chain: ``chain.<UNDERLYING>.<EXPIRY>``."""
    day = expiry.isoformat() if isinstance(expiry, date) else expiry
    return f"chain.{underlying}.{day}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


_sync_client: redis.Redis | None = None


def sync_client() -> redis.Redis:
    """A process-wide Redis client for synchronous readers (views, tasks, commands)."""
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    return _sync_client


def async_client() -> aioredis.Redis:
    """A new asyncio Redis client (one per event loop; close it with ``aclose()``)."""
    return aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


# --- writers (feed worker) ----------------------------------------------------------------------


META_KEYS = ("underlying", "expiry", "run", "seq", "as_of", "ready", "reason", "account", "broker")


def snapshot_meta(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The small meta record stored next to a snapshot (``META_KEYS``)."""
    return {k: snapshot.get(k) for k in META_KEYS}


async def write_snapshot(client: aioredis.Redis, snapshot: dict[str, Any]) -> None:
    """Store a chain snapshot (must hold ``underlying``, ``expiry`` and ``seq``) and its small
    meta record (seq, as_of, readiness) for readers that need no prices."""
    underlying, expiry = snapshot["underlying"], snapshot["expiry"]
    meta = snapshot_meta(snapshot)
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(chain_key(underlying, expiry), _dumps(snapshot))
        pipe.set(meta_key(underlying, expiry), _dumps(meta))
        await pipe.execute()


async def write_feed_status(client: aioredis.Redis, account: str, status: dict[str, Any]) -> None:
    await client.set(feed_key(account), _dumps(status), ex=FEED_STATUS_TTL)


async def clear_feed_status(client: aioredis.Redis, account: str) -> None:
    await client.delete(feed_key(account))


# --- readers (web, tasks) -----------------------------------------------------------------------


def read_snapshot(underlying: str, expiry: date | str) -> dict[str, Any] | None:
    """The chain's Redis snapshot, or None when no feed or task has written one."""
    raw = sync_client().get(chain_key(underlying, expiry))
    return json.loads(raw) if raw else None


def read_meta(underlying: str, expiry: date | str) -> dict[str, Any] | None:
    """The chain's meta record (seq, as_of, ready, reason), or None when there is none."""
    raw = sync_client().get(meta_key(underlying, expiry))
    return json.loads(raw) if raw else None


async def aread_snapshot(
    client: aioredis.Redis, underlying: str, expiry: date | str
) -> dict[str, Any] | None:
    raw = await client.get(chain_key(underlying, expiry))
    return json.loads(raw) if raw else None


def read_feed_status(account: str) -> dict[str, Any] | None:
    """The feed worker's last status, or None when no worker refreshed it recently."""
    raw = sync_client().get(feed_key(account))
    return json.loads(raw) if raw else None


async def aread_feed_status(client: aioredis.Redis, account: str) -> dict[str, Any] | None:
    raw = await client.get(feed_key(account))
    return json.loads(raw) if raw else None


def channel_gaps() -> int:
    raw = sync_client().get(GAPS_KEY)
    return int(raw) if raw else 0


async def count_channel_gap(client: aioredis.Redis) -> None:
    await client.incr(GAPS_KEY)


# --- REST repopulation (Celery) -----------------------------------------------------------------

REST_HANDOFF_TTL = 120  # seconds: REST chains a feed worker did not take by then are stale


def rest_key(account: str) -> str:
    return f"{PREFIX}rest:{account}"


class SnapshotWrite(NamedTuple):
    """What ``replace_snapshot`` did: ``written`` is the stored snapshot (None: nothing was
    written); ``owned`` is True when the owner key existed, so the chain was left alone."""

    written: dict[str, Any] | None
    owned: bool


def replace_snapshot(
    underlying: str,
    expiry: date | str,
    merge: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    *,
    owner_key: str,
    attempts: int = 5,
) -> SnapshotWrite:
    """Replace a chain's snapshot with ``merge(current)`` unless someone else wrote meanwhile.

    Optimistic locking (WATCH/MULTI): the chain key and ``owner_key`` (a feed worker's lock) are
    watched while the current snapshot is read and merged; a write by anyone else in between
    abandons the transaction and ``merge`` runs again on what is there now. Nothing is written
    while ``owner_key`` exists (that writer owns the chain) or when ``merge`` returns None.
    Raises SnapshotContention when ``attempts`` transactions in a row were overtaken.
    """
    key = chain_key(underlying, expiry)
    with sync_client().pipeline(transaction=True) as pipe:
        for _ in range(attempts):
            try:
                pipe.watch(key, owner_key)
                if pipe.exists(owner_key):
                    return SnapshotWrite(None, owned=True)
                raw = pipe.get(key)
                snapshot = merge(json.loads(raw) if raw else None)
                if snapshot is None:
                    return SnapshotWrite(None, owned=False)
                pipe.multi()
                pipe.set(key, _dumps(snapshot))
                pipe.set(meta_key(underlying, expiry), _dumps(snapshot_meta(snapshot)))
                pipe.execute()
                return SnapshotWrite(snapshot, owned=False)
            except redis.WatchError:  # another writer got in first: merge again on its data
                continue
            finally:
                pipe.reset()
    raise SnapshotContention(
        f"The snapshot of {underlying} {expiry} changed {attempts} times while being merged: "
        "another writer is active; the next run merges again."
    )


def hand_over_rest_chain(account: str, chain: dict[str, Any]) -> None:
    """Queue a REST chain for the account's feed worker, the one writer of its chains."""
    key = rest_key(account)
    with sync_client().pipeline(transaction=True) as pipe:
        pipe.rpush(key, _dumps(chain))
        pipe.expire(key, REST_HANDOFF_TTL)
        pipe.execute()


async def take_rest_chains(client: aioredis.Redis, account: str) -> list[dict[str, Any]]:
    """Every REST chain queued for ``account``, oldest first, removed from the queue."""
    key = rest_key(account)
    async with client.pipeline(transaction=True) as pipe:
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = await pipe.execute()
    return [json.loads(item) for item in raw]
