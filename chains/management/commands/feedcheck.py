"""python manage.py feedcheck [--account NAME ...] — where does the live pipeline break?"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.accounts import enabled_account_names
from brokers.exceptions import FeedConfigError
from chains.feed.check import STAGES, FeedCheck, StageResult


class Command(BaseCommand):
    help = (
        "Walk each account's live pipeline stage by stage — credentials, token, feed "
        "connection, subscription, frames, decoding, the running feed worker's chains, "
        "publishing, a consumer receiving — printing ✓/✗ per stage and what to do at the first "
        "failure. Exits 0 only when every stage of every account passes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            action="append",
            dest="accounts",
            metavar="NAME",
            help="Check this account (repeatable); default: every enabled account.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            help="Seconds to wait for the first frame and for a delta (default 10).",
        )
        parser.add_argument(
            "--window",
            type=float,
            default=2.0,
            help="Seconds of frames to decode after the first one (default 2).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] <= 0 or options["window"] <= 0:
            raise CommandError("--timeout and --window must be positive numbers of seconds.")
        try:
            names = options["accounts"] or enabled_account_names()
        except FeedConfigError as exc:
            raise CommandError(str(exc)) from None
        layer = get_channel_layer()
        if layer is None:
            raise CommandError("No channel layer: CHANNEL_LAYERS is not configured.")
        failed = []
        for name in names:
            self.stdout.write(f"feedcheck {name}")
            check = FeedCheck(
                name,
                layer=layer,
                report=self._line,
                timeout=options["timeout"],
                window=options["window"],
            )
            results = check.run()
            for stage in STAGES[len(results) :]:
                self.stdout.write(f"  · {stage}: not checked")
            if check.passed:
                self.stdout.write(self.style.SUCCESS(f"{name}: all {len(STAGES)} stages passed."))
            else:
                failed.append(f"{name} at '{results[-1].stage}'")
        if failed:
            raise CommandError(f"feedcheck failed: {', '.join(failed)}.")

    def _line(self, result: StageResult) -> None:
        if result.ok:
            self.stdout.write(f"  ✓ {result.stage}: {result.detail}")
            return
        self.stdout.write(self.style.ERROR(f"  ✗ {result.stage}: {result.detail}"))
        if result.fix:
            self.stdout.write(f"    → {result.fix}")
