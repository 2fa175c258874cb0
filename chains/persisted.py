"""Chain snapshots persisted to the database: the last-known fallback pages serve when no live
data is in Redis. Written by both chain writers (the feed worker and the REST repopulate)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import transaction

from brokers.models import BrokerAccount

from .models import ChainSnapshot


def save_snapshots(name: str, snapshots: list[dict[str, Any]]) -> None:
    """Upsert each chain's persisted snapshot (one row per account, underlying and expiry)."""
    account = BrokerAccount.objects.get(name=name)
    with transaction.atomic():
        for snap in snapshots:
            ChainSnapshot.objects.update_or_create(
                account=account,
                underlying=snap["underlying"],
                expiry=date.fromisoformat(snap["expiry"]),
                defaults={
                    "seq": snap["seq"],
                    "as_of": datetime.fromisoformat(snap["as_of"]),
                    "data": snap,
                },
            )
