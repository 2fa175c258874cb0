from __future__ import annotations

from django.apps import AppConfig


class ChainsConfig(AppConfig):
    name = "chains"
    verbose_name = "Option chains"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import sessions

        sessions.connect_signals()  # a saved or deleted user's cached login state is dropped
