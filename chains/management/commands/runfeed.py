"""python manage.py runfeed [--account NAME ...] — the broker feed workers."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.accounts import account_config, enabled_account_names
from brokers.exceptions import FeedConfigError
from chains import store
from chains.feed.worker import FeedSettings, FeedWorker
from chains.plan import chain_plans

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Hold the broker WebSocket of each account (all enabled accounts by default), keep its "
        "chains current and publish them. Exits non-zero at once on misconfiguration."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", action="append", dest="accounts", metavar="NAME")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            names = options["accounts"] or enabled_account_names()
            for name in names:
                account_config(name)  # fail fast, before any socket is opened
                chain_plans(name)
        except FeedConfigError as exc:
            raise CommandError(str(exc)) from None
        layer = get_channel_layer()
        if layer is None:
            raise CommandError("No channel layer: CHANNEL_LAYERS is not configured.")
        try:
            asyncio.run(self._run(names, layer))
        except FeedConfigError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("Feed stopped.")

    async def _run(self, names: list[str], layer: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        redis = store.async_client()
        feed_settings = FeedSettings(**settings.FEED_SETTINGS)
        workers = [
            FeedWorker(name, settings=feed_settings, channel_layer=layer, redis=redis)
            for name in names
        ]
        self.stdout.write(f"Feeding {', '.join(names)}. Ctrl-C or SIGTERM stops cleanly.")
        try:
            results = await asyncio.gather(*(w.run(stop) for w in workers), return_exceptions=True)
        finally:
            await redis.aclose()
        for worker, result in zip(workers, results, strict=True):
            if isinstance(result, FeedConfigError):
                raise result
            if isinstance(result, BaseException):
                logger.error("Feed of %s crashed", worker.account, exc_info=result)
                raise CommandError(f"Feed of {worker.account} crashed: {result}")
        await sync_to_async(lambda: None)()
