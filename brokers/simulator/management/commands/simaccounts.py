"""python manage.py simaccounts --url http://HOST:PORT — wire the product to a running simulator.

Creates or updates the accounts ``sim-dhan`` and ``sim-upstox`` with the simulator's URLs and
(demo default) credentials, loads both instrument masters from it, and tracks NIFTY, BANKNIFTY,
FINNIFTY and SENSEX (two nearest expiries), each on one account (one writer per chain):
sim-dhan tracks NIFTY and SENSEX, sim-upstox BANKNIFTY and FINNIFTY.
Prints what changed, never a secret.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from brokers.endpoints import current_policy
from brokers.exceptions import InstrumentFileError, InstrumentLoadError
from brokers.loading import instruments_load, open_master
from brokers.masters import KeepFilter
from brokers.models import BrokerAccount, BrokerKind, Instrument, InstrumentKind, TrackedChain
from brokers.secret import Secret
from brokers.simulator.config import SimConfig

TRACKED = ("NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX")
# One writer per chain: each underlying is tracked by exactly one account.
TRACKED_BY = {"sim-dhan": ("NIFTY", "SENSEX"), "sim-upstox": ("BANKNIFTY", "FINNIFTY")}
EXPIRIES = 2
DEFAULTS = SimConfig()


class Command(BaseCommand):
    help = (
        "Create/update the accounts sim-dhan and sim-upstox for a running simulator, load its "
        "masters and track NIFTY, BANKNIFTY, FINNIFTY and SENSEX."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", required=True, help="The simulator, e.g. http://127.0.0.1:8800"
        )
        parser.add_argument("--dhan-client-id", default=DEFAULTS.dhan_client_id)
        parser.add_argument("--dhan-token", default=DEFAULTS.dhan_token)
        parser.add_argument("--upstox-api-key", default=DEFAULTS.upstox_api_key)
        parser.add_argument("--upstox-api-secret", default=DEFAULTS.upstox_api_secret)
        parser.add_argument("--upstox-token", default=DEFAULTS.upstox_token)
        parser.add_argument(
            "--skip-masters",
            action="store_true",
            help="Only the accounts (no master load, no chains).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base = options["url"].rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CommandError(f"--url must be http(s)://HOST:PORT of the simulator, got {base!r}")
        ws = "ws" + base[4:]
        dhan_urls = {
            "rest_base_url": f"{base}/dhan",
            "feed_base_url": f"{ws}/dhan/feed",
            "login_base_url": f"{base}/dhan",
            "master_url": f"{base}/dhan/api-data/api-scrip-master.csv",
        }
        upstox_urls = {
            "rest_base_url": f"{base}/upstox",
            "feed_base_url": f"{ws}/upstox/v3/feed/market-data-feed",
            "login_base_url": f"{base}/upstox",
            "master_url": f"{base}/upstox/market-quote/instruments/exchange/complete.json.gz",
        }
        self._check_allowed(dhan_urls)
        self._check_allowed(upstox_urls)
        self._check_simulator(base)
        dhan = self._account(
            "sim-dhan",
            BrokerKind.DHAN,  # type: ignore[arg-type]  # a TextChoices member is a str
            client_id=options["dhan_client_id"],
            token=options["dhan_token"],
            secret=None,
            urls=dhan_urls,
        )
        upstox = self._account(
            "sim-upstox",
            BrokerKind.UPSTOX,  # type: ignore[arg-type]  # a TextChoices member is a str
            client_id=options["upstox_api_key"],
            token=options["upstox_token"],
            secret=options["upstox_api_secret"],
            urls=upstox_urls,
        )
        if options["skip_masters"]:
            return
        for account in (dhan, upstox):
            self._load(account)
            self._track(account)
        self.stdout.write(self.style.SUCCESS(f"Accounts sim-dhan and sim-upstox use {base}."))

    def _check_allowed(self, urls: dict[str, str]) -> None:
        """CommandError unless the feed and the token check will use ``urls`` (the simulator
        must be on a host in BROKER_HOST_ALLOWLIST; over http only on loopback or in DEBUG)."""
        policy = current_policy()
        for field, value in urls.items():
            problem = policy.problem(value, field=field)
            if problem is not None:
                raise CommandError(
                    f"{problem} Run the simulator on 127.0.0.1 and keep 127.0.0.1 in "
                    "BROKER_HOST_ALLOWLIST. Nothing changed."
                )

    def _check_simulator(self, base: str) -> None:
        try:
            response = httpx.get(f"{base}/sim/state?instruments=0", timeout=10)
        except httpx.HTTPError as exc:
            raise CommandError(
                f"No simulator answers at {base} ({type(exc).__name__}): start it with "
                "'python manage.py runsim' and pass the address it prints."
            ) from None
        if response.status_code != 200:
            raise CommandError(
                f"{base}/sim/state answered HTTP {response.status_code}: is that the simulator?"
            )

    def _account(
        self,
        name: str,
        kind: str,
        *,
        client_id: str,
        token: str,
        secret: str | None,
        urls: dict[str, str],
    ) -> BrokerAccount:
        account = BrokerAccount.objects.filter(name=name).first()
        created = account is None
        if account is None:
            account = BrokerAccount(name=name, kind=kind)
        elif account.kind != kind:
            raise CommandError(
                f"Account {name!r} exists as {account.kind}, not {kind}: rename or delete it in "
                "admin → Broker accounts. Nothing changed."
            )
        changes = [field for field, value in urls.items() if getattr(account, field) != value]
        for field, value in urls.items():
            setattr(account, field, value)
        if changes and not created:
            # A changed endpoint removes the stored secrets (brokers.endpoints): set them again.
            account.save()
        if account.client_id != client_id:
            account.client_id = client_id
            changes.append("client id")
        if account.access_token != Secret(token):
            account.set_access_token(token)
            changes.append("access token")
        if secret is not None and account.api_secret != Secret(secret):
            account.api_secret = Secret(secret)
            changes.append("API secret")
        if not account.enabled:
            account.enabled = True
            changes.append("enabled")
        account.save()
        verb = (
            "created" if created else ("updated: " + ", ".join(changes) if changes else "unchanged")
        )
        self.stdout.write(f"{name}: account {verb}.")
        return account

    def _load(self, account: BrokerAccount) -> None:
        keep = KeepFilter(underlyings=frozenset(TRACKED))
        try:
            with open_master(path=None, url=account.master_url) as (stream, source):
                report = instruments_load(
                    account=account, stream=stream, source_name=source, keep=keep
                )
        except (InstrumentFileError, InstrumentLoadError) as exc:
            raise CommandError(f"{account.name}: loading the master failed: {exc}") from None
        self.stdout.write(report.summary_lines()[0])

    @transaction.atomic
    def _track(self, account: BrokerAccount) -> None:
        mine = TRACKED_BY[account.name]
        TrackedChain.objects.filter(account__name__in=TRACKED_BY, underlying__in=mine).exclude(
            account=account
        ).delete()
        for underlying in mine:
            index = Instrument.objects.filter(
                account=account, kind=InstrumentKind.INDEX, underlying=underlying
            ).first()
            if index is None:
                raise CommandError(
                    f"{account.name}: the simulator's master lists no {underlying} index: is "
                    f"{account.master_url} the simulator?"
                )
            TrackedChain.objects.update_or_create(
                account=account,
                underlying=underlying,
                defaults={"index_instrument": index, "expiries": EXPIRIES, "enabled": True},
            )
        self.stdout.write(f"{account.name}: tracking {', '.join(mine)} ({EXPIRIES} expiries).")
