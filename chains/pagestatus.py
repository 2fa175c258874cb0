"""The chain page's status badges in traders' words: the market (open, pre-open, closed,
holiday) and the feed. Pure Python, no Django.

The page never shows the feed worker's internal state names (``token_wait``, ``backoff``, …):
``feed_words`` turns each into a short phrase; the page's script gets the same table
(``FEED_WORDS``, through the page's config) and follows the WebSocket's status messages with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from brokers.exchange import (
    AFTER_CLOSE,
    BEFORE_OPEN,
    HOLIDAY_PREFIX,
    WEEKEND,
    MarketState,
    Phase,
)

from .freshness import broker_market

# feed_state (``FeedHealth.feed_state``: live, quiet, down, or the worker's own state) → words.
FEED_WORDS = {
    "live": "Feed connected",
    "quiet": "Feed connected",
    "down": "Feed down",
    "backoff": "Feed reconnecting",
    "token_wait": "Feed waits for a new access token",
    "standby": "Feed standing by",
    "starting": "Feed starting",
    "preparing": "Feed preparing",
    "connecting": "Feed connecting",
    "store_unavailable": "Feed cannot reach Redis",
    "error": "Feed failed",
    "stopping": "Feed stopping",
    "stopped": "Feed stopped",
}
FEED_UNKNOWN = "Feed not connected"


def feed_words(feed_state: str) -> str:
    """``feed_state`` in words ("Feed reconnecting"); a state this table does not know yet is
    "Feed not connected" (every state but live and quiet means no open broker socket)."""
    return FEED_WORDS.get(feed_state, FEED_UNKNOWN)


class MarketBadge(TypedDict):
    """The market badge: ``state`` (open, pre_open, closed, holiday: the badge's colour),
    ``words`` ("Market open", "Holiday: Diwali", "Market closed: after the 15:30 close")."""

    state: str
    words: str


CLOSED_WORDS = {
    WEEKEND: "Market closed: weekend",
    BEFORE_OPEN: "Market closed: opens 09:15",
    AFTER_CLOSE: "Market closed: after the 15:30 close",
}


def market_badge(state: MarketState, *, broker: Mapping[str, str] | None = None) -> MarketBadge:
    """The market badge: the broker's market-status messages (``broker``: segment → status,
    ``FeedStatus["market"]``) when they say open or closed — as the freshness verdict does —
    else the exchange calendar's ``state``."""
    said, words = broker_market(broker) if broker else (None, "")
    if said is True:
        return {"state": "open", "words": "Market open"}
    if said is False and state.is_open:  # the calendar expected a session: say who says not
        return {"state": "closed", "words": "Market closed: " + words.removeprefix("the ")}
    if state.is_open:
        return {"state": "open", "words": "Market open"}
    if state.phase == Phase.PRE_OPEN:
        return {"state": "pre_open", "words": "Pre-open: options trade from 09:15"}
    if state.reason.startswith(HOLIDAY_PREFIX):
        name = state.reason.removeprefix(HOLIDAY_PREFIX)
        return {"state": "holiday", "words": f"Holiday: {name}"}
    return {"state": "closed", "words": CLOSED_WORDS.get(state.reason, "Market closed")}
