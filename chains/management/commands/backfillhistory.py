"""``python manage.py backfillhistory --account NAME --days N``: daily closes from the broker's
historical API, so IV rank has days before any live recording (``chains.history.backfill``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.exceptions import BrokerError, FeedConfigError
from chains.exceptions import BackfillError
from chains.history.backfill import backfill_history


class Command(BaseCommand):
    help = (
        "Write the daily closes (spot, ATM strike, ATM IV where the broker gives it) of the "
        "last N trading days of every chain an account tracks, from its broker's history."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="Broker account name.")
        parser.add_argument("--days", type=int, required=True, help="Trading days to fetch.")

    def handle(self, *args: Any, account: str, days: int, **options: Any) -> None:
        try:
            report = backfill_history(account=account, days=days)
        except (BackfillError, FeedConfigError) as exc:
            raise CommandError(str(exc)) from None
        except BrokerError as exc:
            raise CommandError(f"Backfill of {account!r} stopped: {exc.message}") from None
        for line in report.lines:
            self.stdout.write(line.text())
        for note in report.notes:
            self.stdout.write(f"Note: {note}")
        self.stdout.write(self.style.SUCCESS(f"{account}: {report.written} daily closes written."))
