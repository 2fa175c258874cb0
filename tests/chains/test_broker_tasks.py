"""The broker tasks in a real Celery worker against the simulator: token checks (renewal,
expiry, refusal) and the daily master refresh, each recording its outcome."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from brokers.models import AccountStatus, BrokerAccount, Instrument
from brokers.secret import Secret
from brokers.simulator.app import SimConfig
from chains.outcomes import CHECK_TOKENS, REFRESH_INSTRUMENTS
from chains.tasks import check_tokens, refresh_instruments
from tests.celery_process import run_task, wait_for_log
from tests.sim_wiring import wire

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def account(name: str) -> BrokerAccount:
    return BrokerAccount.objects.get(name=name)


def test_check_tokens_task_renews_a_dhan_token_near_expiry(sim, celery_worker_process):
    wire(sim)
    BrokerAccount.objects.filter(name="sim-dhan").update(
        token_expires_at=timezone.now() + timedelta(hours=1)
    )
    outcome = run_task(celery_worker_process, check_tokens, CHECK_TOKENS)
    assert outcome.ok is True, outcome.detail
    assert "sim-dhan: DhanHQ token renewed" in outcome.detail
    assert "sim-upstox: Upstox token accepted" in outcome.detail
    assert account("sim-dhan").access_token != Secret(SimConfig().dhan_token)
    assert account("sim-dhan").token_expires_at - timezone.now() > timedelta(hours=23)


def test_check_tokens_task_marks_an_expired_upstox_token_and_fails(sim, celery_worker_process):
    wire(sim)
    BrokerAccount.objects.filter(name="sim-upstox").update(
        token_expires_at=timezone.now() - timedelta(minutes=1)
    )
    outcome = run_task(celery_worker_process, check_tokens, CHECK_TOKENS)
    assert outcome.ok is False
    assert outcome.detail.startswith("TokenCheckFailed: 1 account(s) need attention")
    assert "an admin must log in again" in outcome.detail
    assert account("sim-upstox").status == AccountStatus.TOKEN_EXPIRED
    wait_for_log(celery_worker_process, "raised unexpected: TokenCheckFailed")


def test_check_tokens_task_records_a_token_the_broker_revoked(sim, celery_worker_process):
    wire(sim)
    sim.fault(action="revoke_token", broker="dhan")
    outcome = run_task(celery_worker_process, check_tokens, CHECK_TOKENS, account="sim-dhan")
    assert outcome.ok is False
    revoked = account("sim-dhan")
    assert revoked.status == AccountStatus.TOKEN_EXPIRED
    assert "DhanHQ rejected the access token" in revoked.last_error
    assert revoked.last_error in outcome.detail


def test_refresh_instruments_task_loads_every_master_from_the_simulator(sim, celery_worker_process):
    call_command("simaccounts", url=sim.url, skip_masters=True, stdout=io.StringIO())
    assert not Instrument.objects.exists()
    outcome = run_task(celery_worker_process, refresh_instruments, REFRESH_INSTRUMENTS)
    assert outcome.ok is True, outcome.detail
    for name in ("sim-dhan", "sim-upstox"):
        assert f"{name}: " in outcome.detail
        assert Instrument.objects.filter(account__name=name, kind="option").count() > 100


def test_refresh_instruments_task_failure_keeps_the_previous_master_and_is_recorded(
    sim, celery_worker_process
):
    wire(sim)
    before = Instrument.objects.filter(account__name="sim-dhan").count()
    BrokerAccount.objects.filter(name="sim-dhan").update(master_url=f"{sim.url}/dhan/missing.csv")
    outcome = run_task(celery_worker_process, refresh_instruments, REFRESH_INSTRUMENTS)
    assert outcome.ok is False
    assert "sim-dhan: Downloading the instrument master" in outcome.detail
    assert "HTTP 404" in outcome.detail and "previous master is unchanged" in outcome.detail
    assert "Loaded: sim-upstox" in outcome.detail
    assert Instrument.objects.filter(account__name="sim-dhan").count() == before
    wait_for_log(celery_worker_process, "raised unexpected: InstrumentRefreshFailed")
