"""URL configuration."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django_otp.admin import OTPAdminSite

from brokers import views as broker_views
from chains import status as chain_status
from chains import views as chain_views
from chains.metrics import views as chain_metrics

if settings.ADMIN_REQUIRE_OTP:
    # Admin asks for a one-time code after the password (the django-otp way of switching it on).
    admin.site.__class__ = OTPAdminSite

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path(
        "brokers/upstox/login/<int:account_id>/",
        broker_views.upstox_login_start,
        name="upstox-login",
    ),
    path("brokers/upstox/callback", broker_views.upstox_callback, name="upstox-callback"),
    path(
        "brokers/upstox/notifier/<str:secret>/",
        broker_views.upstox_notifier,
        name="upstox-notifier",
    ),
    path("", chain_views.index, name="index"),
    path("chains/<str:underlying>/", chain_views.chain_nearest, name="chain-nearest"),
    path("chains/<str:underlying>/<str:expiry>/", chain_views.chain_page, name="chain"),
    path("status/", chain_status.status_page, name="status"),
    path("api/v2/status", chain_status.status_api, name="api-status"),
    path("metrics", chain_metrics.metrics, name="metrics"),
]
