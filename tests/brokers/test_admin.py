"""Admin: secrets are write-only, the account list shows health at a glance."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

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
