"""Login throttling (django-axes): failed logins on both login pages lock the client address and
the user name out for the cool-off, a clear page says when to retry, an admin can unlock."""

from __future__ import annotations

import io
import re

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "pw-test-only-right"
LIMIT = 5  # AXES_FAILURE_LIMIT's default
PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """A cheap hasher: these tests log in dozens of times (throttling does not depend on it)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def boss():
    return get_user_model().objects.create_superuser("boss", "b@example.invalid", PASSWORD)


def attempt(page: str, username: str, password: str, ip: str = "203.0.113.5", **headers: str):
    return Client().post(page, {"username": username, "password": password}, REMOTE_ADDR=ip,
                         **headers)  # fmt: skip


def logged_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.wsgi_request.session


def locked_out(response) -> bool:
    return response.status_code == 429 and "Too many failed logins" in response.content.decode()


@pytest.mark.parametrize("page", PAGES)
def test_failures_up_to_the_limit_lock_out_even_the_right_password(boss, page):
    for _ in range(LIMIT - 1):
        response = attempt(page, "boss", "wrong")
        assert response.status_code == 200  # the form again, with its error
    assert locked_out(attempt(page, "boss", "wrong"))  # the limit is reached
    response = attempt(page, "boss", PASSWORD)
    assert locked_out(response)
    assert not logged_in(response)


def test_the_lockout_page_says_when_to_retry_and_whom_to_ask(boss):
    for _ in range(LIMIT):
        response = attempt("/accounts/login/", "boss", "wrong")
    page = response.content.decode()
    assert re.search(r"Try again in\s+15 minutes", page)
    assert "ask an administrator" in page.lower()
    assert "axes_reset_username" in page
    assert "wrong" not in page  # the password tried is not echoed
    assert response["Content-Security-Policy"]  # a page of the site, with its headers


def test_a_user_name_is_locked_whatever_address_tries_it(boss):
    for n in range(LIMIT):
        attempt("/admin/login/", "boss", "wrong", ip=f"198.51.100.{n + 1}")
    response = attempt("/admin/login/", "boss", PASSWORD, ip="192.0.2.77")  # a fresh address
    assert locked_out(response) and not logged_in(response)


def test_an_address_is_locked_whatever_user_name_it_tries(boss):
    for n in range(LIMIT):
        attempt("/accounts/login/", f"guess{n}", "wrong", ip="203.0.113.9")
    assert locked_out(attempt("/accounts/login/", "boss", PASSWORD, ip="203.0.113.9"))
    assert logged_in(attempt("/accounts/login/", "boss", PASSWORD, ip="203.0.113.10"))


def test_x_forwarded_for_cannot_rotate_the_address_without_a_proxy(boss, settings):
    settings.CLIENT_IP_PROXY_COUNT = 0
    for n in range(LIMIT):
        attempt("/accounts/login/", f"guess{n}", "wrong", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")
    response = attempt("/accounts/login/", "boss", PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.200")
    assert locked_out(response)


def test_behind_a_proxy_the_address_it_saw_is_locked(boss, settings):
    settings.CLIENT_IP_PROXY_COUNT = 1
    for n in range(LIMIT):
        # The client puts any address first; the proxy appends the one it saw.
        attempt("/accounts/login/", f"guess{n}", "wrong", ip="10.0.0.2",
                HTTP_X_FORWARDED_FOR=f"1.1.1.{n}, 198.51.100.50")  # fmt: skip
    locked = attempt("/accounts/login/", "boss", PASSWORD, ip="10.0.0.2",
                     HTTP_X_FORWARDED_FOR="198.51.100.50")  # fmt: skip
    assert locked_out(locked)
    other = attempt("/accounts/login/", "boss", PASSWORD, ip="10.0.0.2",
                    HTTP_X_FORWARDED_FOR="198.51.100.51")  # fmt: skip
    assert logged_in(other)  # another client behind the same proxy


def test_a_success_below_the_limit_is_not_locked(boss):
    for _ in range(LIMIT - 1):
        attempt("/accounts/login/", "boss", "wrong")
    assert logged_in(attempt("/accounts/login/", "boss", PASSWORD))


def test_axes_reset_username_unlocks(boss):
    for n in range(LIMIT):
        attempt("/accounts/login/", "boss", "wrong", ip=f"198.51.100.{n + 1}")
    assert locked_out(attempt("/accounts/login/", "boss", PASSWORD, ip="192.0.2.1"))
    call_command("axes_reset_username", "boss", stdout=io.StringIO())
    assert logged_in(attempt("/accounts/login/", "boss", PASSWORD, ip="192.0.2.1"))


def test_an_admin_unlocks_by_deleting_the_access_attempt(boss):
    for _ in range(LIMIT):
        attempt("/accounts/login/", "boss", "wrong")
    assert locked_out(attempt("/accounts/login/", "boss", PASSWORD))
    admin = get_user_model().objects.create_superuser("other", "o@example.invalid", "pw-test-x")
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "boss" in listing.content.decode()
    pks = [str(pk) for pk in AccessAttempt.objects.values_list("pk", flat=True)]
    response = client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
    )
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert logged_in(attempt("/accounts/login/", "boss", PASSWORD))
