"""URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chains import views as chain_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", chain_views.index, name="index"),
]
