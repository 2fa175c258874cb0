"""The one-writer rule: each chain has exactly one writer at a time, even through a Redis outage.

A chain's writers are its account's feed worker (ticks) and the REST repopulate task (REST
option chains). The rule they follow:

1. **The feed worker that holds the account's lock is the one writer** of the account's chains.
   The lock is a Redis key with a TTL (``FeedLock``), renewed every second. A standby polls
   for it and takes over when the holder's key expires.
2. **A holder that cannot renew stops writing before its lock could expire.** ``FeedLock``
   keeps the deadline up to which the last successful acquire or renewal makes it the holder
   (measured from *before* the command was sent, less a safety margin); ``held()`` is False
   past it. The worker checks ``held()`` before every write, so a process that lost Redis, or
   was frozen (SIGSTOP, a long GC, a swapped-out VM) and woke past its deadline, writes
   nothing more and stands down: a standby may own the chain by then.
3. **While the lock exists, REST chains are handed over**, never written by the task:
   ``hand_over_rest_chain`` queues them (a ``RestHandover`` each) and the holder merges them
   into its book (newer exchange time wins per leg) — ``take_rest_chains``.
4. **Without a holder, the repopulate task writes** with an optimistic lock
   (``replace_snapshot``): the chain key and the lock key are watched while the current
   snapshot is read and merged; a write by anyone else in between (a worker that just took
   the lock included) abandons the transaction, and nothing is written while the lock exists.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis

from brokers.connections import sync_client

from .contracts import StoredSnapshot, parse_snapshot, require_keys, snapshot_meta
from .exceptions import ContractError, SnapshotContention
from .store import PREFIX, chain_key, dumps, meta_key

# --- 1 and 2: the feed lock -----------------------------------------------------------------------

# Renew when ours. When the key is gone (Redis restarted empty) and the caller still holds it by
# its own deadline, take it again: nobody else can have held it in between without our key
# having been absent, and SET NX makes sure nobody holds it now.
_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if not holder and ARGV[3] == '1' then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Fenced writes: SET KEYS[2..n] only while KEYS[1] (the lock) holds our token ARGV[1]. When the
# key is gone (Redis restarted empty): take it back first if ARGV[2] is '1' (the caller still
# holds it by its own deadline, ARGV[4] ms of TTL), else write anyway if ARGV[3] is '1' (a
# stopping worker's status), else refuse. ARGV[2i+1], ARGV[2i+2]: value and TTL (ms, 0 = none,
# negative = expire at the lock's own expiry instant (PEXPIRETIME, Redis 7.0+: exact even when
# the clock ticks a millisecond inside the script), so the key never outlives the lock; with no
# lock, after -TTL ms) of KEYS[i].
# Returns 0 (refused), 1 (written) or 2 (written after taking the lock back).
_FENCED_SET = """
local holder = redis.call('get', KEYS[1])
local result = 1
if holder ~= ARGV[1] then
  if holder then
    return 0
  elseif ARGV[2] == '1' then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[4])
    result = 2
  elseif ARGV[3] ~= '1' then
    return 0
  end
end
local lock_at = redis.call('pexpiretime', KEYS[1])
for i = 2, #KEYS do
  local ttl = tonumber(ARGV[2 * i + 2])
  if ttl < 0 and lock_at > 0 then
    redis.call('set', KEYS[i], ARGV[2 * i + 1], 'PXAT', lock_at)
  elseif ttl ~= 0 then
    redis.call('set', KEYS[i], ARGV[2 * i + 1], 'PX', math.abs(ttl))
  else
    redis.call('set', KEYS[i], ARGV[2 * i + 1])
  end
end
return result
"""

Clock = Callable[[], float]


def lock_key(account: str) -> str:
    """The Redis key of the account's feed lock (it exists while a feed worker holds it)."""
    return f"{PREFIX}feedlock:{account}"


class FeedLock:
    """``acquire()`` / ``renew()`` / ``release()`` of ``optionsite:feedlock:<account>``, and
    ``held()``: whether this process may still write (rule 2 above).

    ``margin`` is the part of the TTL this holder gives up, so that it stops writing before a
    standby could possibly have taken the lock (clock drift between processes on the same
    machine is nil; between machines Redis' own expiry is the reference, and the margin covers
    the time a command takes to reach Redis).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        account: str,
        *,
        ttl: float = 10.0,
        margin: float = 2.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 <= margin < ttl:
            raise ValueError(f"lock margin {margin} must be below its ttl {ttl}")
        self.client = client
        self.key = lock_key(account)
        self.ttl = ttl
        self.ttl_ms = int(ttl * 1000)
        self.margin = margin
        self.clock = clock
        self.token = secrets.token_hex(16)
        self._valid_until = 0.0
        self._key_lost = False  # the key was found gone and taken back: see take_key_lost()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._fenced_set = client.register_script(_FENCED_SET)

    def held(self) -> bool:
        """True while the last successful acquire/renew still covers this moment."""
        return self.clock() < self._valid_until

    def seconds_left(self) -> float:
        """How long this holder may still write without another renewal (≤ 0: not at all)."""
        return self._valid_until - self.clock()

    async def acquire(self) -> bool:
        """True when this worker now holds the lock. Raises RedisError when Redis fails."""
        sent = self.clock()
        ok = bool(await self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        if ok:
            self._valid_until = sent + self.ttl - self.margin
        return ok

    async def renew(self) -> bool:
        """Extend the TTL; False when the lock was lost (expired or taken by another worker).
        A key that vanished (Redis restarted empty) is taken again while ``held()``.
        Raises RedisError when Redis fails (``held()`` then runs out by itself)."""
        sent = self.clock()
        retake = "1" if self.held() else "0"
        result = await self._renew(keys=[self.key], args=[self.token, self.ttl_ms, retake])
        ok = bool(result)
        if result == 2:
            self._key_lost = True
        self._valid_until = sent + self.ttl - self.margin if ok else 0.0
        return ok

    async def release(self) -> None:
        """Give the lock up (only if still ours). Raises RedisError when Redis fails."""
        self._valid_until = 0.0
        await self._release(keys=[self.key], args=[self.token])

    async def write_if_held(
        self, items: list[tuple[str, str, float | None]], *, or_free: bool = False
    ) -> bool:
        """SET each (key, value, ttl) atomically, only while Redis says this token holds the
        lock — a key lost to a Redis restart is taken back first while ``held()`` — or, with
        ``or_free``, while nobody does. ``ttl`` in seconds, None for none, or negative:
        expire with the lock (without a lock, after ``-ttl`` seconds). False: nothing was
        written — the lock belongs to another worker (or to nobody, without ``or_free``).

        This is the fence of rule 2: a holder that froze mid-flush and woke after a standby
        took over cannot overwrite the new holder's snapshot. Raises RedisError."""
        held = self.held()
        if not or_free and not held:
            return False
        args: list[str | int] = [
            self.token,
            "1" if held else "0",
            "1" if or_free else "0",
            self.ttl_ms,
        ]
        for _key, value, ttl in items:
            args += [value, round(ttl * 1000) if ttl else 0]
        keys = [self.key, *(key for key, _, _ in items)]
        result = await self._fenced_set(keys=keys, args=args)
        if result == 2:
            self._key_lost = True
        return bool(result)

    def take_key_lost(self) -> bool:
        """True once after the lock's key was found gone and taken back (Redis restarted
        empty, so everything this holder wrote before is gone too)."""
        lost, self._key_lost = self._key_lost, False
        return lost

    async def holder(self) -> str | None:
        value = await self.client.get(self.key)
        if not value:
            return None
        return value.decode() if isinstance(value, bytes) else value


# --- 3: REST chains handed to the holder --------------------------------------------------------

REST_HANDOFF_TTL = 120  # seconds: REST chains a feed worker did not take by then are stale


def rest_key(account: str) -> str:
    return f"{PREFIX}rest:{account}"


@dataclass(frozen=True)
class RestHandover:
    """A REST option chain the repopulate task hands to the feed worker that holds the
    account's lock (``optionsite:rest:<account>``, one JSON object per chain, oldest first).

    ``observed_at`` is when the fetch started (epoch seconds): the worker merges the rows as
    observed then, so a tick newer than the fetch is kept. ``spot`` is the underlying's price
    (None: the REST answer had none); ``rows`` maps the broker's instrument id to chain-book
    market fields (``ChainBook.apply_fields``; None: not given).
    """

    underlying: str
    expiry: date
    observed_at: float
    spot: float | None
    rows: Mapping[str, Mapping[str, object]]

    def to_json(self) -> dict[str, Any]:
        return {
            "underlying": self.underlying,
            "expiry": self.expiry.isoformat(),
            "observed_at": self.observed_at,
            "spot": self.spot,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, raw: object) -> RestHandover:
        """The handover ``to_json`` wrote; ContractError naming a missing or renamed key, or
        a value that is not what the writer writes."""
        item = require_keys("A REST chain handed to the feed worker", raw, _HANDOVER_KEYS)
        try:
            expiry = date.fromisoformat(item["expiry"])
        except (TypeError, ValueError):  # named below with the record it came from
            raise ContractError(
                f"A REST chain handed to the feed worker has expiry {item['expiry']!r}, not a "
                "YYYY-MM-DD date: the repopulate task and the feed worker run different code."
            ) from None
        return cls(
            item["underlying"], expiry, float(item["observed_at"]), item["spot"], item["rows"]
        )


_HANDOVER_KEYS = frozenset({"underlying", "expiry", "observed_at", "spot", "rows"})


def hand_over_rest_chain(account: str, chain: RestHandover) -> None:
    """Queue a REST chain for the account's feed worker, the one writer of its chains."""
    key = rest_key(account)
    with sync_client().pipeline(transaction=True) as pipe:
        pipe.rpush(key, dumps(chain.to_json()))
        pipe.expire(key, REST_HANDOFF_TTL)
        pipe.execute()


async def take_rest_chains(client: aioredis.Redis, account: str) -> list[RestHandover]:
    """Every REST chain queued for ``account``, oldest first, removed from the queue. Raises
    ContractError when one of them lacks a key (the queue is emptied all the same: a record
    its reader cannot read would fail every later take too)."""
    key = rest_key(account)
    async with client.pipeline(transaction=True) as pipe:
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = await pipe.execute()
    return [RestHandover.from_json(json.loads(item)) for item in raw]


# --- 4: the repopulate task writes while nobody holds the lock --------------------------------


class SnapshotWrite(NamedTuple):
    """What ``replace_snapshot`` did: ``written`` is the stored snapshot (None: nothing was
    written); ``owned`` is True when the owner key existed, so the chain was left alone."""

    written: StoredSnapshot | None
    owned: bool


def replace_snapshot(
    underlying: str,
    expiry: date | str,
    merge: Callable[[StoredSnapshot | None], StoredSnapshot | None],
    *,
    owner_key: str,
    attempts: int = 5,
) -> SnapshotWrite:
    """Replace a chain's snapshot with ``merge(current)`` unless someone else wrote meanwhile.

    Optimistic locking (WATCH/MULTI): the chain key and ``owner_key`` (a feed worker's lock) are
    watched while the current snapshot is read and merged; a write by anyone else in between
    abandons the transaction and ``merge`` runs again on what is there now. Nothing is written
    while ``owner_key`` exists (that writer owns the chain) or when ``merge`` returns None.
    Raises SnapshotContention when ``attempts`` transactions in a row were overtaken, and
    ContractError when the stored snapshot lacks a key (``contracts.parse_snapshot``).
    """
    key = chain_key(underlying, expiry)
    with sync_client().pipeline(transaction=True) as pipe:
        for _ in range(attempts):
            try:
                pipe.watch(key, owner_key)
                if pipe.exists(owner_key):
                    return SnapshotWrite(None, owned=True)
                raw = pipe.get(key)
                snapshot = merge(parse_snapshot(json.loads(raw)) if raw else None)
                if snapshot is None:
                    return SnapshotWrite(None, owned=False)
                pipe.multi()
                pipe.set(key, dumps(snapshot))
                pipe.set(meta_key(underlying, expiry), dumps(snapshot_meta(snapshot)))
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
