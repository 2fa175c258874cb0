"""python manage.py runsim — the local exchange simulator (both brokers' protocols, one port).

Runs until Ctrl-C or SIGTERM. Prints every address; the first line is
``Exchange simulator listening on http://HOST:PORT`` (with ``--port 0`` the port is the one the
system picked), which scripts and the test fixture read.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import fields
from datetime import date, datetime, time
from typing import Any

from aiohttp import web
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.exchange import IST
from brokers.simulator.app import build_app
from brokers.simulator.config import SimConfig

DEFAULTS = SimConfig()
HOLIDAY_NAME = "Simulated trading holiday"
MAX_SPEED = 3600.0  # a simulated hour per second; faster leaves too few events per minute


def _start(raw: str | None, day: date | None) -> datetime | None:
    """The clock's start from ``--start`` and ``--date`` (None: now); CommandError says what
    the flags accept."""
    if raw is None:
        if day is not None:
            raise CommandError("--date needs --start HH:MM, e.g. --start 09:15 --date 2026-03-02")
        return None
    if ":" in raw and len(raw) <= 8:
        try:
            clock = time.fromisoformat(raw)
        except ValueError:
            raise CommandError(f"--start {raw!r}: give HH:MM or HH:MM:SS, e.g. 09:15") from None
        on = day if day is not None else datetime.now(IST).date()
        return datetime.combine(on, clock, tzinfo=IST)
    if day is not None:
        raise CommandError("--date goes with --start HH:MM, not with a full ISO --start")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise CommandError(
            f"--start {raw!r}: give HH:MM[:SS] (IST) or an ISO time with its UTC offset, "
            "e.g. 2026-01-05T10:00:00+05:30"
        )
    return moment


def _catch_up_to(raw: str | None, start: datetime | None, speed: float) -> datetime | None:
    """The end of the catch-up from ``--catch-up-to HH:MM[:SS]`` (IST, on the start's day;
    None: no catch-up); CommandError says what the flag needs."""
    if raw is None:
        return None
    if start is None:
        raise CommandError(
            "--catch-up-to needs --start, e.g. --start 09:15 --catch-up-to 11:00 --speed 60"
        )
    try:
        clock = time.fromisoformat(raw)
    except ValueError:
        clock = None
    if clock is None or clock.tzinfo is not None or len(raw) > 8:
        raise CommandError(f"--catch-up-to {raw!r}: give HH:MM or HH:MM:SS (IST), e.g. 11:00")
    local = start.astimezone(IST)
    until = datetime.combine(local.date(), clock, tzinfo=IST)
    if until <= local:
        raise CommandError(
            f"--catch-up-to {raw} is not after the start ({local:%H:%M:%S} IST): give a later "
            "time of the start's day"
        )
    if not speed > 1:
        raise CommandError(
            "--catch-up-to needs --speed above 1: the speed of the catch-up, e.g. --speed 60"
        )
    return until


class Command(BaseCommand):
    help = (
        "Run the exchange simulator: DhanHQ and Upstox REST, feeds, masters and the /sim control "
        "API on one port. Demo credentials are the flag defaults."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        d = DEFAULTS
        parser.add_argument("--host", default=d.host)
        parser.add_argument("--port", type=int, default=d.port, help="0 picks a free port.")
        parser.add_argument("--seed", type=int, default=d.seed, help="Market RNG seed.")
        parser.add_argument(
            "--ticks-per-second",
            type=int,
            default=d.ticks_per_second,
            help="Market events per second in total (0: only on POST /sim/step).",
        )
        parser.add_argument(
            "--strikes", type=int, default=d.strikes, help="Strikes on each side of ATM."
        )
        parser.add_argument("--weeklies", type=int, default=d.weeklies)
        parser.add_argument("--monthlies", type=int, default=d.monthlies)
        parser.add_argument(
            "--ping-interval",
            type=float,
            default=d.ping_interval,
            help="Seconds between the feeds' WebSocket pings.",
        )
        parser.add_argument(
            "--start",
            default=None,
            metavar="HH:MM[:SS] | ISO",
            help="The simulated exchange clock's start: a time of day in IST (on --date, "
            "default today in IST) or an ISO time with its offset; default now. With --seed "
            "it makes runs reproducible: the same seed and start give the same market at the "
            "same simulated times.",
        )
        parser.add_argument(
            "--date",
            type=date.fromisoformat,
            default=None,
            metavar="YYYY-MM-DD",
            help="The simulated day of --start HH:MM (IST).",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=d.speed,
            help="Simulated seconds per real second (default 1: real time; 60: a simulated "
            "minute per second). The market's events, session and every exchange timestamp "
            "follow the simulated clock.",
        )
        parser.add_argument(
            "--catch-up-to",
            default=None,
            metavar="HH:MM[:SS]",
            help="Run at --speed only until this simulated time of the start's day (IST), then "
            "at real time (speed 1): e.g. --start 09:15 --catch-up-to 11:00 --speed 60 runs "
            "the morning in under two minutes and goes on as a real market from 11:00.",
        )
        parser.add_argument(
            "--clock-waits-for-feed",
            action="store_true",
            help="The clock stands at --start until a feed connection subscribes (REST answers "
            "meanwhile see --start): a setup that takes a while loses no simulated minute.",
        )
        parser.add_argument(
            "--exchange-hours",
            action="store_true",
            help="Trade only in the exchange's hours on the market clock: 09:15-15:30 IST on "
            "weekdays (pre-open from 09:00). Default: open around the clock.",
        )
        parser.add_argument(
            "--holiday",
            nargs="?",
            const=HOLIDAY_NAME,
            default=None,
            metavar="NAME",
            help="Make the simulator's today (the start day, IST) a trading holiday: the feeds "
            "say the market is closed and nothing ticks all day.",
        )
        parser.add_argument("--dhan-client-id", default=d.dhan_client_id)
        parser.add_argument("--dhan-token", default=d.dhan_token)
        parser.add_argument("--upstox-api-key", default=d.upstox_api_key)
        parser.add_argument("--upstox-api-secret", default=d.upstox_api_secret)
        parser.add_argument("--upstox-redirect-uri", default=d.upstox_redirect_uri)
        parser.add_argument(
            "--upstox-token", default=d.upstox_token, help="A pre-issued Upstox access token."
        )
        parser.add_argument(
            "--upstox-notifier-url",
            default=d.upstox_notifier_url,
            help="Where approved v3 token requests are POSTed (blank: nowhere).",
        )
        parser.add_argument("--upstox-max-connections", type=int, default=d.upstox_max_connections)

    def handle(self, *args: Any, **options: Any) -> None:
        holiday = options["holiday"]
        if holiday is not None and not holiday.strip():
            raise CommandError("--holiday needs a name or none at all, e.g. --holiday Holi")
        options["holiday"] = (holiday or DEFAULTS.holiday).strip()
        options["start"] = _start(options["start"], options["date"])
        if not options["speed"] > 0 or options["speed"] > MAX_SPEED:
            raise CommandError(f"--speed must be above 0 and at most {MAX_SPEED:g}")
        options["catch_up_to"] = _catch_up_to(
            options["catch_up_to"], options["start"], options["speed"]
        )
        names = {f.name for f in fields(SimConfig)}
        config = SimConfig(**{k: v for k, v in options.items() if k in names})
        if config.ticks_per_second < 0:
            raise CommandError("--ticks-per-second must be 0 or more")
        if config.strikes < 1:
            raise CommandError("--strikes must be at least 1")
        try:
            asyncio.run(self._serve(config))
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {config.host}:{config.port}: {exc.strerror}. Stop what runs "
                "there or pick another --port."
            ) from None

    async def _serve(self, config: SimConfig) -> None:
        runner = web.AppRunner(build_app(config), handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port)
            await site.start()
            port = runner.addresses[0][1]
            self._announce(config, f"{config.host}:{port}")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            self.stdout.write("Stopping the simulator.")
        finally:
            await runner.cleanup()

    def _announce(self, config: SimConfig, where: str) -> None:
        http, ws = f"http://{where}", f"ws://{where}"
        rate = config.ticks_per_second or "manual (POST /sim/step)"
        hours = "09:15-15:30 IST on weekdays" if config.exchange_hours else "around the clock"
        holiday = f"; today is a trading holiday ({config.holiday})" if config.holiday else ""
        start = (config.start or datetime.now(IST)).astimezone(IST)
        waits = " (standing until a feed subscribes)" if config.clock_waits_for_feed else ""
        lines = [
            f"Exchange simulator listening on {http}",
            f"  seed {config.seed}, {rate} ticks/s, ±{config.strikes} strikes",
            f"  Clock from {start:%Y-%m-%d %H:%M:%S} IST at {config.speed:g}x real time"
            + (
                f" until {config.catch_up_to.astimezone(IST):%H:%M:%S}, then at real time"
                if config.catch_up_to is not None
                else ""
            )
            + waits,
            f"  Market open {hours}{holiday}",
            f"  Dhan REST      {http}/dhan",
            f"  Dhan feed      {ws}/dhan/feed?version=2&token=***&clientId="
            f"{config.dhan_client_id}&authType=2",
            f"  Dhan masters   {http}/dhan/api-data/api-scrip-master.csv (and -detailed.csv)",
            f"  Upstox REST    {http}/upstox",
            f"  Upstox feed    {ws}/upstox/v3/feed/market-data-feed (authorize first: "
            f"{http}/upstox/v3/feed/market-data-feed/authorize)",
            f"  Upstox login   {http}/upstox/v2/login/authorization/dialog",
            f"  Upstox master  {http}/upstox/market-quote/instruments/exchange/complete.json.gz",
            f"  Control        {http}/sim/state, POST {http}/sim/faults, {http}/sim/token-requests",
            f"  Truth          {http}/sim/truth?underlying=NIFTY[&expiry=YYYY-MM-DD][&at=HH:MM]",
            f"  Credentials    Dhan client id {config.dhan_client_id}; Upstox API key "
            f"{config.upstox_api_key} (tokens: see --help; never printed)",
            f"  Wire the product to it: python manage.py simaccounts --url {http}",
        ]
        for line in lines:
            self.stdout.write(line)
        self.stdout.flush()
