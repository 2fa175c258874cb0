"""How fresh a chain is, in traders' words: live, quiet, market closed or stale. Pure Python.

One derivation for every surface (page, API, WebSocket, status page), from the feed worker's
status record (``chains.feed.status.FeedStatus``), the exchange calendar's verdict and the
chain's as-of time (the calendar's ``MarketState`` in words: ``calendar_verdict``):

- **live** — a tick within ``LIVE_WITHIN_SECONDS`` and the feed's heartbeat fresh;
- **quiet** — connected, market open (or not known to be closed), no ticks: "No ticks for 42 s";
- **closed** — connected, no ticks, and the broker's market-status messages (or, when they say
  nothing, the exchange calendar) say the market is closed: "Market closed";
- **stale** — not connected, or the heartbeat or lock behind the record is gone:
  "Last known as of 15:29:58".

A record whose ``updated_at`` is older than ``max(3 s, 3 × heartbeat_seconds)`` is gone even
while its Redis key lives on (a killed worker's key outlives it by up to its TTL), and a record
whose writer no longer held the lock (``lock_held`` false) is never live. Records are read
through ``parse_feed_status`` (``chains.store``): every key of ``FeedStatus`` is there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from brokers.dhan.codec import MARKET_STATUS_CHANGED
from brokers.exchange import (
    AFTER_CLOSE,
    BEFORE_OPEN,
    HOLIDAY_PREFIX,
    IST,
    PRE_OPEN_REASON,
    WEEKEND,
    MarketState,
)
from brokers.registry import get_spec

from .feed.status import FeedStatus

LIVE_WITHIN_SECONDS = 5.0  # a tick this recent makes a chain live
HEARTBEAT_MISSES = 3  # heartbeats a reader waits for before it calls the feed gone
MIN_HEARTBEAT_WINDOW = 3.0  # seconds: never call a feed gone sooner than this
CONNECTED_STATES = frozenset({"live", "quiet"})  # the worker holds an open broker socket

LIVE, QUIET, CLOSED, STALE = "live", "quiet", "closed", "stale"
STATES = (LIVE, QUIET, CLOSED, STALE)

# Segment statuses of the brokers' market-status messages (Upstox ``MarketStatus`` names; DhanHQ
# code 7 carries no value, see ``brokers.dhan.codec.MARKET_STATUS_CHANGED``).
MARKET_OPEN_STATUSES = frozenset({"NORMAL_OPEN"})
MARKET_STATUS_WORDS = {
    "NORMAL_OPEN": "open",
    "NORMAL_CLOSE": "closed",
    "PRE_OPEN_START": "pre-open",
    "PRE_OPEN_END": "pre-open ended, opens at 09:15",
    "CLOSING_START": "closing session",
    "CLOSING_END": "closed",
    MARKET_STATUS_CHANGED: "status changed (DhanHQ does not say to what)",
}
MARKET_CLOSED_STATUSES = (
    frozenset(MARKET_STATUS_WORDS) - MARKET_OPEN_STATUSES - {MARKET_STATUS_CHANGED}
)


@dataclass(frozen=True)
class FeedHealth:
    """What a feed status record says about the feed worker, judged at one instant.

    ``state`` is the worker's own state, or "not running" (no record), "not reporting" (the
    heartbeat is gone), "lock lost" (the writer no longer held the lock). ``connected`` is True
    only for a worker that holds the lock, reports on time and has an open broker socket.
    ``words`` is a short label, ``sentence`` says what is happening and what to do.
    ``feed_state`` is the state the API and WebSocket name: "live" (connected, a tick within
    ``LIVE_WITHIN_SECONDS``), "quiet" (connected, no recent tick), "down" (no record, or its
    heartbeat or lock is gone), else the worker's state (``connecting``, ``backoff``, …).
    """

    state: str
    feed_state: str
    connected: bool
    words: str
    sentence: str
    action: str
    heartbeat_age: float | None
    last_tick_at: datetime | None


class FreshnessJSON(TypedDict):
    """``Freshness.to_json()``: the API's and the WebSocket status message's ``freshness``."""

    state: str
    words: str
    reason: str
    as_of: str | None
    seconds_since_tick: int | None


@dataclass(frozen=True)
class Freshness:
    """A chain's freshness: ``state`` in STATES, ``words`` for the badge ("Live", "No ticks
    for 42 s", "Market closed", "Last known as of 15:29:58"), ``reason`` (one sentence: why,
    and what to do when someone must act; "" when live), ``as_of`` (the data's time, None when
    there is no data) and ``seconds_since_tick`` (None when no tick is known)."""

    state: str
    words: str
    reason: str
    as_of: datetime | None
    seconds_since_tick: int | None
    as_of_text: str  # as_of as the page shows it: "15:29:58" today, "12 Mar 15:29:58" before

    def to_json(self) -> FreshnessJSON:
        """The API's and the WebSocket's ``freshness`` object."""
        return {
            "state": self.state,
            "words": self.words,
            "reason": self.reason,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "seconds_since_tick": self.seconds_since_tick,
        }


def freshness(
    feed: FeedStatus | None,
    *,
    now: datetime,
    market_open: bool | None,
    market_reason: str,
    as_of: datetime | None,
    account: str | None = None,
) -> Freshness:
    """The freshness of a chain fed by ``feed`` (its account's status record, None when there
    is none), at ``now`` (aware).

    ``market_open``/``market_reason`` are the exchange calendar's verdict (None: unknown), used
    only when the broker's market-status messages (``feed["market"]``) give none. ``as_of`` is
    the chain data's time (None without data). ``account`` names the account in the reasons.
    """
    health = feed_health(feed, now=now, account=account)
    if not health.connected or feed is None:
        return stale(as_of, now=now, reason=health.sentence)
    tick = health.last_tick_at
    elapsed = None if tick is None else (now - tick) / timedelta(seconds=1)
    since = None if elapsed is None else max(0, int(elapsed))
    text = clock_text(as_of, now=now)
    if elapsed is not None and elapsed <= LIVE_WITHIN_SECONDS:
        return Freshness(LIVE, "Live", "", as_of, since, text)
    broker_open, broker_reason = broker_market(feed["market"])
    if broker_open is not None:
        market_open, market_reason = broker_open, broker_reason
    if market_open is False:
        reason = f"Market closed: {market_reason}. Prices as of {text}."
        return Freshness(CLOSED, "Market closed", reason, as_of, since, text)
    if market_open is None:
        why = "No ticks arrive and the market's state is not known"
        why += f" ({market_reason})." if market_reason else "."
    else:
        why = "Connected and the market is open, but no ticks arrive."
    return Freshness(QUIET, no_ticks_words(since), why, as_of, since, text)


def stale(as_of: datetime | None, *, now: datetime, reason: str) -> Freshness:
    """A stale chain: the last known data as of ``as_of``, and why (``reason``)."""
    text = clock_text(as_of, now=now)
    words = f"Last known as of {text}" if as_of is not None else "No data"
    return Freshness(STALE, words, reason, as_of, None, text)


def no_ticks_words(seconds: int | None) -> str:
    """ "No ticks for 42 s" (minutes from two minutes on); "No ticks yet" when none is known.
    ``static/optionsite/chain.js`` counts up with the same words."""
    if seconds is None:
        return "No ticks yet"
    if seconds < 120:
        return f"No ticks for {seconds} s"
    return f"No ticks for {seconds // 60} min"


def clock_text(moment: datetime | None, *, now: datetime) -> str:
    """``moment`` in Indian time: "15:29:58" on ``now``'s day, "12 Mar 15:29:58" before it,
    "–" for None."""
    if moment is None:
        return "–"
    local = moment.astimezone(IST)
    if local.date() == now.astimezone(IST).date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%d %b %H:%M:%S")


# --- the feed worker ---------------------------------------------------------------------------


def heartbeat_window(feed: FeedStatus) -> float:
    """Seconds after ``updated_at`` at which a record counts as gone."""
    return max(MIN_HEARTBEAT_WINDOW, HEARTBEAT_MISSES * feed["heartbeat_seconds"])


def feed_health(
    feed: FeedStatus | None, *, now: datetime, account: str | None = None
) -> FeedHealth:
    """Judge a feed status record at ``now``; see FeedHealth."""
    who = f"account '{account}'" if account else "this account"
    start = f"`python manage.py runfeed --account {account}`" if account else "`runfeed`"
    if feed is None:
        action = f"start {start}"
        sentence = f"No feed worker is running for {who}: {action}."
        return FeedHealth("not running", "down", False, "Not running", sentence, action, None, None)
    state = feed["state"]
    updated = parse_time(feed["updated_at"])
    if updated is None:
        action = f"restart {start} (its status record has no readable heartbeat)"
        sentence = f"The feed worker of {who} does not report a heartbeat: {action}."
        words = "Not reporting"
        return FeedHealth("not reporting", "down", False, words, sentence, action, None, None)
    age = (now - updated).total_seconds()
    if age > heartbeat_window(feed):
        action = f"check its log and start {start} again if it is not running"
        sentence = (
            f"The feed worker of {who} stopped reporting at {clock_text(updated, now=now)} "
            f"(it was {state}): it crashed, froze or lost Redis — {action}."
        )
        return FeedHealth(
            "not reporting",
            "down",
            False,
            "Stopped reporting",
            sentence,
            action,
            round(age, 1),
            None,
        )
    tick = parse_time(feed["last_tick_at"])
    if not feed["lock_held"] and state in CONNECTED_STATES:
        action = f"wait for another worker to take over, or start {start} again"
        sentence = (
            f"The feed worker of {who} lost the account's feed lock and stops writing: {action}."
        )
        return FeedHealth(
            "lock lost", "down", False, "Lock lost", sentence, action, round(age, 1), tick
        )
    if state in CONNECTED_STATES:
        recent = tick is not None and (now - tick) / timedelta(seconds=1) <= LIVE_WITHIN_SECONDS
        return FeedHealth(
            state, "live" if recent else "quiet", True, "Connected", "", "", round(age, 1), tick
        )
    words, sentence, action = _state_words(state, feed, who=who, start=start, now=now)
    return FeedHealth(state, state, False, words, sentence, action, round(age, 1), tick)


def _state_words(
    state: str, feed: FeedStatus, *, who: str, start: str, now: datetime
) -> tuple[str, str, str]:
    """(label, sentence, what to do) of a worker that is running but not connected."""
    error = feed["error"]
    because = f" ({error})" if error else ""
    retry = parse_time(feed["retry_at"])
    if state == "backoff":
        when = f" (next attempt at {clock_text(retry, now=now)})" if retry else ""
        action = (
            "nothing to do unless it lasts — then an admin checks /status/ and the worker's log"
        )
        return (
            "Reconnecting after a drop",
            f"The feed of {who} lost its connection{because} and is reconnecting{when}: {action}.",
            action,
        )
    if state == "token_wait":
        broker = feed["broker"]  # None only before the worker has read its account
        how = get_spec(broker).token.replace_short if broker else "give it a new access token"
        action = f"an admin must {how} in admin → Broker accounts"
        return (
            "Waiting for a new access token",
            f"The feed of {who} waits for a new access token{because}: {action}.",
            action,
        )
    if state == "standby":
        action = "nothing to do while the other worker runs; this one takes over if it stops"
        return (
            "Standing by",
            f"The feed worker of {who} stands by while another worker holds the account's "
            f"feed lock: {action}.",
            action,
        )
    if state in {"starting", "preparing", "connecting"}:
        doing = {
            "starting": "is starting",
            "preparing": "is preparing the chains",
            "connecting": "is connecting to the broker",
        }[state]
        action = "wait a few seconds"
        return (
            doing.removeprefix("is ").capitalize(),
            f"The feed of {who} {doing}{because}: {action}.",
            action,
        )
    if state == "store_unavailable":
        action = "check that Redis runs and answers (REDIS_URL)"
        return (
            "Cannot reach Redis",
            f"The feed worker of {who} cannot reach Redis{because}: {action}.",
            action,
        )
    if state == "error":
        action = "it restarts by itself; if it keeps failing, see the worker's log"
        return ("Feed failed", f"The feed of {who} failed{because}: {action}.", action)
    if state in {"stopping", "stopped"}:
        action = f"start {start} again if it should run"
        return (
            "Stopped" if state == "stopped" else "Stopping",
            f"The feed worker of {who} is {state}: {action}.",
            action,
        )
    action = f"an admin checks /status/ and the worker's log; restart {start} if it stays so"
    return (state, f"The feed of {who} is not connected ({state}){because}: {action}.", action)


# --- the market -------------------------------------------------------------------------------


def broker_market(market: Mapping[str, str]) -> tuple[bool | None, str]:
    """The broker's verdict from its market-status messages (segment → status): True when a
    segment is open, False when every segment it named is in a closed status, None when it
    said nothing usable (no message, or only DhanHQ's valueless code 7). The second value
    says why in words."""
    opened = [seg for seg, status in market.items() if status in MARKET_OPEN_STATUSES]
    if opened:
        return True, f"the broker reports {', '.join(sorted(opened))} open"
    closed = {seg: s for seg, s in market.items() if s in MARKET_CLOSED_STATUSES}
    if closed:
        said = ", ".join(f"{seg} {MARKET_STATUS_WORDS[s]}" for seg, s in sorted(closed.items()))
        return False, f"the broker reports {said}"
    return None, ""


def market_words(market: Mapping[str, str]) -> str:
    """The broker's market statuses in words ("NSE_FO open, BSE_FO closed"); "–" when none."""
    if not market:
        return "–"
    return ", ".join(
        f"{seg} {MARKET_STATUS_WORDS.get(status, status)}" for seg, status in sorted(market.items())
    )


def calendar_verdict(state: MarketState) -> tuple[bool, str]:
    """The exchange calendar's ``MarketState`` as (open, reason in words) for ``freshness``."""
    if state.is_open:
        return True, "regular session"
    reason = state.reason
    if reason.startswith(HOLIDAY_PREFIX):
        return False, f"trading holiday ({reason.removeprefix(HOLIDAY_PREFIX)})"
    words = {
        WEEKEND: "weekend",
        BEFORE_OPEN: "before the 09:15 IST open",
        AFTER_CLOSE: "after the 15:30 IST close",
        PRE_OPEN_REASON: "pre-open session; options trade from 09:15 IST",
    }
    return False, words.get(reason, reason)


# --- helpers ----------------------------------------------------------------------------------


def parse_time(value: object) -> datetime | None:
    """An ISO time from a status record as an aware datetime; None for None, "" or a value
    that is not an aware ISO time (a reader then treats the record as not reporting)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:  # not ISO: the caller reports the record as unreadable
        return None
    return parsed if parsed.utcoffset() is not None else None
