"""Upstox login from admin against the simulator: OAuth state, code exchange, replay and
forgery refused, the token notifier, and tokens never in logs or pages."""

from __future__ import annotations

import io
import logging
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from brokers import upstox_login
from brokers.masters import IST
from brokers.models import AccountStatus, BrokerAccount

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("boss", "b@example.invalid", "pw-test-only")
    client.force_login(user)
    return client


@pytest.fixture
def account(sim):
    call_command("simaccounts", url=sim.url, skip_masters=True, stdout=io.StringIO())
    account = BrokerAccount.objects.get(name="sim-upstox")
    account.set_access_token("")
    account.save()
    return account


def approve_at_broker(dialog_url: str, *, decision: str = "approve") -> str:
    """Act as the person at Upstox's dialog; returns where the broker redirects to."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(dialog_url)
        assert page.status_code == 200, page.text
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)[1]
        base = f"{urlsplit(dialog_url).scheme}://{urlsplit(dialog_url).netloc}"
        answer = browser.post(base + action, data={"decision": decision})
        assert answer.status_code in (302, 303), answer.text
        return answer.headers["location"]


def callback_path(location: str) -> str:
    parts = urlsplit(location)
    assert parts.path == "/brokers/upstox/callback"
    return f"{parts.path}?{parts.query}"


def start(admin_client, account) -> str:
    response = admin_client.get(reverse("upstox-login", args=[account.pk]))
    assert response.status_code == 302
    return response["location"]


def test_login_stores_the_token_with_its_0330_expiry(admin_client, account, caplog):
    caplog.set_level(logging.DEBUG)
    dialog = start(admin_client, account)
    query = parse_qs(urlsplit(dialog).query)
    assert query["client_id"] == ["sim-upstox-key"]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/brokers/upstox/callback"]
    response = admin_client.get(callback_path(approve_at_broker(dialog)), follow=True)
    account.refresh_from_db()
    assert account.has_token and account.status == AccountStatus.OK
    assert account.upstox_user_id
    local = account.token_expires_at.astimezone(IST)
    assert (local.hour, local.minute) == (3, 30)
    page = response.content.decode()
    assert "Logged in to Upstox" in page
    token = account.access_token.reveal()
    assert token not in page and token not in caplog.text
    entry = LogEntry.objects.get(object_id=str(account.pk))
    assert entry.user.get_username() == "boss"
    assert entry.get_change_message().startswith("Logged in to Upstox (OAuth): stored a new")
    assert token not in entry.get_change_message()


def test_denied_login_changes_nothing(admin_client, account):
    dialog = start(admin_client, account)
    response = admin_client.get(
        callback_path(approve_at_broker(dialog, decision="deny")), follow=True
    )
    assert "was not approved" in response.content.decode()
    account.refresh_from_db()
    assert not account.has_token


def test_replayed_state_is_refused(admin_client, account):
    location = callback_path(approve_at_broker(start(admin_client, account)))
    admin_client.get(location)
    first = BrokerAccount.objects.get(pk=account.pk).access_token
    response = admin_client.get(location, follow=True)
    assert (
        "already completed or was started in another browser session" in response.content.decode()
    )
    assert BrokerAccount.objects.get(pk=account.pk).access_token == first


def test_reused_code_is_refused_and_nothing_stored(admin_client, account):
    location = callback_path(approve_at_broker(start(admin_client, account)))
    code = parse_qs(urlsplit(location).query)["code"][0]
    admin_client.get(location)  # the code is now used
    account.set_access_token("")
    account.save()
    # A fresh state in this session, carrying the used code:
    state = parse_qs(urlsplit(start(admin_client, account)).query)["state"][0]
    response = admin_client.get(f"/brokers/upstox/callback?code={code}&state={state}", follow=True)
    assert "Upstox refused the login" in response.content.decode()
    assert not BrokerAccount.objects.get(pk=account.pk).has_token


def test_forged_state_is_refused(admin_client, account):
    response = admin_client.get("/brokers/upstox/callback?code=x&state=forged.state", follow=True)
    assert "a state this site did not issue" in response.content.decode()


def test_state_from_another_session_is_refused(admin_client, client, account):
    location = callback_path(approve_at_broker(start(admin_client, account)))
    other = get_user_model().objects.create_superuser("other", "o@example.invalid", "pw-test")
    from django.test import Client

    intruder = Client()
    intruder.force_login(other)
    response = intruder.get(location, follow=True)
    assert "started in another browser session" in response.content.decode()
    assert not BrokerAccount.objects.get(pk=account.pk).has_token


def test_expired_state_is_refused(admin_client, account, monkeypatch):
    location = callback_path(approve_at_broker(start(admin_client, account)))
    monkeypatch.setattr(upstox_login, "STATE_MAX_AGE", -1)
    response = admin_client.get(location, follow=True)
    assert "longer than 10 minutes" in response.content.decode()
    assert not BrokerAccount.objects.get(pk=account.pk).has_token


def test_wrong_redirect_uri_is_refused(admin_client, account, settings):
    settings.PUBLIC_BASE_URL = "http://wrong.example:9999"
    dialog = start(admin_client, account)
    with httpx.Client(timeout=10) as browser:
        assert browser.get(dialog).status_code >= 400  # the broker refuses the dialog itself
    assert not BrokerAccount.objects.get(pk=account.pk).has_token


def test_login_needs_staff(client, account):
    response = client.get(reverse("upstox-login", args=[account.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["location"]


def test_account_page_shows_the_urls_to_register(admin_client, account):
    page = admin_client.get(reverse("admin:brokers_brokeraccount_change", args=[account.pk]))
    html = page.content.decode()
    assert "http://127.0.0.1:8000/brokers/upstox/callback" in html
    assert "Notifier URL for token requests: none yet" in html  # made by an admin action
    assert "Log in to Upstox" in html


# --- the v3 token request (its notifier: test_notifier.py) ---------------------------------------


def test_request_token_action_tells_where_to_approve(admin_client, account):
    account.rotate_notifier_secret()
    account.save()
    response = admin_client.post(
        reverse("admin:brokers_brokeraccount_changelist"),
        {"action": "request_upstox_token", "_selected_action": [account.pk]},
        follow=True,
    )
    assert "approve the token request in the Upstox app before" in response.content.decode()
