"""The feed's connection loop: connect, receive until the socket ends, back off, again.

Re-reads the account before every attempt after the first (tokens roll over daily) and opens
a new ``FeedSession``. The backoff is capped full jitter and starts over after a connection
that delivered frames; the token is checked over REST only when a failure suggests a token
problem (a refused handshake, or two sessions in a row that opened and delivered nothing). A
permanent broker refusal marks the account and waits for a new token instead of hammering the
broker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from brokers.adapters import InstrumentRef
from brokers.exceptions import BrokerError, FeedConfigError

from .session import FeedSession, FrameHandler, Stale
from .settings import FeedSettings
from .status import BACKOFF, TOKEN_WAIT, Counters, Health
from .tokens import PermanentFeedError, TokenLifecycle, running, status_for, wait

logger = logging.getLogger(__name__)


class Connection:
    """Keeps the account's feed connected until ``stop``; ``session`` is the current one."""

    def __init__(
        self,
        *,
        account: str,
        settings: FeedSettings,
        tokens: TokenLifecycle,
        counters: Counters,
        health: Health,
        handle: FrameHandler,
    ) -> None:
        self.account = account
        self.settings = settings
        self.tokens = tokens
        self.counters = counters
        self.health = health
        self.handle = handle
        self.session: FeedSession | None = None

    async def run(
        self, stop: asyncio.Event, index: list[InstrumentRef], legs: list[InstrumentRef]
    ) -> None:
        """Connect and reconnect until ``stop`` is set. Raises only what no retry can help
        (an unexpected error: the worker's supervisor handles it)."""
        attempt = 0
        token_suspect = 0  # failures in a row that suggest a token problem
        tokens = self.tokens
        while running(stop):
            session: FeedSession | None = None
            try:
                if attempt or tokens.swap_requested:
                    await tokens.refresh()  # tokens roll over daily
                    if token_suspect >= 2 and not tokens.swap_requested:
                        await tokens.check()
                tokens.swap_requested = False
                session = self.session = FeedSession(
                    account=self.account,
                    adapter=tokens.open_adapter(),
                    settings=self.settings,
                    counters=self.counters,
                    health=self.health,
                    handle=self.handle,
                )
                await session.run(stop, index, legs)
                continue  # returns only when stop is set
            except PermanentFeedError as exc:
                await tokens.mark(exc.status, str(exc))
                await tokens.wait_for_new_token(stop)
                attempt = token_suspect = 0
                continue
            except FeedConfigError as exc:  # e.g. the token was removed in admin meanwhile
                self.health.set(TOKEN_WAIT, str(exc))
                logger.error("Feed of %s paused: %s", self.account, exc)
                await tokens.wait_for_new_token(stop)
                attempt = token_suspect = 0
                continue
            except (OSError, ConnectionClosed, InvalidHandshake, Stale, TimeoutError) as exc:
                if tokens.swap_requested:
                    self.counters.reconnects += 1
                    logger.info("Reconnecting %s with its new token", self.account)
                    continue
                self.health.error = f"{type(exc).__name__}: {exc}"
                logger.warning("Feed of %s lost: %s", self.account, self.health.error)
                if _refused_login(exc):
                    token_suspect = 2  # check the token before the next attempt
                elif session is not None and session.frames_at_open is not None:
                    token_suspect = 0 if session.delivered else token_suspect + 1
            except BrokerError as exc:
                if exc.permanent:
                    await tokens.mark(status_for(exc), str(exc))
                    await tokens.wait_for_new_token(stop)
                    attempt = token_suspect = 0
                    continue
                self.health.error = str(exc)
                logger.warning("Feed of %s: %s", self.account, exc)
            if stop.is_set():
                break
            if session is not None and session.delivered:
                attempt = 0  # the connection worked: this drop starts a new series
            attempt += 1
            self.counters.reconnects += 1
            delay = self.backoff(attempt)
            self.health.set(BACKOFF)
            self.health.retry_at = time.time() + delay
            logger.info("Reconnecting %s in %.1fs (attempt %d)", self.account, delay, attempt)
            if await wait(stop, delay):
                break

    def backoff(self, attempt: int) -> float:
        """Full jitter under a cap doubling from ``backoff_base`` at the first attempt."""
        cap = min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, cap)

    async def switch_token(self) -> None:
        """Close the socket so that the loop reconnects with the account's new token."""
        if self.session is not None:
            await self.session.close(1000, "switching to a new token")


def _refused_login(exc: BaseException) -> bool:
    """True when the feed's handshake was refused as unauthorised (a token problem)."""
    return isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403)
