"""The Celery application: Redis broker, tasks discovered in the apps (see settings)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optionsite.settings")

app = Celery("optionsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def keep_the_sites_logging(**_: Any) -> None:
    """Celery configures no logging of its own: with a receiver here it adds no handlers (its
    task logger's would not redact secrets). Django's setup in the worker has already applied
    settings.LOGGING (brokers.logredact: every handler redacts; LOG_LEVEL sets the level)."""
