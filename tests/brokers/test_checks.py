"""System checks name what is wrong and how to fix it."""

from __future__ import annotations

import io

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from brokers.models import BrokerAccount, Instrument, TrackedChain

from .factories import dhan_account, upstox_account

pytestmark = pytest.mark.django_db


def ids() -> dict[str, str]:
    return {m.id: m.msg for m in run_checks(databases=["default"]) if m.id.startswith("optionsite")}


def test_no_enabled_account_warns():
    BrokerAccount.objects.create(name="off", kind="dhan", client_id="1", enabled=False)
    assert "optionsite.W001" in ids()


def test_enabled_account_without_credentials_is_an_error():
    BrokerAccount.objects.create(name="bare", kind="upstox")
    found = ids()
    assert "optionsite.E001" in found
    assert "'bare'" in found["optionsite.E001"]
    assert "API key and no API secret" in found["optionsite.E001"]
    assert "optionsite.W002" in found  # and no token


def test_complete_account_passes():
    dhan_account()
    found = ids()
    assert not {"optionsite.W001", "optionsite.E001", "optionsite.W002"} & set(found)


def test_upstox_without_token_warns_to_log_in():
    upstox_account(token=False)
    messages = {m.id: m for m in run_checks(databases=["default"])}
    assert "Log in to Upstox" in messages["optionsite.W002"].hint


def test_tracked_chain_without_instruments_is_an_error():
    account = dhan_account()
    index = Instrument.objects.create(
        account=account, segment="IDX_I", broker_id="13", trading_symbol="NIFTY", kind="index",
        underlying="NIFTY", lot_size=1,
    )  # fmt: skip
    TrackedChain.objects.create(account=account, underlying="NIFTY", index_instrument=index)
    found = ids()
    assert "optionsite.E002" in found
    messages = {m.id: m for m in run_checks(databases=["default"])}
    assert "loadinstruments --account main" in messages["optionsite.E002"].hint


def test_database_checks_skip_without_database_flag():
    BrokerAccount.objects.create(name="bare", kind="upstox")
    assert not [m for m in run_checks() if m.id.startswith("optionsite.E001")]


def test_in_memory_channel_layer_outside_debug_is_an_error(settings):
    settings.DEBUG = False
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert "optionsite.E004" in {m.id for m in run_checks()}
    settings.DEBUG = True
    assert "optionsite.E004" not in {m.id for m in run_checks()}


def test_check_command_prints_the_hint():
    BrokerAccount.objects.create(name="bare", kind="dhan")
    with pytest.raises(SystemCheckError) as err:
        call_command("check", "--database", "default", stdout=io.StringIO())
    assert "optionsite.E001" in str(err.value)
    assert "HINT: Enter the client id in admin → Broker accounts → bare" in str(err.value)


def test_underlying_tracked_by_two_accounts_is_an_error():
    for name in ("a", "b"):
        account = dhan_account(name)
        index = Instrument.objects.create(
            account=account, segment="IDX_I", broker_id="13", trading_symbol="NIFTY",
            kind="index", underlying="NIFTY", lot_size=1,
        )  # fmt: skip
        TrackedChain.objects.create(account=account, underlying="NIFTY", index_instrument=index)
    found = ids()
    assert "optionsite.E003" in found
    assert "(a, b)" in found["optionsite.E003"]


def test_an_account_url_written_to_the_database_directly_is_an_error():
    dhan_account()
    BrokerAccount.objects.filter(name="main").update(rest_base_url="https://evil.example/v2")
    errors = [m for m in run_checks(databases=["default"]) if m.id == "brokers.E010"]
    assert len(errors) == 1
    assert errors[0].msg == (
        "Broker account 'main': rest_base_url host 'evil.example' is not in "
        "BROKER_HOST_ALLOWLIST: add it there if this is really your broker's host."
    )
    assert "admin → Broker accounts → main" in errors[0].hint


def test_plain_http_to_a_broker_outside_debug_is_an_error(settings):
    settings.DEBUG = False
    upstox_account("ux")
    BrokerAccount.objects.filter(name="ux").update(feed_base_url="ws://api.upstox.com/v3/feed")
    errors = [m.msg for m in run_checks(databases=["default"]) if m.id == "brokers.E010"]
    assert errors and "feed_base_url must use wss://" in errors[0]
    settings.DEBUG = True
    assert not [m for m in run_checks(databases=["default"]) if m.id == "brokers.E010"]


def test_the_real_hosts_and_the_simulator_pass_the_endpoint_check():
    dhan_account()
    upstox_account("sim", rest_base_url="http://127.0.0.1:8800/upstox")
    assert not [m for m in run_checks(databases=["default"]) if m.id == "brokers.E010"]


def test_a_wildcard_in_the_allowlist_is_an_error(settings):
    settings.BROKER_HOST_ALLOWLIST = [".dhan.co", "*"]
    errors = [m.msg for m in run_checks() if m.id == "brokers.E011"]
    assert errors and "there is no wildcard" in errors[0]
