"""python manage.py syncaccounts --from-env — broker accounts from environment variables.

For headless deployments. Prints exactly what changed (never a secret's value).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from brokers.models import BrokerAccount, BrokerKind
from brokers.registry import get_spec
from brokers.secret import Secret


@dataclass(frozen=True)
class EnvAccount:
    kind: str
    name_var: str
    default_name: str
    client_id_var: str
    required_secrets: dict[str, str]  # env var → model field
    optional_secrets: dict[str, str]
    optional_note: str


SOURCES = [
    EnvAccount(
        kind=BrokerKind.DHAN,  # type: ignore[arg-type]  # a TextChoices member is a str
        name_var="DHAN_ACCOUNT_NAME",
        default_name="dhan",
        client_id_var="DHAN_CLIENT_ID",
        required_secrets={"DHAN_ACCESS_TOKEN": "access_token"},
        optional_secrets={},
        optional_note="",
    ),
    EnvAccount(
        kind=BrokerKind.UPSTOX,  # type: ignore[arg-type]  # a TextChoices member is a str
        name_var="UPSTOX_ACCOUNT_NAME",
        default_name="upstox",
        client_id_var="UPSTOX_API_KEY",
        required_secrets={"UPSTOX_API_SECRET": "api_secret"},
        optional_secrets={"UPSTOX_ACCESS_TOKEN": "access_token"},
        optional_note="log in from admin → Broker accounts → Log in to Upstox to get today's token",
    ),
]


class Command(BaseCommand):
    help = (
        "Create or update broker accounts from DHAN_CLIENT_ID, DHAN_ACCESS_TOKEN, UPSTOX_API_KEY, "
        "UPSTOX_API_SECRET and UPSTOX_ACCESS_TOKEN (account names: DHAN_ACCOUNT_NAME, "
        "UPSTOX_ACCOUNT_NAME; defaults 'dhan' and 'upstox')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from-env", action="store_true", required=True, help="Read the variables above."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        env = os.environ
        configured = [
            src
            for src in SOURCES
            if any(
                env.get(var)
                for var in [src.client_id_var, *src.required_secrets, *src.optional_secrets]
            )
        ]
        if not configured:
            names = ", ".join(
                var
                for src in SOURCES
                for var in [src.client_id_var, *src.required_secrets, *src.optional_secrets]
            )
            raise CommandError(f"None of {names} is set: nothing to sync.")
        problems = []
        for src in configured:
            missing = [v for v in [src.client_id_var, *src.required_secrets] if not env.get(v)]
            if missing:
                problems.append(
                    f"{src.kind}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                    "not set"
                )
        if problems:
            raise CommandError("Nothing changed. " + "; ".join(problems) + ".")
        with transaction.atomic():
            for src in configured:
                self._sync(src, env)
        for src in SOURCES:
            if src not in configured:
                self.stdout.write(
                    f"{src.kind}: skipped ({src.client_id_var} and its secrets are not set)."
                )

    def _sync(self, src: EnvAccount, env: os._Environ[str]) -> None:
        name = env.get(src.name_var) or src.default_name
        account = BrokerAccount.objects.filter(name=name).first()
        created = account is None
        if account is None:
            account = BrokerAccount(name=name, kind=src.kind)
        elif account.kind != src.kind:
            raise CommandError(
                f"Account {name!r} exists as {account.kind}, not {src.kind}: choose another name "
                f"with {src.name_var}. Nothing changed."
            )
        changes: list[str] = []
        client_id = env[src.client_id_var]
        if account.client_id != client_id:
            account.client_id = client_id
            changes.append(get_spec(src.kind).field_labels["client_id"])
        notes: list[str] = []
        for var, field in {**src.required_secrets, **src.optional_secrets}.items():
            value = env.get(var)
            if not value:
                notes.append(f"{var} is not set: {src.optional_note}")
                continue
            if getattr(account, field) == Secret(value):
                continue
            if field == "access_token":
                account.set_access_token(value)
            else:
                setattr(account, field, Secret(value))
            changes.append(field.replace("_", " "))
        if not account.enabled and created:
            account.enabled = True
        account.save()
        verb = "created" if created else "updated" if changes else "unchanged"
        detail = f": {', '.join(changes)}" if changes and not created else ""
        if created:
            detail = f" with {', '.join(changes)}"
        self.stdout.write(f"{src.kind}: account '{name}' {verb}{detail}.")
        for note in notes:
            self.stdout.write(self.style.WARNING(f"{src.kind}: {note}."))
