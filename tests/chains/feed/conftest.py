"""Fixtures and helpers of the feed tests (the product wired to the session's simulator is
``wired``, in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis

from chains import store
from tests.processes import eventually


@pytest_asyncio.fixture
async def redis_client() -> AsyncIterator[Redis]:
    """The product's async client of the test Redis database, which is empty before and after
    (closed after the test)."""
    client = store.async_client()
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


StatusReader = Callable[[str], dict[str, Any] | None]


def shared_status(account: str) -> dict[str, Any] | None:
    """The feed status in the test settings' Redis."""
    return store.read_feed_status(account)


def status_reader(client: Any) -> StatusReader:
    """A feed-status reader for another Redis server (a test's private one)."""

    def read(account: str) -> dict[str, Any] | None:
        raw = client.get(store.feed_key(account))
        return json.loads(raw) if raw else None

    return read


def wait_ready(
    account: str, *, timeout: float = 30, read: StatusReader = shared_status
) -> dict[str, Any]:
    """Wait until ``account``'s feed is live with every chain ready; returns that status."""

    def ready() -> dict[str, Any] | None:
        status = read(account)
        if not status or status["state"] != "live" or not status["chains"]:
            return None
        return status if all(c["ready"] for c in status["chains"]) else None

    return eventually(ready, timeout=timeout, what=f"{account} live and ready")


def dhan_connections(sim: Any) -> int:
    """How many DhanHQ feed sockets the simulator holds open."""
    return len(sim.state(instruments=False)["connections"]["dhan"])
