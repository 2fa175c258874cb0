"""python manage.py simaccounts --url http://HOST:PORT — wire the product to a running simulator.

Creates or updates the accounts ``sim-dhan`` and ``sim-upstox`` with the simulator's URLs and
(demo default) credentials, loads both instrument masters from it, and tracks every index the
simulator lists — NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY, SENSEX, BANKEX and SENSEX50 — with
every expiry its master lists, each underlying on one account (one writer per chain): sim-dhan
the NIFTY and BSE indices, sim-upstox BANKNIFTY, FINNIFTY and MIDCPNIFTY.

That stays within each broker's feed limits with the simulator's default universe (40 strikes
a side, 4 weeklies and 3 monthlies): DhanHQ takes 5,000 instruments per connection, Upstox
2,000 ``option_greeks`` keys per connection when ``ltpc`` (the indices) is mixed in. The
command counts the instruments each account will subscribe and refuses, saying what to change,
when they would not fit. Prints what changed, never a secret.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from brokers.endpoints import current_policy
from brokers.exceptions import InstrumentFileError, InstrumentLoadError
from brokers.exchange import expiry_moment
from brokers.loading import instruments_load, open_master
from brokers.masters import KeepFilter
from brokers.models import BrokerAccount, BrokerKind, Instrument, InstrumentKind, TrackedChain
from brokers.secret import Secret
from brokers.simulator.config import SimConfig
from brokers.simulator.dhan_feed import MAX_PER_CONNECTION as DHAN_PER_CONNECTION
from brokers.upstox.messages import MIXED_KEY_LIMITS

# One writer per chain: each underlying is tracked by exactly one account.
TRACKED_BY = {
    "sim-dhan": ("NIFTY", "SENSEX", "BANKEX", "SENSEX50"),
    "sim-upstox": ("BANKNIFTY", "FINNIFTY", "MIDCPNIFTY"),
}
TRACKED = tuple(u for underlyings in TRACKED_BY.values() for u in underlyings)
# What one feed connection of each account may subscribe (the product uses one per account).
CAPACITY = {"sim-dhan": DHAN_PER_CONNECTION, "sim-upstox": MIXED_KEY_LIMITS["option_greeks"]}
EVERY_EXPIRY = 1000  # TrackedChain.expiries: more than any master lists, so every one
DEFAULTS = SimConfig()


class Command(BaseCommand):
    help = (
        "Create/update the accounts sim-dhan and sim-upstox for a running simulator, load its "
        "masters and track every expiry of its indices (NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY, "
        "SENSEX, BANKEX, SENSEX50)."
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
        counts = {u: self._listed(account, u) for u in mine}
        instruments = sum(legs + 1 for _, legs in counts.values())  # each index too
        if instruments > CAPACITY[account.name]:
            raise CommandError(
                f"{account.name}: every expiry of {', '.join(mine)} is {instruments:,} "
                f"instruments, more than one feed connection takes "
                f"({CAPACITY[account.name]:,}): start the simulator with fewer strikes or "
                "expiries (runsim --strikes 30 --weeklies 2)."
            )
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
                defaults={"index_instrument": index, "expiries": EVERY_EXPIRY, "enabled": True},
            )
        listed = ", ".join(f"{u} ({n} expiries)" for u, (n, _) in counts.items())
        self.stdout.write(
            f"{account.name}: tracking every expiry of {listed}: {instruments:,} instruments "
            f"of the {CAPACITY[account.name]:,} one feed connection takes."
        )

    def _listed(self, account: BrokerAccount, underlying: str) -> tuple[int, int]:
        """(expiries, option legs) of ``underlying`` the loaded master lists unexpired."""
        now = timezone.now()
        listed = Instrument.objects.filter(
            account=account, underlying=underlying, kind=InstrumentKind.OPTION
        ).values_list("expiry", flat=True)
        expiries = {day for day in listed.distinct() if expiry_moment(day) > now}
        legs = Instrument.objects.filter(
            account=account, underlying=underlying, kind=InstrumentKind.OPTION, expiry__in=expiries
        ).count()
        return len(expiries), legs
