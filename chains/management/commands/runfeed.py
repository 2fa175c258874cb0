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
from chains.feed.settings import FeedSettings
from chains.feed.worker import FeedWorker
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
        """One worker per account, each with its own lifecycle: a lost lock or a crash of one
        is handled inside that worker (stand by, restart) and never stops another. Only a
        worker that ends by itself without ``stop`` (its configuration became unusable) ends
        the process — every worker is stopped then, and the command exits non-zero, so a
        supervisor (systemd ``Restart=on-failure``) restarts it and nothing runs half-alive."""
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
        failed: list[tuple[str, BaseException]] = []

        async def supervised(worker: FeedWorker) -> None:
            try:
                await worker.run(stop)
            except Exception as exc:
                failed.append((worker.account, exc))
                logger.error("Feed of %s ended: %s", worker.account, exc, exc_info=exc)
            else:
                if stop.is_set():
                    return
                failed.append((worker.account, RuntimeError("its worker ended by itself")))
            stop.set()  # never half-alive: the others stop too, the process exits non-zero

        try:
            await asyncio.gather(*(supervised(w) for w in workers))
        finally:
            await redis.aclose()
        await sync_to_async(lambda: None)()
        for _name, exc in failed:
            if isinstance(exc, FeedConfigError):
                raise exc
        if failed:
            what = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failed)
            raise CommandError(f"Feed stopped because an account's worker ended: {what}")
