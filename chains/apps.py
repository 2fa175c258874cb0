from __future__ import annotations

from django.apps import AppConfig


class ChainsConfig(AppConfig):
    name = "chains"
    verbose_name = "Option chains"
    default_auto_field = "django.db.models.BigAutoField"
