"""record_outcome: every task run leaves its last outcome — success with what it did, failure
with the error — and a failure still propagates."""

from __future__ import annotations

import pytest

from chains.models import TaskOutcome
from chains.outcomes import record_outcome

pytestmark = [pytest.mark.django_db]


def test_a_run_in_progress_shows_as_running():
    with record_outcome("demo task") as outcome:
        running = TaskOutcome.objects.get(name="demo task")
        assert running.ok is None and running.finished_at is None
        assert running.detail == "running"
        outcome.add("step one")


def test_success_stores_what_the_task_reported():
    with record_outcome("demo task") as outcome:
        outcome.add("main: 10 legs")
        outcome.add("ux: 12 legs")
    done = TaskOutcome.objects.get(name="demo task")
    assert done.ok is True and done.finished_at >= done.started_at
    assert done.detail == "main: 10 legs\nux: 12 legs"


def test_failure_is_stored_with_the_error_and_raised_unchanged():
    error = LookupError("no such chain")
    with pytest.raises(LookupError) as raised, record_outcome("demo task") as outcome:
        outcome.add("main: fetched")
        raise error
    assert raised.value is error
    failed = TaskOutcome.objects.get(name="demo task")
    assert failed.ok is False and failed.finished_at is not None
    assert failed.detail == "LookupError: no such chain\nmain: fetched"


def test_the_next_run_replaces_the_last_outcome():
    with pytest.raises(RuntimeError), record_outcome("demo task"):
        raise RuntimeError("first run failed")
    with record_outcome("demo task") as outcome:
        outcome.add("second run worked")
    (only,) = TaskOutcome.objects.filter(name="demo task")
    assert only.ok is True and only.detail == "second run worked"


def test_a_very_long_detail_is_cut_to_fit():
    with record_outcome("demo task") as outcome:
        outcome.add("x" * 10_000)
    assert len(TaskOutcome.objects.get(name="demo task").detail) == 4000
