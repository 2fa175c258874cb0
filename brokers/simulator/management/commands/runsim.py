"""python manage.py runsim — the local exchange simulator (both brokers' protocols, one port).

Runs until Ctrl-C or SIGTERM. Prints every address; the first line is
``Exchange simulator listening on http://HOST:PORT`` (with ``--port 0`` the port is the one the
system picked), which scripts and the test fixture read.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import fields
from datetime import datetime
from typing import Any

from aiohttp import web
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.simulator.app import build_app
from brokers.simulator.config import SimConfig

DEFAULTS = SimConfig()
HOLIDAY_NAME = "Simulated trading holiday"


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
            type=datetime.fromisoformat,
            default=None,
            help="The market clock's start (ISO, with offset); default now. With --seed it "
            "makes runs on different days/times reproducible.",
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
        names = {f.name for f in fields(SimConfig)}
        config = SimConfig(**{k: v for k, v in options.items() if k in names})
        if config.ticks_per_second < 0:
            raise CommandError("--ticks-per-second must be 0 or more")
        if config.strikes < 1:
            raise CommandError("--strikes must be at least 1")
        if config.start is not None and config.start.tzinfo is None:
            raise CommandError("--start needs a UTC offset, e.g. 2026-01-05T10:00:00+05:30")
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
        lines = [
            f"Exchange simulator listening on {http}",
            f"  seed {config.seed}, {rate} ticks/s, ±{config.strikes} strikes",
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
            f"  Credentials    Dhan client id {config.dhan_client_id}; Upstox API key "
            f"{config.upstox_api_key} (tokens: see --help; never printed)",
            f"  Wire the product to it: python manage.py simaccounts --url {http}",
        ]
        for line in lines:
            self.stdout.write(line)
        self.stdout.flush()
