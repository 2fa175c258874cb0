"""python manage.py loadinstruments --account NAME [--file PATH | --url URL]"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from brokers.exceptions import InstrumentFileError, InstrumentLoadError
from brokers.loading import counting, instruments_load, open_master
from brokers.masters import KINDS, KeepFilter
from brokers.models import BrokerAccount


class Command(BaseCommand):
    help = (
        "Replace an account's instruments with its broker's instrument master (all or nothing). "
        "Without --file/--url the account's master URL is downloaded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="Broker account name.")
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--file", type=Path, help="A local master file (.csv, .json, .json.gz)."
        )
        source.add_argument("--url", help="Download the master from this URL.")
        parser.add_argument(
            "--kinds",
            default=",".join(settings.INSTRUMENT_KINDS),
            help=f"Comma-separated kinds to keep ({', '.join(KINDS)}).",
        )
        parser.add_argument(
            "--underlyings",
            default=",".join(settings.INSTRUMENT_UNDERLYINGS),
            help="Comma-separated underlyings to keep (blank: every index).",
        )
        parser.add_argument("--no-progress", action="store_true", help="Never show a progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account = BrokerAccount.objects.get(name=options["account"])
        except BrokerAccount.DoesNotExist:
            names = ", ".join(BrokerAccount.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(
                f"No broker account named {options['account']!r} (accounts: {names}). Create it "
                "in admin → Broker accounts or with syncaccounts/simaccounts."
            ) from None
        try:
            keep = KeepFilter(
                kinds=frozenset(k.strip() for k in options["kinds"].split(",") if k.strip()),
                underlyings=frozenset(
                    u.strip().upper() for u in options["underlyings"].split(",") if u.strip()
                )
                or None,
            )
        except ValueError as exc:
            raise CommandError(f"--kinds: {exc}") from None
        path: Path | None = options["file"]
        url: str | None = options["url"]
        if path is None and url is None:
            try:  # the account's master URL must pass BROKER_HOST_ALLOWLIST
                url = account.effective_master_url()
            except InstrumentLoadError as exc:
                raise CommandError(str(exc)) from None
        show = not options["no_progress"] and sys.stderr.isatty()
        bar = tqdm(
            disable=not show, unit="B", unit_scale=True, desc="master", file=sys.stderr, leave=False
        )

        def downloading(done: int, total: int | None) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            with open_master(path=path, url=url, on_progress=downloading) as (stream, name):
                bar.reset(total=_size(stream))
                bar.set_description("parsing")
                report = instruments_load(
                    account=account,
                    stream=counting(stream, bar.update),
                    source_name=name,
                    keep=keep,
                )
        except InstrumentFileError as exc:
            raise CommandError(
                f"Rejected {path or url}: {exc}. The previous instruments of "
                f"'{account.name}' are unchanged."
            ) from None
        except InstrumentLoadError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        for line in report.summary_lines():
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"Loaded {report.kept} instruments."))


def _size(stream: Any) -> int | None:
    try:
        position = stream.tell()
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(position)
    except OSError:
        return None
    return size
