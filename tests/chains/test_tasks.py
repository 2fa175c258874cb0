"""The repopulate task in a real Celery worker against the simulator: it fills chains from REST,
never overwrites newer data, and records every outcome — failures included, which still fail
in Celery."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from brokers.models import BrokerAccount
from chains import store
from chains.book import stored_snapshot
from chains.models import ChainSnapshot
from chains.outcomes import REPOPULATE, REPOPULATE_FORCED
from chains.plan import plan_chains
from chains.tasks import repopulate_chains
from tests.celery_process import run_task, wait_for_log
from tests.sim_wiring import tracked_chain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_repopulate_task_fills_the_chain_from_rest_and_records_success(
    wired, celery_worker_process
):
    outcome = run_task(celery_worker_process, repopulate_chains, REPOPULATE, account="sim-upstox")
    assert outcome.ok is True, outcome.detail
    assert "legs from REST written" in outcome.detail
    snapshot = store.read_snapshot(*tracked_chain("sim-upstox"))
    assert snapshot["ready"] and snapshot["account"] == "sim-upstox"
    assert ChainSnapshot.objects.get(underlying="BANKNIFTY").seq == snapshot["seq"]


def test_forced_repopulate_task_records_under_its_own_name(wired, celery_worker_process):
    outcome = run_task(
        celery_worker_process, repopulate_chains, REPOPULATE_FORCED, account="sim-upstox",
        force=True,
    )  # fmt: skip
    assert outcome.ok is True, outcome.detail


def test_repopulate_task_keeps_a_snapshot_newer_than_its_fetch(wired, celery_worker_process):
    underlying, expiry = tracked_chain("sim-upstox")
    account = BrokerAccount.objects.get(name="sim-upstox")
    plan = next(p for p in plan_chains(account) if (p.underlying, p.expiry) == (underlying, expiry))
    book = plan.new_book()
    book.apply_spot_value(50_000.0, time.time())
    book.flush(datetime.now(UTC) + timedelta(minutes=5))  # a writer's flush after the fetch
    newer = stored_snapshot(book, account=account.name, broker=account.kind)
    store.sync_client().set(store.chain_key(underlying, expiry), store.dumps(newer))
    outcome = run_task(celery_worker_process, repopulate_chains, REPOPULATE, account="sim-upstox")
    assert outcome.ok is True, outcome.detail
    assert "kept the stored snapshot" in outcome.detail
    assert store.read_snapshot(underlying, expiry) == newer
    assert not ChainSnapshot.objects.exists()


def test_repopulate_task_failure_is_recorded_and_fails_in_celery(wired, celery_worker_process):
    wired.fault(action="revoke_token", broker="upstox")
    outcome = run_task(celery_worker_process, repopulate_chains, REPOPULATE, account="sim-upstox")
    assert outcome.ok is False
    assert outcome.detail.startswith("RepopulateFailed: 1 failure(s): sim-upstox BANKNIFTY")
    assert "log in again" in outcome.detail
    wait_for_log(celery_worker_process, "raised unexpected: RepopulateFailed")
    assert BrokerAccount.objects.get(name="sim-upstox").status == "token_expired"
