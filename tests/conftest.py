"""Fixtures shared by the whole suite. Keep this small and generic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.celery_process import celery_worker
from tests.processes import Process
from tests.sim_process import RunningSimulator, start_simulator


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
