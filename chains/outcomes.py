"""The last outcome of each periodic task, kept in ``TaskOutcome`` for the status page.

``record_outcome(name)`` wraps one task run: it marks the task as running, then stores success
with the detail the task wrote, or failure with the error — and re-raises, so Celery still
sees the failure. Nothing is swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.utils import timezone

from .models import TaskOutcome

logger = logging.getLogger(__name__)

DETAIL_LIMIT = 4000

# The periodic tasks the status page expects an outcome of (beat schedule: settings.py).
REPOPULATE = "repopulate chains"
REPOPULATE_FORCED = "repopulate chains (market open/close)"
CHECK_TOKENS = "check tokens"
REFRESH_INSTRUMENTS = "refresh instruments"
PRUNE_HISTORY = "prune history"
PERIODIC_TASKS = (REPOPULATE, REPOPULATE_FORCED, CHECK_TOKENS, REFRESH_INSTRUMENTS, PRUNE_HISTORY)


@dataclass
class Outcome:
    """What a running task reports: one line per thing it did (joined into ``detail``)."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)

    @property
    def detail(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def record_outcome(name: str) -> Iterator[Outcome]:
    """Record the run of task ``name``: running at entry, then ok or failed at exit.

    On an exception the failure (type, message and what the task had reported so far) is
    stored, logged with its traceback, and the exception propagates unchanged.
    """
    started = timezone.now()
    TaskOutcome.objects.update_or_create(
        name=name,
        defaults={"started_at": started, "finished_at": None, "ok": None, "detail": "running"},
    )
    outcome = Outcome()
    try:
        yield outcome
    except BaseException as exc:  # recorded and re-raised: the task still fails in Celery
        logger.exception("Task %r failed", name)
        error = f"{type(exc).__name__}: {exc}"
        detail = "\n".join([error, *outcome.lines]) if outcome.lines else error
        _finish(name, started, ok=False, detail=detail)
        raise
    _finish(name, started, ok=True, detail=outcome.detail)


def _finish(name: str, started: object, *, ok: bool, detail: str) -> None:
    TaskOutcome.objects.update_or_create(
        name=name,
        defaults={
            "started_at": started,
            "finished_at": timezone.now(),
            "ok": ok,
            "detail": detail[:DETAIL_LIMIT],
        },
    )
