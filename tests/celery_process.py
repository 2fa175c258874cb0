"""A real Celery worker subprocess for the task tests: ``celery -A optionsite worker --pool solo``
on the test database (DATABASE_URL of the running test database) and the test Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from celery import Task
from django.utils import timezone

from chains.models import TaskOutcome
from optionsite.celery import app
from tests.processes import Process, eventually, product_env

STARTUP_SECONDS = 30.0


@contextmanager
def celery_worker() -> Iterator[Process]:
    """Start a worker (purging stale messages first); yield once it is ready; stop it."""
    app.control.purge()
    args = ["-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "solo",
            "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    with Process(args, product_env()) as worker:
        try:
            eventually(lambda: " ready." in worker.output() or worker.process.poll() is not None,
                       timeout=STARTUP_SECONDS, what="the Celery worker to start")  # fmt: skip
        except AssertionError:
            raise RuntimeError(f"no Celery worker:\n{worker.output()[-3000:]}") from None
        if worker.process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{worker.output()[-3000:]}")
        yield worker


def run_task(
    worker: Process, task: Task, name: str, *, timeout: float = 60.0, **kwargs: Any
) -> TaskOutcome:
    """Send ``task`` to the worker and return the TaskOutcome ``name`` it recorded when done."""
    sent: datetime = timezone.now()
    task.delay(**kwargs)

    def finished() -> TaskOutcome | None:
        if worker.process.poll() is not None:
            raise AssertionError(f"the Celery worker died:\n{worker.output()[-3000:]}")
        return TaskOutcome.objects.filter(
            name=name, started_at__gte=sent, finished_at__isnull=False
        ).first()

    outcome: TaskOutcome = eventually(finished, timeout=timeout, what=f"task {name!r} to finish")
    return outcome


def wait_for_log(worker: Process, text: str, *, timeout: float = 10.0) -> None:
    """Wait until the worker's log contains ``text`` (e.g. how Celery reported a failure)."""
    deadline = time.monotonic() + timeout
    while text not in worker.output():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the worker log:\n{worker.output()[-3000:]}")
        time.sleep(0.05)
