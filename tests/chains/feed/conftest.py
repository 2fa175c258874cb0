"""Fixtures and helpers of the feed tests: the product wired to the session's simulator."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command

from chains import store
from tests.processes import eventually


@pytest.fixture
def wired(sim: Any) -> Iterator[Any]:
    """Accounts sim-dhan and sim-upstox on the simulator; one account per underlying; the
    test Redis database empty before and after."""
    store.sync_client().flushdb()
    call_command("simaccounts", url=sim.url, stdout=io.StringIO())
    yield sim
    store.sync_client().flushdb()


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
