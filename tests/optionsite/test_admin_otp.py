"""Optional two-factor admin login (ADMIN_REQUIRE_OTP, django-otp TOTP)."""

from __future__ import annotations

import importlib

import pytest
from django.contrib import admin
from django.contrib.admin import AdminSite
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.admin import OTPAdminSite
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

PASSWORD = "pw-test-only-otp"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def otp_admin(monkeypatch):
    """Admin as ADMIN_REQUIRE_OTP=1 makes it (optionsite.urls), for this test only."""
    monkeypatch.setattr(admin.site, "__class__", OTPAdminSite)


@pytest.fixture
def boss():
    return get_user_model().objects.create_superuser("boss", "b@example.invalid", PASSWORD)


def code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def log_in(client: Client, **extra: str):
    return client.post(
        "/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD, **extra}
    )


def test_without_the_setting_admin_needs_only_the_password(boss):
    client = Client()
    assert log_in(client).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_the_setting_switches_admin_to_two_factor(settings):
    settings.ADMIN_REQUIRE_OTP = True
    import optionsite.urls

    try:
        importlib.reload(optionsite.urls)
        assert isinstance(admin.site, OTPAdminSite)
    finally:
        admin.site.__class__ = AdminSite


def test_a_password_alone_does_not_open_admin(otp_admin, boss):
    TOTPDevice.objects.create(user=boss, name="phone", confirmed=True)
    client = Client()
    response = log_in(client)
    assert response.status_code == 200  # the form again
    assert client.get("/admin/").status_code == 302  # still to the login page


def test_staff_without_a_device_cannot_open_admin(otp_admin, boss):
    client = Client()
    client.force_login(boss)  # e.g. logged in on /accounts/login/
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["location"]


def test_the_right_code_opens_admin_and_a_wrong_one_does_not(otp_admin, boss):
    device = TOTPDevice.objects.create(user=boss, name="phone", confirmed=True)
    wrong = f"{(int(code(device)) + 1) % 1_000_000:06d}"
    client = Client()
    assert log_in(client, otp_device=device.persistent_id, otp_token=wrong).status_code == 200
    assert client.get("/admin/").status_code == 302
    device.refresh_from_db()
    device.throttle_reset()  # django-otp slows a device down after a wrong code
    response = log_in(client, otp_device=device.persistent_id, otp_token=code(device))
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_the_device_admin_shows_its_qr_code(otp_admin, boss):
    device = TOTPDevice.objects.create(user=boss, name="phone", confirmed=True)
    client = Client()
    log_in(client, otp_device=device.persistent_id, otp_token=code(device))
    response = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/")
    assert response.status_code == 200 and response["Content-Type"].startswith("image/svg+xml")


def test_a_staff_user_allowed_to_view_devices_sees_only_their_own_seed(boss):
    """A "view TOTP device" permission does not hand out another user's second factor."""
    from django.contrib.auth.models import Permission
    from django_otp.plugins.otp_static.models import StaticDevice

    theirs = TOTPDevice.objects.create(user=boss, name="boss phone", confirmed=True)
    codes = StaticDevice.objects.create(user=boss, name="boss backup")
    clerk = get_user_model().objects.create_user("clerk", is_staff=True)
    for codename in ("view_totpdevice", "change_totpdevice", "view_staticdevice"):
        clerk.user_permissions.add(Permission.objects.get(codename=codename))
    own = TOTPDevice.objects.create(user=clerk, name="clerk phone", confirmed=True)
    client = Client()
    client.force_login(clerk)
    base = "/admin/otp_totp/totpdevice"
    for path in (f"{base}/{theirs.pk}/qrcode/", f"{base}/{theirs.pk}/config/"):
        assert client.get(path).status_code == 403, path
    assert client.get(f"{base}/{theirs.pk}/change/").status_code in (302, 403)
    assert theirs.key not in client.get(f"{base}/").content.decode()
    assert "boss phone" not in client.get(f"{base}/").content.decode()
    static = f"/admin/otp_static/staticdevice/{codes.pk}/change/"
    assert client.get(static).status_code in (302, 403)
    # Their own device stays theirs to enrol.
    assert client.get(f"{base}/{own.pk}/qrcode/").status_code == 200
