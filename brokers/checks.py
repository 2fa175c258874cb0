"""System checks (``python manage.py check``; ``--database default`` for the account checks).

Ids: optionsite.E001… errors, optionsite.W001… warnings, brokers.E010… broker endpoints. Each
says what to do in its hint.
The account checks read the database, so they are tagged ``database``: Django runs them on
``check --database default`` and ``migrate``; ``runfeed`` runs them before it starts.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections

from .endpoints import SETTING as ALLOWLIST_SETTING
from .endpoints import account_url_problems, allowlist_problems
from .registry import REGISTRY, get_spec

ADMIN_ACCOUNTS = "admin → Broker accounts"


@register(Tags.compatibility)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E004: an in-memory channel layer cannot connect feed workers to web processes."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer") and not settings.DEBUG:
        return [
            Error(
                "The channel layer is in-memory while DJANGO_DEBUG is off.",
                hint="Live updates cross processes through Redis: unset CHANNEL_LAYER (or set it "
                "to 'redis') and point REDIS_URL at your Redis server.",
                id="optionsite.E004",
            )
        ]
    return []


def _migrated(alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        tables = connections[alias].introspection.table_names(cursor)
    return "brokers_brokeraccount" in tables and "brokers_trackedchain" in tables


@register(Tags.database)
def check_accounts(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W001 no enabled account · E001 missing credentials · W002 missing token · E002 no
    instruments for a tracked chain · E003 an underlying tracked by two accounts."""
    if not databases or "default" not in databases or not _migrated("default"):
        return []  # nothing to check before `migrate` has created the tables
    from .models import BrokerAccount, Instrument, InstrumentKind, TrackedChain

    messages: list[CheckMessage] = []
    accounts = list(BrokerAccount.objects.filter(enabled=True))
    if not accounts:
        messages.append(
            Warning(
                "No enabled broker account: no chain can be fed.",
                hint=f"Add one in {ADMIN_ACCOUNTS}, run `python manage.py syncaccounts "
                "--from-env`, or `python manage.py simaccounts` for the simulator.",
                id="optionsite.W001",
            )
        )
    for account in accounts:
        missing = account.missing_static_credentials()
        if missing:
            messages.append(
                Error(
                    f"Broker account '{account.name}' ({account.get_kind_display()}) is enabled "
                    f"but has no {' and no '.join(missing)}.",
                    hint=f"Enter the {' and '.join(missing)} in {ADMIN_ACCOUNTS} → "
                    f"{account.name}, or disable the account.",
                    obj=account,
                    id="optionsite.E001",
                )
            )
        if not account.has_token:
            how = get_spec(account.kind).token.how_to_get(admin=ADMIN_ACCOUNTS, name=account.name)
            messages.append(
                Warning(
                    f"Broker account '{account.name}' has no access token: its feed cannot start.",
                    hint=f"To get one, {how}.",
                    obj=account,
                    id="optionsite.W002",
                )
            )
    chains = TrackedChain.objects.filter(enabled=True, account__enabled=True).select_related(
        "account"
    )
    owners: dict[str, list[str]] = {}
    for chain in chains:
        owners.setdefault(chain.underlying, []).append(chain.account.name)
    for underlying, names in sorted(owners.items()):
        if len(names) > 1:
            messages.append(
                Error(
                    f"{underlying} is tracked by several enabled accounts ({', '.join(names)}): "
                    "each chain has one writer.",
                    hint=f"Disable all but one of the {underlying} chains in admin → Tracked "
                    "chains.",
                    id="optionsite.E003",
                )
            )
    for chain in chains:
        has_options = Instrument.objects.filter(
            account=chain.account, underlying=chain.underlying, kind=InstrumentKind.OPTION
        ).exists()
        if not has_options:
            messages.append(
                Error(
                    f"Tracked chain {chain.underlying} on account '{chain.account.name}' has no "
                    "option instruments.",
                    hint=f"Load the instrument master: python manage.py loadinstruments "
                    f"--account {chain.account.name} (or the admin action 'Load instrument "
                    "master').",
                    obj=chain,
                    id="optionsite.E002",
                )
            )
    return messages


@register(Tags.security)
def check_broker_host_allowlist(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """brokers.E011: a BROKER_HOST_ALLOWLIST entry that cannot mean a host."""
    problems = allowlist_problems(settings.BROKER_HOST_ALLOWLIST)
    if not problems:
        return []
    return [
        Error(
            f"{ALLOWLIST_SETTING} has entries that are not hosts: {'; '.join(problems)}.",
            hint=f"List exact host names or '.domain' entries in {ALLOWLIST_SETTING}, comma "
            "separated, e.g. '.dhan.co,.upstox.com'.",
            id="brokers.E011",
        )
    ]


@register(Tags.database, Tags.security)
def check_account_endpoints(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """brokers.E010: an account URL in use (any account, enabled or not) that the product
    refuses to send anything to: a host outside BROKER_HOST_ALLOWLIST, or http/ws outside
    DEBUG (brokers.endpoints). Catches URLs written to the database past admin."""
    if not databases or "default" not in databases or not _migrated("default"):
        return []
    from .models import BrokerAccount

    messages: list[CheckMessage] = []
    for account in BrokerAccount.objects.order_by("name"):
        if account.kind not in REGISTRY:
            continue  # the model's validation names an unknown kind
        for field, problem in account_url_problems(account, effective=True).items():
            messages.append(
                Error(
                    f"Broker account '{account.name}': {problem}",
                    hint=f"Correct {field} in {ADMIN_ACCOUNTS} → {account.name} (blank means "
                    f"the broker's real host), or add its host to {ALLOWLIST_SETTING} if it "
                    "really is your broker's. Until then nothing is sent to it.",
                    obj=account,
                    id="brokers.E010",
                )
            )
    return messages
