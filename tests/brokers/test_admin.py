"""Admin: secrets are write-only, the account list shows health at a glance."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from brokers.admin import token_expiry
from brokers.models import AccountStatus, BrokerAccount

from .factories import (
    FAKE_DHAN_TOKEN,
    FAKE_UPSTOX_SECRET,
    FAKE_UPSTOX_TOKEN,
    dhan_account,
    upstox_account,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.invalid", "pw-test-only")
    client.force_login(user)
    return client


def form_data(account: BrokerAccount, **overrides: object) -> dict:
    data = {
        "name": account.name,
        "kind": account.kind,
        "enabled": "on",
        "client_id": account.client_id,
        "token_expires_at_0": "",
        "token_expires_at_1": "",
        "rest_base_url": "",
        "feed_base_url": "",
        "login_base_url": "",
        "master_url": "",
        "new_access_token": "",
        "new_api_secret": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_saved_secrets_never_rendered_in_change_page(admin_client):
    account = upstox_account()
    html = admin_client.get(
        reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    ).content
    for secret in (FAKE_UPSTOX_SECRET, FAKE_UPSTOX_TOKEN):
        assert secret.encode() not in html
    assert b"gAAAAA" not in html  # nor their ciphertext
    assert b"access token: set" in html


def test_list_page_shows_status_without_secrets(admin_client):
    account = dhan_account()
    account.status = AccountStatus.AUTH_FAILED
    account.last_error = "DhanHQ rejected the access token"
    account.save()
    html = admin_client.get(reverse("admin:brokers_brokeraccount_changelist")).content.decode()
    assert "Authentication failed" in html
    assert "DhanHQ rejected the access token" in html
    assert FAKE_DHAN_TOKEN not in html


def test_blank_secret_field_keeps_the_stored_secret(admin_client):
    account = dhan_account()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    response = admin_client.post(url, form_data(account, client_id="1000000002"))
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.client_id == "1000000002"
    assert account.access_token.reveal() == FAKE_DHAN_TOKEN


def test_new_secret_replaces_and_is_not_echoed(admin_client):
    account = dhan_account()
    account.status = AccountStatus.TOKEN_EXPIRED
    account.save()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    response = admin_client.post(url, form_data(account, new_access_token="FAKE-NEW-TOKEN-2"))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.access_token.reveal() == "FAKE-NEW-TOKEN-2"
    assert account.status == AccountStatus.OK
    page = admin_client.get(url).content
    assert b"FAKE-NEW-TOKEN-2" not in page


def test_invalid_form_does_not_echo_the_typed_secret(admin_client):
    account = dhan_account()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    response = admin_client.post(
        url, form_data(account, name="", new_access_token="FAKE-TYPED-TOKEN-3")
    )
    assert response.status_code == 200  # form errors
    assert b"FAKE-TYPED-TOKEN-3" not in response.content
    account.refresh_from_db()
    assert account.access_token.reveal() == FAKE_DHAN_TOKEN


def test_clear_removes_the_secret(admin_client):
    account = upstox_account()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    admin_client.post(url, form_data(account, clear_access_token="on"))
    account.refresh_from_db()
    assert not account.has_token
    assert account.status == AccountStatus.TOKEN_MISSING
    assert account.api_secret.reveal() == FAKE_UPSTOX_SECRET


def test_new_and_clear_together_is_refused(admin_client):
    account = dhan_account()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    response = admin_client.post(
        url, form_data(account, new_access_token="FAKE-X", clear_access_token="on")
    )
    assert response.status_code == 200
    assert b"Either enter a new value or remove it" in response.content
    account.refresh_from_db()
    assert account.access_token.reveal() == FAKE_DHAN_TOKEN


def test_add_account_through_admin(admin_client):
    response = admin_client.post(
        reverse("admin:brokers_brokeraccount_add"),
        {
            "name": "fresh",
            "kind": "upstox",
            "enabled": "on",
            "client_id": "fake-key",
            "new_api_secret": "FAKE-ADDED-SECRET",
            "new_access_token": "",
            "token_expires_at_0": "",
            "token_expires_at_1": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    account = BrokerAccount.objects.get(name="fresh")
    assert account.api_secret.reveal() == "FAKE-ADDED-SECRET"
    assert account.status == AccountStatus.TOKEN_MISSING


def test_instrument_admin_is_searchable_and_filterable(admin_client):
    response = admin_client.get(
        reverse("admin:brokers_instrument_changelist"), {"q": "NIFTY", "kind": "option"}
    )
    assert response.status_code == 200


# --- a new token's expiry ---------------------------------------------------------------------


def fake_jwt(**claims: object) -> str:
    """A token shaped like DhanHQ's (a JWT) with ``claims``; the signature is not real."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'JWT', 'alg': 'HS512'})}.{part(claims)}.FAKE-SIGNATURE-test-only"


def posted_back(moment: datetime) -> dict[str, str]:
    """The expiry fields as the change form renders (and so posts back) ``moment``."""
    local = timezone.localtime(moment)
    return {"token_expires_at_0": local.strftime("%Y-%m-%d"),
            "token_expires_at_1": local.strftime("%H:%M:%S")}  # fmt: skip


@pytest.fixture
def expired_dhan():
    """A DhanHQ account whose stored expiry is its old token's, an hour ago."""
    account = dhan_account()
    account.token_expires_at = (timezone.now() - timedelta(hours=1)).replace(microsecond=0)
    account.status = AccountStatus.TOKEN_EXPIRED
    account.save()
    return account


def test_a_pasted_dhan_token_gets_the_expiry_of_its_own_jwt(admin_client, expired_dhan, caplog):
    exp = int((timezone.now() + timedelta(hours=24)).timestamp())
    token = fake_jwt(iss="dhan", dhanClientId="1000000001", exp=exp)
    url = reverse("admin:brokers_brokeraccount_change", args=[expired_dhan.pk])
    caplog.set_level(logging.DEBUG)
    data = form_data(expired_dhan, new_access_token=token,
                     **posted_back(expired_dhan.token_expires_at))  # fmt: skip
    assert admin_client.post(url, data).status_code == 302
    expired_dhan.refresh_from_db()
    assert expired_dhan.access_token.reveal() == token
    assert expired_dhan.token_expires_at == datetime.fromtimestamp(exp, UTC)
    assert expired_dhan.status == AccountStatus.OK
    assert token not in caplog.text and token.split(".")[1] not in caplog.text


def test_a_pasted_token_that_is_no_jwt_clears_the_old_expiry(admin_client, expired_dhan):
    url = reverse("admin:brokers_brokeraccount_change", args=[expired_dhan.pk])
    data = form_data(expired_dhan, new_access_token="FAKE-NOT-A-JWT",
                     **posted_back(expired_dhan.token_expires_at))  # fmt: skip
    assert admin_client.post(url, data).status_code == 302
    expired_dhan.refresh_from_db()
    assert expired_dhan.token_expires_at is None  # the next token check fills it in
    assert not expired_dhan.token_expired()


def test_an_expiry_typed_with_a_token_that_is_no_jwt_is_kept(admin_client, expired_dhan):
    typed = (timezone.now() + timedelta(hours=20)).replace(microsecond=0)
    url = reverse("admin:brokers_brokeraccount_change", args=[expired_dhan.pk])
    data = form_data(expired_dhan, new_access_token="FAKE-NOT-A-JWT", **posted_back(typed))
    assert admin_client.post(url, data).status_code == 302
    expired_dhan.refresh_from_db()
    assert expired_dhan.token_expires_at == typed


@pytest.mark.parametrize(
    "token",
    ["FAKE", "a.b", "a.b.c.d", "x.!!!.y", "x." + base64.urlsafe_b64encode(b"[1]").decode() + ".y",
     fake_jwt(sub="no exp"), fake_jwt(exp="tomorrow"), fake_jwt(exp=True), fake_jwt(exp=1e30)],
)  # fmt: skip
def test_token_expiry_is_none_for_anything_but_a_jwt_with_a_numeric_exp(token):
    assert token_expiry(token) is None


def test_token_expiry_reads_exp_without_checking_the_signature():
    assert token_expiry(fake_jwt(exp=1_900_000_000)) == datetime.fromtimestamp(1_900_000_000, UTC)


def test_changing_an_endpoint_removes_the_secrets_and_history_names_the_user(admin_client):
    from django.contrib.admin.models import LogEntry

    account = upstox_account()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    response = admin_client.post(
        url, form_data(account, rest_base_url="http://127.0.0.1:8800/upstox"), follow=True
    )
    assert response.status_code == 200
    account.refresh_from_db()
    assert account.rest_base_url == "http://127.0.0.1:8800/upstox"
    assert not account.access_token and not account.api_secret
    assert account.status == AccountStatus.TOKEN_MISSING
    shown = [str(m) for m in response.context["messages"]]
    assert any("must be entered again" in m and "Enter them again" in m for m in shown), shown
    entry = LogEntry.objects.filter(object_id=str(account.pk)).latest("action_time")
    assert entry.user.username == "boss"
    assert "Endpoint changed (rest_base_url)" in entry.get_change_message()
    assert "access token and API secret were removed" in entry.get_change_message()
    for secret in (FAKE_UPSTOX_SECRET, FAKE_UPSTOX_TOKEN):
        assert secret not in entry.change_message


def test_a_token_typed_with_the_endpoint_change_is_kept(admin_client):
    account = dhan_account()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    admin_client.post(
        url,
        form_data(
            account, feed_base_url="ws://127.0.0.1:8800/dhan/feed", new_access_token="FAKE-NEW-4"
        ),
    )
    account.refresh_from_db()
    assert account.access_token.reveal() == "FAKE-NEW-4"
    assert account.status == AccountStatus.OK


def test_a_foreign_endpoint_is_refused_by_the_form(admin_client):
    account = dhan_account()
    url = reverse("admin:brokers_brokeraccount_change", args=[account.pk])
    response = admin_client.post(url, form_data(account, rest_base_url="https://evil.example"))
    assert response.status_code == 200
    assert b"is not in BROKER_HOST_ALLOWLIST" in response.content
    account.refresh_from_db()
    assert account.rest_base_url == "" and account.access_token.reveal() == FAKE_DHAN_TOKEN


def test_an_account_with_a_refused_url_still_opens_in_admin(admin_client):
    account = dhan_account()
    BrokerAccount.objects.filter(pk=account.pk).update(master_url="https://evil.example/m.csv")
    page = admin_client.get(reverse("admin:brokers_brokeraccount_change", args=[account.pk]))
    assert page.status_code == 200
    assert b"Refused, not used" in page.content
