"""The token lifecycle of a feed worker: the account's settings, its adapter, and what happens
when the broker refuses the token or an admin saves a new one.

Tokens roll over daily (Upstox at 03:30 IST, DhanHQ every 24 h). A permanent refusal marks the
account (admin and status page show it) and the worker waits for a new token — woken at once
by the account-saved message (``brokers.signals``), with a slow database re-read as fallback.
A new token saved while the feed runs is switched to within a second, reconnecting only when
the token really changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from redis.exceptions import RedisError

from brokers.accounts import account_config, mark_account
from brokers.adapters import AccountConfig, FeedAdapter, account_status_for, adapter_for
from brokers.exceptions import BrokerError, FeedConfigError
from brokers.registry import get_spec
from brokers.signals import ACCOUNT_SAVED
from brokers.ticks import Disconnect

from .settings import FeedSettings
from .status import TOKEN_WAIT, Health

logger = logging.getLogger(__name__)


class PermanentFeedError(Exception):
    """The broker refuses this account until a person acts (carries the account status)."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


def status_for(exc: BrokerError) -> str:
    """The account status a permanent broker refusal means."""
    return account_status_for(exc) or "auth_failed"


def on_disconnect(event: Disconnect) -> None:
    """A close the broker announced: PermanentFeedError (with the account status it means and
    what to do) when only a person can cure it; else logged, and the connection loop
    reconnects."""
    spec = get_spec(event.broker)
    status = spec.disconnect_status(event.reason_code)
    text = f"{spec.label} closed the feed: {event.reason} (code {event.reason_code})"
    if status is not None:
        raise PermanentFeedError(text + what_to_do(status), status=status)
    logger.warning("%s; reconnecting", text)


def what_to_do(status: str) -> str:
    if status == "token_expired":
        return ": enter a new access token in admin → Broker accounts"
    if status == "auth_failed":
        return ": check the client id and token in admin → Broker accounts"
    return ": check the account's data plan and tracked chains"


class TokenLifecycle:
    """The account's current settings (``config``) and adapter, kept in step with the database."""

    def __init__(self, *, account: str, settings: FeedSettings, health: Health, redis: object):
        self.account = account
        self.settings = settings
        self.health = health
        self.redis = redis
        self.config: AccountConfig | None = None
        self.adapter: FeedAdapter | None = None
        # Adapters replaced by a new token's: a REST call may still be using one (the prime),
        # so each is closed at the next replacement or on the way out, never under a caller.
        self._retired: list[FeedAdapter] = []
        self.changed = asyncio.Event()
        self.swap_requested = False  # the socket is being closed to use a new token
        self.on_new_token: Callable[[], Awaitable[None]] | None = None

    async def load(self) -> AccountConfig:
        """Read the account; FeedConfigError when it cannot feed (says what to do)."""
        self.config = await sync_to_async(account_config)(self.account)
        return self.config

    def open_adapter(self) -> FeedAdapter:
        assert self.config is not None
        if self.adapter is None:
            self.adapter = adapter_for(self.config)
        return self.adapter

    async def close_adapter(self) -> None:
        """Close the adapter and every retired one (the worker is leaving)."""
        if self.adapter is not None:
            self._retired.append(self.adapter)
            self.adapter = None
        retired, self._retired = self._retired, []
        for adapter in retired:
            await adapter.aclose()

    async def refresh(self) -> None:
        """Re-read the account (tokens roll over daily); rebuild the adapter when it changed.
        Raises FeedConfigError (e.g. the token was removed in admin meanwhile)."""
        config = await sync_to_async(account_config)(self.account)
        if config != self.config:
            retired, self._retired = self._retired, []
            for adapter in retired:
                await adapter.aclose()
            if self.adapter is not None:
                self._retired.append(self.adapter)
                self.adapter = None
            self.config = config
            self.open_adapter()
            logger.info("Account %s changed: using its new settings", self.account)

    async def check(self) -> None:
        """Ask the broker whether the token is good; PermanentFeedError when it is not. A
        transient failure (network, 5xx, 429) says nothing about the token: logged only."""
        adapter = self.open_adapter()
        try:
            await adapter.check_token()
        except BrokerError as exc:
            if exc.permanent:
                raise PermanentFeedError(str(exc), status=status_for(exc)) from exc
            logger.warning("Token check of %s inconclusive: %s", self.account, exc)

    async def mark(self, status: str, message: str) -> None:
        """Record the refusal on the account (admin, status page) and wait for a person."""
        self.health.set(TOKEN_WAIT, message)
        logger.error("Feed of %s stopped: %s", self.account, message)
        await sync_to_async(mark_account)(self.account, status, message)

    async def wait_for_new_token(self, stop: asyncio.Event) -> None:
        """Wait until the account has a different token (or ``stop``)."""
        old = self.config
        while running(stop):
            self.changed.clear()
            if await wait_any(stop, self.changed, self.settings.token_poll_interval):
                return
            try:
                config = await sync_to_async(account_config)(self.account)
            except FeedConfigError as exc:
                self.health.error = str(exc)
                continue
            if old is None or config.access_token != old.access_token:
                logger.info("Account %s has a new token: resuming the feed", self.account)
                await self.refresh()
                return

    async def watch(self, stop: asyncio.Event) -> None:
        """Follow the account-saved messages until ``stop``; Redis trouble is retried."""
        while running(stop):
            pubsub = self.redis.pubsub()  # type: ignore[attr-defined]
            try:
                await pubsub.subscribe(ACCOUNT_SAVED)
                while running(stop):
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["data"] == self.account.encode():
                        await self.on_saved()
            except RedisError as exc:
                logger.warning(
                    "Account messages for %s interrupted (%s): retrying", self.account, exc
                )
                await wait(stop, 2.0)
            finally:
                # Closing a pubsub whose server is gone can fail the same way: nothing to keep.
                with contextlib.suppress(RedisError):
                    await pubsub.aclose()

    async def on_saved(self) -> None:
        try:
            config = await sync_to_async(account_config)(self.account)
        except FeedConfigError:
            self.changed.set()  # the waiting loop re-reads and reports it
            return
        if self.config is not None and config.access_token == self.config.access_token:
            return  # saved without a new token: nothing to do
        logger.info("Account %s has a new token: switching the feed to it", self.account)
        self.changed.set()
        if self.on_new_token is not None:
            self.swap_requested = True
            await self.on_new_token()


async def wait_any(stop: asyncio.Event, event: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds`` or until ``event``; True when ``stop`` was set meanwhile."""
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(event.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


async def wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


def running(stop: asyncio.Event) -> bool:
    """The condition of every loop of a supervised task: False once ``stop`` is set; raises
    CancelledError when the task was asked to stop but a library turned the cancellation
    into an error we handle (redis-py's read timeout, racing a task-group cancellation on
    Python 3.11, raises its TimeoutError instead): the task group waits for every task, so
    a task that kept looping would keep the whole worker half-alive."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return not stop.is_set()
