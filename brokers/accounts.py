"""Broker accounts as the processes that use them read them (synchronous Django code; async
callers go through ``sync_to_async``). Every problem a person must fix raises
``FeedConfigError`` with a message that says what to do."""

from __future__ import annotations

from django.utils import timezone

from .adapters import AccountConfig
from .endpoints import current_policy
from .exceptions import EndpointRefused, FeedConfigError
from .fields import unreadable_secrets
from .models import BrokerAccount
from .registry import ERROR, get_spec

ADMIN = "admin → Broker accounts"

__all__ = [
    "ADMIN",
    "FeedConfigError",
    "account_config",
    "config_of",
    "enabled_account_names",
    "load_account",
    "mark_account",
]


def load_account(name: str) -> BrokerAccount:
    """The enabled account ``name`` with its credentials present and its REST and feed URLs
    allowed (brokers.endpoints: a refused URL also marks the account ``error``);
    FeedConfigError otherwise."""
    try:
        account = BrokerAccount.objects.get(name=name)
    except BrokerAccount.DoesNotExist:
        known = ", ".join(BrokerAccount.objects.values_list("name", flat=True)) or "none"
        raise FeedConfigError(
            f"No broker account named {name!r} (accounts: {known}). Add it in {ADMIN}."
        ) from None
    if not account.enabled:
        raise FeedConfigError(f"Broker account {name!r} is disabled: enable it in {ADMIN}.")
    missing = account.missing_static_credentials()
    if missing:
        raise FeedConfigError(
            f"Broker account {name!r} has no {' and no '.join(missing)}: enter "
            f"{' and '.join(missing)} in {ADMIN} → {name}."
        )
    if not account.has_token:
        how = get_spec(account.kind).token.how_to_get(admin=ADMIN, name=name)
        raise FeedConfigError(f"Broker account {name!r} has no access token: {how}.")
    unreadable = unreadable_secrets(account)  # a key left out of FIELD_ENCRYPTION_KEY
    if unreadable:
        raise FeedConfigError(" ".join(unreadable))
    try:  # the URLs the feed, token check and REST send the token to (brokers.endpoints)
        account.effective_rest_base_url()
        account.effective_feed_base_url()
    except EndpointRefused as exc:
        message = f"Broker account {name!r} is not used: {exc.message}"
        if (account.status, account.last_error) != (ERROR, message):
            mark_account(name, ERROR, message)
        raise FeedConfigError(message) from None
    return account


def enabled_account_names() -> list[str]:
    """Every enabled account's name; FeedConfigError when there is none."""
    names = list(BrokerAccount.objects.filter(enabled=True).values_list("name", flat=True))
    if not names:
        raise FeedConfigError(
            f"No enabled broker account. Add one in {ADMIN}, or run `python manage.py "
            "syncaccounts --from-env` (or `simaccounts` for the simulator)."
        )
    return names


def account_config(name: str) -> AccountConfig:
    """The account's feed settings; FeedConfigError when it cannot feed (says what to do)."""
    return config_of(load_account(name))


def config_of(account: BrokerAccount) -> AccountConfig:
    """What an adapter needs from ``account`` (already checked by ``load_account``); raises
    EndpointRefused when its REST or feed URL is refused (brokers.endpoints)."""
    return AccountConfig(
        name=account.name,
        kind=account.kind,
        client_id=account.client_id,
        access_token=account.access_token,
        rest_base_url=account.effective_rest_base_url(),
        feed_base_url=account.effective_feed_base_url(),
        endpoints=current_policy(),
    )


def mark_account(name: str, status: str, message: str) -> None:
    """Record a broker refusal on the account (shown in admin and on the status page)."""
    BrokerAccount.objects.filter(name=name).update(
        status=status, last_error=message[:2000], last_checked_at=timezone.now()
    )
