"""Chain snapshots and feed status in Redis: the feed worker writes, web processes read.

Keys (prefix ``optionsite:``):
- ``chain:<UNDERLYING>:<EXPIRY>`` — the chain's full snapshot (``contracts.StoredSnapshot``),
  rewritten on every flush that changed the chain, so a consumer that resyncs after a gap
  never gets an older ``seq`` than a delta it already missed; ``chain-meta:…`` beside it, its
  small meta record (``contracts.SnapshotMeta``).
- ``feed:<ACCOUNT>`` — the lock holder's status and counters (``chains.feed.status.FeedStatus``);
  it expires with the lock, so a missing key means no worker holds the account.
- ``counter:channel_gaps`` — deltas consumers found missing (the channel layer drops at
  capacity); shown on the status page.
- ``rest:<ACCOUNT>`` and ``feedlock:<ACCOUNT>`` — the one-writer rule's keys
  (``chains.ownership``).

Readers get typed records: every read parses what it finds (``contracts.parse_snapshot``,
``parse_meta``, ``feed.status.parse_feed_status``) and raises ContractError when a record
lacks a key its type requires.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import redis.asyncio as aioredis

from brokers.connections import async_client, sync_client

from .contracts import SnapshotMeta, StoredSnapshot, parse_meta, parse_snapshot, snapshot_meta
from .feed.status import FeedStatus, parse_feed_status

__all__ = ["async_client", "sync_client"]  # the Redis clients chain readers and writers use

PREFIX = "optionsite:"
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


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


# --- writers (feed worker) ----------------------------------------------------------------------


def snapshot_items(snapshot: StoredSnapshot) -> list[tuple[str, str, float | None]]:
    """The (key, value, ttl) pairs that store a chain snapshot and its meta record, for a
    fenced write (``FeedLock.write_if_held``)."""
    underlying, expiry = snapshot["underlying"], snapshot["expiry"]
    return [
        (chain_key(underlying, expiry), dumps(snapshot), None),
        (meta_key(underlying, expiry), dumps(snapshot_meta(snapshot)), None),
    ]


def feed_status_item(account: str, status: FeedStatus, *, ttl: float) -> tuple[str, str, float]:
    """The (key, value, ttl) that stores a feed status record, for a fenced write: it expires
    with the lock (the record of a worker that holds no lock, after ``ttl`` seconds)."""
    return feed_key(account), dumps(status), -ttl


async def write_snapshot(client: aioredis.Redis, snapshot: StoredSnapshot) -> None:
    """Store a chain snapshot and its small meta record (seq, as_of, readiness) for readers
    that need no prices."""
    underlying, expiry = snapshot["underlying"], snapshot["expiry"]
    meta = snapshot_meta(snapshot)
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(chain_key(underlying, expiry), dumps(snapshot))
        pipe.set(meta_key(underlying, expiry), dumps(meta))
        await pipe.execute()


async def clear_feed_status(client: aioredis.Redis, account: str) -> None:
    await client.delete(feed_key(account))


# --- readers (web, tasks) -----------------------------------------------------------------------


def read_snapshot(underlying: str, expiry: date | str) -> StoredSnapshot | None:
    """The chain's Redis snapshot, or None when no feed or task has written one. Raises
    ContractError when the stored record lacks a key (``contracts.parse_snapshot``)."""
    raw = sync_client().get(chain_key(underlying, expiry))
    return parse_snapshot(json.loads(raw)) if raw else None


def read_meta(underlying: str, expiry: date | str) -> SnapshotMeta | None:
    """The chain's meta record (run, seq, as_of, ready, reason, …), or None when there is
    none. Raises ContractError when it lacks a key (``contracts.parse_meta``)."""
    raw = sync_client().get(meta_key(underlying, expiry))
    return parse_meta(json.loads(raw)) if raw else None


async def aread_snapshot(
    client: aioredis.Redis, underlying: str, expiry: date | str
) -> StoredSnapshot | None:
    """``read_snapshot`` on an asyncio client."""
    raw = await client.get(chain_key(underlying, expiry))
    return parse_snapshot(json.loads(raw)) if raw else None


def read_feed_status(account: str) -> FeedStatus | None:
    """The feed worker's last status, or None when no worker refreshed it recently. Raises
    ContractError when the record lacks a key (``feed.status.parse_feed_status``)."""
    raw = sync_client().get(feed_key(account))
    return parse_feed_status(json.loads(raw)) if raw else None


async def aread_feed_status(client: aioredis.Redis, account: str) -> FeedStatus | None:
    """``read_feed_status`` on an asyncio client."""
    raw = await client.get(feed_key(account))
    return parse_feed_status(json.loads(raw)) if raw else None


def channel_gaps() -> int:
    raw = sync_client().get(GAPS_KEY)
    return int(raw) if raw else 0


async def count_channel_gap(client: aioredis.Redis) -> None:
    await client.incr(GAPS_KEY)
