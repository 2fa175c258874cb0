"""syncaccounts --from-env: creates/updates accounts, says what changed, names what is missing."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from brokers.models import AccountStatus, BrokerAccount

pytestmark = pytest.mark.django_db
VARS = [
    "DHAN_CLIENT_ID",
    "DHAN_ACCESS_TOKEN",
    "DHAN_ACCOUNT_NAME",
    "UPSTOX_API_KEY",
    "UPSTOX_API_SECRET",
    "UPSTOX_ACCESS_TOKEN",
    "UPSTOX_ACCOUNT_NAME",
]


@pytest.fixture
def env(monkeypatch):
    for var in VARS:
        monkeypatch.delenv(var, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def sync() -> str:
    out = io.StringIO()
    call_command("syncaccounts", "--from-env", stdout=out)
    return out.getvalue()


def test_creates_both_accounts(env):
    env(
        DHAN_CLIENT_ID="1000000001",
        DHAN_ACCESS_TOKEN="FAKE-DHAN-ENV-TOKEN",
        UPSTOX_API_KEY="fake-key",
        UPSTOX_API_SECRET="FAKE-UPSTOX-ENV-SECRET",
        UPSTOX_ACCESS_TOKEN="FAKE-UPSTOX-ENV-TOKEN",
    )
    output = sync()
    dhan = BrokerAccount.objects.get(name="dhan")
    upstox = BrokerAccount.objects.get(name="upstox")
    assert dhan.access_token.reveal() == "FAKE-DHAN-ENV-TOKEN"
    assert dhan.status == AccountStatus.OK
    assert upstox.api_secret.reveal() == "FAKE-UPSTOX-ENV-SECRET"
    assert "dhan: account 'dhan' created with client id, access token." in output
    assert "upstox: account 'upstox' created with API key, api secret, access token." in output
    assert "FAKE-" not in output


def test_second_run_reports_only_changes(env):
    env(DHAN_CLIENT_ID="1000000001", DHAN_ACCESS_TOKEN="FAKE-1")
    sync()
    assert "account 'dhan' unchanged." in sync()
    env(DHAN_ACCESS_TOKEN="FAKE-2")
    assert "account 'dhan' updated: access token." in sync()
    assert BrokerAccount.objects.get(name="dhan").access_token.reveal() == "FAKE-2"


def test_missing_required_variable_is_named_and_nothing_changes(env):
    env(DHAN_CLIENT_ID="1000000001", DHAN_ACCESS_TOKEN="FAKE-1", UPSTOX_API_KEY="k")
    with pytest.raises(CommandError, match="upstox: UPSTOX_API_SECRET is not set"):
        sync()
    assert not BrokerAccount.objects.exists()


def test_missing_dhan_token_is_named(env):
    env(DHAN_CLIENT_ID="1000000001")
    with pytest.raises(CommandError, match="dhan: DHAN_ACCESS_TOKEN is not set"):
        sync()


def test_no_variables_at_all_is_an_error(env):
    with pytest.raises(CommandError, match="None of DHAN_CLIENT_ID"):
        sync()


def test_optional_upstox_token_missing_is_named(env):
    env(UPSTOX_API_KEY="k", UPSTOX_API_SECRET="FAKE-S")
    output = sync()
    assert "UPSTOX_ACCESS_TOKEN is not set: log in from admin" in output
    assert "dhan: skipped" in output
    assert BrokerAccount.objects.get(name="upstox").status == AccountStatus.TOKEN_MISSING


def test_account_name_clash_with_other_kind_is_refused(env):
    BrokerAccount.objects.create(name="dhan", kind="upstox")
    env(DHAN_CLIENT_ID="1", DHAN_ACCESS_TOKEN="FAKE")
    with pytest.raises(CommandError, match="exists as upstox"):
        sync()


def test_custom_account_name(env):
    env(DHAN_CLIENT_ID="1", DHAN_ACCESS_TOKEN="FAKE", DHAN_ACCOUNT_NAME="desk-a")
    sync()
    assert BrokerAccount.objects.filter(name="desk-a", kind="dhan").exists()
