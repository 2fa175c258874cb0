"""Redis clients of every process (web, feed worker, Celery, commands).

One place sets how a Redis connection behaves, so that a Redis restart is survived the same way
everywhere: commands time out after ``SOCKET_TIMEOUT`` seconds (a dead server is noticed), a
pooled connection idle for ``HEALTH_CHECK_INTERVAL`` seconds is pinged before use (a restarted
server's stale sockets are replaced instead of failing the first command), and connection
errors are retried once on a fresh connection.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 10

_RETRY_ON = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]


def client_options() -> dict[str, object]:
    """Keyword arguments of every command client (not of blocking readers: see the channel
    layer's settings, whose reads wait longer than the layer's own blocking pop)."""
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }


_sync_client: redis.Redis | None = None


def sync_client() -> redis.Redis:
    """A process-wide Redis client for synchronous callers (views, tasks, commands)."""
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(
            settings.REDIS_URL,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
            retry_on_error=_RETRY_ON,
            **client_options(),
        )
    return _sync_client


def async_client() -> aioredis.Redis:
    """A new asyncio Redis client (one per event loop; close it with ``aclose()``)."""
    return aioredis.Redis.from_url(
        settings.REDIS_URL,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 1),
        retry_on_error=_RETRY_ON,
        **client_options(),  # type: ignore[arg-type]
    )
