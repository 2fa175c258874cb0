"""Fixtures shared by the whole suite. Keep this small and generic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from tests.celery_process import celery_worker
from tests.processes import Process
from tests.sim_process import RunningSimulator, start_simulator


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


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: None) -> Iterator[Process]:
    """One real Celery worker subprocess (solo pool) for the session, on the test database."""
    with celery_worker() as worker:
        yield worker
