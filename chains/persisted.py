"""Chain snapshots persisted to the database: the last-known fallback pages serve when no live
data is in Redis. Written by both chain writers (the feed worker and the REST repopulate)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from django.db import transaction

from brokers.models import BrokerAccount

from .contracts import StoredSnapshot
from .models import ChainSnapshot


def save_snapshots(name: str, snapshots: Iterable[StoredSnapshot]) -> None:
    """Upsert each chain's persisted snapshot (one row per account, underlying and expiry).
    ValueError for a snapshot of a chain never flushed (it has no ``as_of``): nothing is saved."""
    account = BrokerAccount.objects.get(name=name)
    with transaction.atomic():
        for snap in snapshots:
            if snap["as_of"] is None:
                raise ValueError(
                    f"The chain {snap['underlying']} {snap['expiry']} was never flushed: only a "
                    "flushed chain (seq > 0) is saved."
                )
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
