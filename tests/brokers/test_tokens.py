"""The token check against the simulator's real REST: validation, DhanHQ renewal before expiry,
Upstox expiry at 03:30, and every failure stored on the account with what to do."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from brokers import tokens
from brokers.dhan.rest import DhanRestClient
from brokers.exceptions import BrokerError, TokenCheckFailed
from brokers.models import AccountStatus, BrokerAccount
from brokers.secret import Secret
from brokers.simulator.app import SimConfig
from chains.outcomes import Outcome
from tests.brokers.factories import dhan_account, upstox_account

pytestmark = [pytest.mark.django_db]
DEMO = SimConfig()


def account(name: str) -> BrokerAccount:
    return BrokerAccount.objects.get(name=name)


def expires_in(name: str, delta: timedelta) -> None:
    BrokerAccount.objects.filter(name=name).update(token_expires_at=timezone.now() + delta)


# --- without a broker ----------------------------------------------------------------------------


def test_an_upstox_token_past_0330_is_marked_expired_without_asking_the_broker():
    upstox_account("ux", rest_base_url="http://127.0.0.1:9")  # nothing listens: no call made
    expires_in("ux", -timedelta(minutes=5))
    verdict = tokens.token_check("ux")
    assert not verdict.ok
    ux = account("ux")
    assert ux.status == AccountStatus.TOKEN_EXPIRED
    assert "an admin must log in again" in ux.last_error
    assert "Log in to Upstox" in ux.last_error and ux.last_checked_at is not None


def test_an_account_without_token_is_marked_missing_saying_what_to_do():
    main = dhan_account("main")
    main.set_access_token("")
    main.save()
    assert not tokens.token_check("main").ok
    assert account("main").status == AccountStatus.TOKEN_MISSING
    assert "paste the DhanHQ access token in admin" in account("main").last_error


def test_an_unknown_account_is_reported_not_invented():
    verdict = tokens.token_check("ghost")
    assert not verdict.ok and "No broker account named 'ghost'" in verdict.line
    assert not BrokerAccount.objects.exists()


def test_a_token_replaced_during_the_check_is_left_for_the_next_check():
    main = dhan_account("main")
    checked = main.access_token
    main.set_access_token("FAKE-NEWER-TOKEN-test-only")
    main.save()
    verdict = tokens._record(
        "main", checked, timezone.now(), False, status=AccountStatus.TOKEN_EXPIRED, error="old"
    )
    assert verdict.ok and "replaced during the check" in verdict.line
    assert account("main").status == AccountStatus.OK
    assert account("main").access_token == Secret("FAKE-NEWER-TOKEN-test-only")


# --- against the simulator -----------------------------------------------------------------------


@pytest.mark.integration
def test_a_dhan_token_near_its_expiry_is_renewed_and_stored(wired):
    expires_in("sim-dhan", timedelta(hours=1))
    verdict = tokens.token_check("sim-dhan")
    assert verdict.ok and "renewed" in verdict.line
    renewed = account("sim-dhan")
    assert renewed.access_token != Secret(DEMO.dhan_token)
    assert renewed.status == AccountStatus.OK and renewed.last_error == ""
    left = renewed.token_expires_at - timezone.now()
    assert timedelta(hours=23) < left <= timedelta(hours=24)
    assert tokens.token_check("sim-dhan").ok  # the new token works
    assert "renewed" not in tokens.token_check("sim-dhan").line  # and is not renewed again


@pytest.mark.integration
def test_a_dhan_token_far_from_expiry_is_kept_and_its_validity_learnt(wired):
    verdict = tokens.token_check("sim-dhan")
    assert verdict.ok and "accepted, valid until" in verdict.line
    checked = account("sim-dhan")
    assert checked.access_token == Secret(DEMO.dhan_token)
    assert checked.token_expires_at - timezone.now() > timedelta(hours=23)


@pytest.mark.integration
def test_an_upstox_token_the_broker_accepts_is_ok(wired):
    assert tokens.token_check("sim-upstox").ok
    assert account("sim-upstox").status == AccountStatus.OK


@pytest.mark.integration
def test_an_expired_dhan_token_is_marked_with_the_brokers_message(wired):
    wired.fault(action="expire_token", broker="dhan")
    assert not tokens.token_check("sim-dhan").ok
    expired = account("sim-dhan")
    assert expired.status == AccountStatus.TOKEN_EXPIRED
    assert "paste a new token in admin" in expired.last_error
    assert "DhanHQ said" in expired.last_error


@pytest.mark.integration
def test_a_revoked_upstox_token_is_marked_expired_saying_log_in_again(wired):
    wired.fault(action="revoke_token", broker="upstox")
    assert not tokens.token_check("sim-upstox").ok
    assert account("sim-upstox").status == AccountStatus.TOKEN_EXPIRED
    assert "log in again" in account("sim-upstox").last_error


@pytest.mark.integration
def test_a_transient_failure_keeps_the_status_and_records_the_error(wired):
    wired.fault(action="rest_error", broker="upstox", status=503, seconds=60)
    assert not tokens.token_check("sim-upstox").ok
    failed = account("sim-upstox")
    assert failed.status == AccountStatus.OK
    assert "retried at the next check" in failed.last_error
    assert failed.last_checked_at is not None


@pytest.mark.integration
def test_a_failed_renewal_shows_what_to_do_and_keeps_the_working_token(wired):
    expires_in("sim-dhan", timedelta(minutes=30))
    refusal = BrokerError("DhanHQ is busy", broker="dhan", permanent=False, code="DH-908")
    with mock.patch.object(DhanRestClient, "renew_token", autospec=True, side_effect=refusal):
        verdict = tokens.token_check("sim-dhan")
    assert not verdict.ok
    failed = account("sim-dhan")
    assert failed.status == AccountStatus.ERROR
    assert "Renewing the DhanHQ access token of 'sim-dhan' failed" in failed.last_error
    assert "paste a new token in admin → Broker accounts → sim-dhan before then" in (
        failed.last_error
    )
    assert failed.access_token == Secret(DEMO.dhan_token)


@pytest.mark.integration
def test_the_check_names_every_account_that_needs_attention(wired):
    wired.fault(action="revoke_token", broker="upstox")
    outcome = Outcome()
    with pytest.raises(TokenCheckFailed, match="1 account") as failed:
        tokens.tokens_check(outcome=outcome)
    assert "sim-upstox" in str(failed.value) and "sim-dhan" not in str(failed.value)
    assert "sim-dhan: DhanHQ token accepted" in outcome.detail


def test_a_disabled_account_named_explicitly_is_reported_and_left_alone():
    main = dhan_account("main", enabled=False)
    verdict = tokens.token_check("main")
    assert not verdict.ok and "is disabled: enable it" in verdict.line
    assert account("main").status == main.status and account("main").last_checked_at is None
