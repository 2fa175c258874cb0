"""One feed worker per account: a Redis lock with a TTL, renewed while held.

A standby polls for the lock; when the holder dies its key expires within ``ttl`` seconds and
the standby takes over (within ttl + poll interval).
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def lock_key(account: str) -> str:
    """The Redis key of the account's feed lock (it exists while a feed worker holds it)."""
    return f"optionsite:feedlock:{account}"


class FeedLock:
    """``acquire()`` / ``renew()`` / ``release()`` of ``optionsite:feedlock:<account>``."""

    def __init__(self, client: aioredis.Redis, account: str, *, ttl: float = 10.0) -> None:
        self.client = client
        self.key = lock_key(account)
        self.ttl_ms = int(ttl * 1000)
        self.token = secrets.token_hex(16)

    async def acquire(self) -> bool:
        """True when this worker now holds the lock."""
        return bool(await self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the TTL; False when the lock was lost (expired or taken by another worker)."""
        return bool(await self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    async def release(self) -> None:
        await self.client.eval(_RELEASE, 1, self.key, self.token)

    async def holder(self) -> str | None:
        value = await self.client.get(self.key)
        return value.decode() if value else None
