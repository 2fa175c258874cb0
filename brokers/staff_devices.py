"""Admin of staff's second factors (django-otp's TOTP and recovery-code devices).

A device's seed (and its QR code) and its recovery codes are a second factor: a staff user may
see and change their own devices, and only a superuser may see or change another user's — a
"view TOTP device" permission must not hand out the superuser's seed. django-otp's own admin
classes are kept (enrolment through the QR code still works); only their object permissions
are narrowed. Registered from ``brokers.admin``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice


def _own_or_superuser(request: HttpRequest, obj: Any) -> bool:
    return obj is None or request.user.is_superuser or obj.user_id == request.user.pk


class _OwnDevicesOnly:
    """Object permissions: a device is visible and changeable by its user or a superuser; the
    list shows a non-superuser their own devices only."""

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        return queryset.filter(user=request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed: bool = super().has_view_permission(request, obj)  # type: ignore[misc]
        return allowed and _own_or_superuser(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed: bool = super().has_change_permission(request, obj)  # type: ignore[misc]
        return allowed and _own_or_superuser(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed: bool = super().has_delete_permission(request, obj)  # type: ignore[misc]
        return allowed and _own_or_superuser(request, obj)


class OwnTOTPDeviceAdmin(_OwnDevicesOnly, TOTPDeviceAdmin):
    pass


class OwnStaticDeviceAdmin(_OwnDevicesOnly, StaticDeviceAdmin):
    pass


def register(site: admin.AdminSite) -> None:
    """Replace django-otp's device admins on ``site`` with the narrowed ones."""
    narrowed = ((TOTPDevice, OwnTOTPDeviceAdmin), (StaticDevice, OwnStaticDeviceAdmin))
    for model, model_admin in narrowed:
        if site.is_registered(model):
            site.unregister(model)
        site.register(model, model_admin)
