"""Database reads and writes of the feed worker (synchronous; called via sync_to_async)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from chains.models import ChainSnapshot

from ..exceptions import FeedConfigError
from ..models import BrokerAccount
from .adapters import AccountConfig
from .plan import ChainPlan, load_account, plan_chains

__all__ = [
    "FeedConfigError",
    "account_config",
    "chain_plans",
    "config_of",
    "mark_account",
    "save_snapshots",
]


def account_config(name: str) -> AccountConfig:
    """The account's feed settings; FeedConfigError when it cannot feed (says what to do)."""
    return config_of(load_account(name))


def config_of(account: BrokerAccount) -> AccountConfig:
    """What an adapter needs from ``account`` (already checked by ``load_account``)."""
    return AccountConfig(
        name=account.name,
        kind=account.kind,
        client_id=account.client_id,
        access_token=account.access_token,
        rest_base_url=account.effective_rest_base_url(),
        feed_base_url=account.effective_feed_base_url(),
    )


def chain_plans(name: str) -> list[ChainPlan]:
    return plan_chains(load_account(name))


def mark_account(name: str, status: str, message: str) -> None:
    """Record a broker refusal on the account (shown in admin and on the status page)."""
    BrokerAccount.objects.filter(name=name).update(
        status=status, last_error=message[:2000], last_checked_at=timezone.now()
    )


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
