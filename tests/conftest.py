"""Fixtures shared by the whole suite. Keep this small and generic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.db import connections

from chains import store
from tests.celery_process import celery_worker
from tests.processes import Process
from tests.sim_process import RunningSimulator, start_simulator
from tests.sim_wiring import wire

# A test that starts a process must be marked `integration` (tests/process_marker.py); the
# browser test files share one xdist worker (tests/xdist_browser.py).
pytest_plugins = ["tests.process_marker", "tests.xdist_browser"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test databases, and before they are dropped, no connection left to them.

    Consumers and Channels' sync-to-async threads open connections of their own that nothing
    closes at the end; PostgreSQL then refuses to drop a database other sessions use (and the
    next run starts by deleting the leftover). Those sessions are ended first.
    """
    yield
    with django_db_blocker.unblock():
        for connection in connections.all():
            if connection.vendor != "postgresql":
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[RunningSimulator]:
    """One exchange simulator subprocess for the session (fast pings for the tests)."""
    sim = start_simulator("--seed", "7", "--ping-interval", "1")
    yield sim
    sim.stop()


@pytest.fixture
def sim(simulator_process: RunningSimulator) -> RunningSimulator:
    """The session's simulator, reset to a fresh state (faults, tokens, limits, market)."""
    simulator_process.reset()
    return simulator_process


@pytest.fixture
def clean_redis() -> Iterator[redis.Redis]:
    """The test Redis database (``REDIS_URL``, each xdist worker's own: tests/settings.py)
    empty before and after — snapshots, feed status, locks, rate-limit slots. Yields the
    product's synchronous client of it."""
    client = store.sync_client()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def wired(sim: RunningSimulator, clean_redis: redis.Redis) -> RunningSimulator:
    """The product wired to the session's fresh simulator (``tests.sim_wiring.wire``: accounts
    sim-dhan and sim-upstox, masters loaded, one chain each with one expiry) on an empty test
    Redis database. Needs the database: use it from a ``django_db`` test."""
    wire(sim)
    return sim


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: None) -> Iterator[Process]:
    """One real Celery worker subprocess (solo pool) for the session, on the test database."""
    with celery_worker() as worker:
        yield worker
