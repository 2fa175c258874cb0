"""Who may do what to a broker account: the Upstox OAuth start and callback and every account
action need the change permission; each of them, and the token check, leaves an admin history
entry naming a user."""

from __future__ import annotations

import io
from datetime import timedelta

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from brokers import tokens
from brokers.audit import SYSTEM_USERNAME
from brokers.models import BrokerAccount, Instrument, TokenRequest
from brokers.secret import Secret

from .factories import upstox_account
from .test_upstox_login import approve_at_broker, callback_path

STORED_TOKEN = "FAKE-STORED-TOKEN-test-only"
ACTIONS = ("load_instrument_master", "request_upstox_token", "rotate_notifier_url")


def staff(username: str, *codenames: str) -> Client:
    """A logged-in client of a staff user holding only the broker-account ``codenames``."""
    user = get_user_model().objects.create_user(username, is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def history(account: BrokerAccount) -> list[tuple[str, str]]:
    entries = LogEntry.objects.filter(object_id=str(account.pk)).order_by("action_time", "pk")
    return [(e.user.get_username(), e.get_change_message()) for e in entries]


@pytest.fixture
def account(sim, db):
    call_command("simaccounts", url=sim.url, skip_masters=True, stdout=io.StringIO())
    account = BrokerAccount.objects.get(name="sim-upstox")
    account.set_access_token(STORED_TOKEN)
    account.rotate_notifier_secret()
    account.save()
    return account


def token_of(account: BrokerAccount) -> Secret:
    return BrokerAccount.objects.get(pk=account.pk).access_token


@pytest.mark.django_db
@pytest.mark.integration
def test_staff_without_change_permission_cannot_start_the_upstox_login(account):
    for client in (staff("nobody"), staff("viewer", "view_brokeraccount")):
        response = client.get(reverse("upstox-login", args=[account.pk]))
        assert response.status_code == 403
        assert "'Can change broker account' permission" in response.content.decode()
    assert token_of(account) == Secret(STORED_TOKEN)


@pytest.mark.django_db
@pytest.mark.integration
def test_staff_without_change_permission_cannot_complete_the_upstox_login(account):
    editor = staff("editor", "view_brokeraccount", "change_brokeraccount")
    dialog = editor.get(reverse("upstox-login", args=[account.pk]))["location"]
    location = callback_path(approve_at_broker(dialog))
    # The permission is taken away before the login comes back (same session, same state):
    get_user_model().objects.get(username="editor").user_permissions.clear()
    response = editor.get(location)
    assert response.status_code == 403
    assert "'Can change broker account' permission" in response.content.decode()
    assert token_of(account) == Secret(STORED_TOKEN)
    # A staff user without it gets the same answer, whatever the state:
    assert staff("nobody").get(location).status_code == 403
    assert token_of(account) == Secret(STORED_TOKEN)


@pytest.mark.django_db
@pytest.mark.integration
def test_the_change_permission_is_enough_to_log_in_and_the_history_names_the_user(account):
    editor = staff("editor", "view_brokeraccount", "change_brokeraccount")
    dialog = editor.get(reverse("upstox-login", args=[account.pk]))["location"]
    response = editor.get(callback_path(approve_at_broker(dialog)))
    assert response.status_code == 302
    assert token_of(account) != Secret(STORED_TOKEN)
    assert ("editor", "Logged in to Upstox (OAuth)") in [
        (user, message[:27]) for user, message in history(account)
    ]


@pytest.mark.django_db
@pytest.mark.integration
def test_a_view_only_user_is_not_offered_the_account_actions(account):
    viewer = staff("viewer", "view_brokeraccount")
    page = viewer.get(reverse("admin:brokers_brokeraccount_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    for action in ACTIONS:
        assert f'value="{action}"' not in html
    change = viewer.get(reverse("admin:brokers_brokeraccount_change", args=[account.pk]))
    assert "Logging in needs the change permission on broker accounts" in change.content.decode()
    assert "Log in to Upstox</a>" not in change.content.decode()


@pytest.mark.django_db
@pytest.mark.integration
@pytest.mark.parametrize("action", ACTIONS)
def test_a_forged_action_post_by_a_view_only_user_is_refused(sim, account, action):
    viewer = staff("viewer", "view_brokeraccount")
    before = BrokerAccount.objects.get(pk=account.pk)
    viewer.post(
        reverse("admin:brokers_brokeraccount_changelist"),
        {"action": action, "_selected_action": [account.pk], "index": "0"},
    )
    viewer.post(
        reverse("admin:brokers_brokeraccount_changelist"),
        {"action": action, "_selected_action": [account.pk]},
    )
    after = BrokerAccount.objects.get(pk=account.pk)
    assert after.notifier_secret_hash == before.notifier_secret_hash
    assert after.updated_at == before.updated_at
    assert not Instrument.objects.filter(account=account).exists()
    assert not TokenRequest.objects.filter(account=account).exists()
    pending = httpx.get(f"{sim.url}/sim/token-requests", params={"format": "json"}).json()
    assert pending["pending"] == []  # the broker was not asked either
    assert history(account) == []


@pytest.mark.django_db
@pytest.mark.integration
def test_account_actions_write_history_naming_the_user(account):
    editor = staff("editor", "view_brokeraccount", "change_brokeraccount")
    changelist = reverse("admin:brokers_brokeraccount_changelist")
    for action in ("request_upstox_token", "load_instrument_master"):
        editor.post(changelist, {"action": action, "_selected_action": [account.pk]})
    assert TokenRequest.objects.get(account=account).requested_by.get_username() == "editor"
    messages = [message for user, message in history(account) if user == "editor"]
    assert any(m.startswith("Requested an Upstox token") for m in messages)
    assert any(m.startswith("Loaded the instrument master") for m in messages)
    assert Instrument.objects.filter(account=account).exists()


@pytest.mark.django_db
def test_a_token_expiry_found_by_the_check_is_in_history_as_the_system_user():
    account = upstox_account("ux", rest_base_url="http://127.0.0.1:9")  # nothing is called
    BrokerAccount.objects.filter(pk=account.pk).update(
        token_expires_at=timezone.now() - timedelta(minutes=5)
    )
    tokens.token_check("ux")
    ((user, message),) = history(account)
    assert user == SYSTEM_USERNAME
    assert message.startswith("Token check: status OK → Token expired: The Upstox access token")
    system = get_user_model().objects.get(username=SYSTEM_USERNAME)
    assert not system.is_active and not system.has_usable_password()
    tokens.token_check("ux")  # no change of status: no new entry
    assert len(history(account)) == 1


@pytest.mark.django_db
@pytest.mark.integration
def test_with_two_factor_required_the_upstox_login_needs_a_confirmed_code(account, settings):
    settings.ADMIN_REQUIRE_OTP = True
    editor = staff("editor", "view_brokeraccount", "change_brokeraccount")
    # Logged in with the password only: is_verified() is False, as admin would see it.
    response = editor.get(reverse("upstox-login", args=[account.pk]))
    assert response.status_code == 403
    response = editor.get(reverse("upstox-callback") + "?state=x&code=y")
    assert response.status_code == 403
    assert token_of(account) == Secret(STORED_TOKEN)


@pytest.mark.django_db
@pytest.mark.integration
def test_an_unreadable_api_secret_ends_the_upstox_login_with_a_message(account, settings):
    editor = staff("editor", "view_brokeraccount", "change_brokeraccount")
    dialog = editor.get(reverse("upstox-login", args=[account.pk]))["location"]
    location = callback_path(approve_at_broker(dialog))
    # The key that encrypted the API secret is no longer configured.
    settings.FIELD_ENCRYPTION_KEYS = ["ZmFrZS1yb3RhdGVkLWtleS1mb3ItdGVzdHMtb25seSE="]
    response = editor.get(location, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "FIELD_ENCRYPTION_KEY" in text
