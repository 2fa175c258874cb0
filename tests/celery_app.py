"""The Celery app the test worker runs: the product's app, plus one test-only hook.

The task tests flush the test database between tests; the flush re-creates the content types
with new ids. A worker that lives through several tests must not keep the ids it cached from an
earlier test (admin history entries reference them: a stale id breaks the foreign key). A
production database keeps its content types, so the product's app needs no such hook.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_prerun

from optionsite.celery import app

__all__ = ["app"]


@task_prerun.connect
def forget_content_type_ids(**_: Any) -> None:
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()
