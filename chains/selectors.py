"""Reads for pages, the JSON API and consumers: what a chain shows and why (the status page's
reads, which judge every chain with ``chain_view``, are in ``chains.status_selectors``).

``chain_view`` decides a chain's answer in one place, so the API, the page and the WebSocket
give the same reasons: live data (200), or a named failure (``credentials_missing``,
``token_expired``, ``feed_down``, ``not_populated``) with what to do — plus the last known data
when there is some, labelled by ``source`` (``live``, ``last_known``, ``closing``) — and its
freshness (``chains.freshness``: live, quiet, market closed or stale). An answer with a failure
is always stale; a 200 answer is live, quiet or closed and its ``source`` is ``live``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

from django.utils import timezone

from brokers import calendar
from brokers.exchange import IST, exchange_for
from brokers.models import AccountStatus, BrokerAccount, TrackedChain
from brokers.registry import get_spec

from . import freshness as fresh
from . import store
from .contracts import SnapshotMeta, StatusMessage, StoredSnapshot, parse_snapshot
from .feed.status import FeedStatus
from .freshness import FeedHealth, Freshness
from .models import ChainSnapshot
from .plan import nearest_expiries

CLOSE = time(15, 30)
# A worker's own states of an open broker socket (its record can still be stale: judge it with
# ``freshness.feed_health``).
LIVE_STATES = fresh.CONNECTED_STATES
ADMIN = "admin → Broker accounts"


def market_calendar(underlying: str, now: datetime) -> tuple[bool | None, str]:
    """The exchange calendar's verdict on ``underlying``'s market at ``now``: (open, reason),
    from the session hours and the ExchangeHoliday table (``brokers.calendar``)."""
    return fresh.calendar_verdict(calendar.market_state_now(exchange_for(underlying), now=now))


@dataclass
class ChainView:
    """What to answer for one chain: ``data`` (may be None) and where it comes from
    (``source``), its ``freshness`` and, when it cannot be served as current, why (``code``,
    ``message``). ``data`` is the stored snapshot (Redis, else the database's), or for a view
    without data the Redis meta record (None when only the database has the chain)."""

    underlying: str
    expiry: date
    account: BrokerAccount
    data: StoredSnapshot | SnapshotMeta | None
    source: str | None
    freshness: Freshness
    health: FeedHealth = field(repr=False)
    code: str | None = None
    message: str = ""
    feed: FeedStatus | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.code is None

    @property
    def feed_state(self) -> str:
        """The feed's state as the API and WebSocket name it (``FeedHealth.feed_state``):
        never "live" or "quiet" for a feed that is not connected, reporting and locked."""
        return self.health.feed_state

    def status_message(self) -> StatusMessage:
        """The WebSocket ``status`` message: ``{"type": "status", "feed_state", "source",
        "code", "message", "freshness": {"state", "words", "reason", "as_of",
        "seconds_since_tick"}}``. Send it when ``status_key()`` changes."""
        return {
            "type": "status",
            "feed_state": self.feed_state,
            "source": self.source,
            "code": self.code,
            "message": self.message,
            "freshness": self.freshness.to_json(),
        }

    def status_key(self) -> tuple[object, ...]:
        """What a client must hear about when it changes: everything in ``status_message``
        except what moves on its own (the tick count, which the page counts up itself, and
        the as-of time, which deltas carry) — unless the chain is stale, when the as-of time is
        the news."""
        f = self.freshness
        as_of = f.as_of if f.state == fresh.STALE else None
        return (
            self.feed_state,
            self.source,
            self.code,
            self.message,
            f.state,
            f.reason,
            as_of,
            f.seconds_since_tick is None,
        )


class NotTracked(LookupError):
    """An underlying or expiry that no enabled tracked chain follows (carries the valid ones)."""

    def __init__(self, message: str, *, valid: list[str]) -> None:
        super().__init__(message)
        self.valid = valid


def tracked_chains() -> list[TrackedChain]:
    return list(
        TrackedChain.objects.filter(enabled=True, account__enabled=True)
        .select_related("account")
        .order_by("underlying", "account__name")
    )


def tracked_chain(underlying: str) -> TrackedChain:
    """The enabled tracked chain of ``underlying``; NotTracked lists the tracked ones."""
    chains = {c.underlying: c for c in reversed(tracked_chains())}  # first account wins
    chain = chains.get(underlying.upper())
    if chain is None:
        valid = sorted(chains)
        raise NotTracked(
            f"{underlying!r} is not a tracked underlying. Tracked: {', '.join(valid) or 'none'}.",
            valid=valid,
        )
    return chain


def expiries(chain: TrackedChain, *, now: datetime | None = None) -> list[date]:
    return nearest_expiries(chain.account, chain.underlying, chain.expiries, now=now)


def resolve(underlying: str, expiry: date | None) -> tuple[TrackedChain, date]:
    """The tracked chain and expiry to show (nearest when ``expiry`` is None)."""
    chain = tracked_chain(underlying)
    valid = expiries(chain)
    if expiry is None:
        if not valid:
            raise NotTracked(f"{chain.underlying} has no unexpired expiry.", valid=[])
        return chain, valid[0]
    if expiry not in valid:
        listed = [e.isoformat() for e in valid]
        raise NotTracked(
            f"Expiry {expiry.isoformat()} of {chain.underlying} is not tracked. Tracked: "
            f"{', '.join(listed) or 'none'}.",
            valid=listed,
        )
    return chain, expiry


def chain_view(
    chain: TrackedChain, expiry: date, *, now: datetime | None = None, with_data: bool = True
) -> ChainView:
    """Decide what to show for (chain, expiry): data, its source, freshness and the failure.

    ``with_data=False`` reads only the small meta record (for status polling): ``data`` is
    then the meta record, without strikes. The failure ``feed_down`` is any feed that is not
    connected, reporting and holding its lock; its message names the feed's actual state and
    what to do. Raises ContractError when a stored record lacks a key its type requires.
    """
    now = now or timezone.now()
    account = chain.account
    feed = store.read_feed_status(account.name)
    snapshot: StoredSnapshot | SnapshotMeta | None
    if with_data:
        snapshot = store.read_snapshot(chain.underlying, expiry)
    else:
        snapshot = store.read_meta(chain.underlying, expiry)
    data: StoredSnapshot | SnapshotMeta | None = None
    source: str | None = None
    as_of: datetime | None = None
    if snapshot is not None:
        data, source = snapshot, "live"
        as_of = fresh.parse_time(snapshot["as_of"])
    else:
        persisted = (
            ChainSnapshot.objects.filter(
                account=account, underlying=chain.underlying, expiry=expiry
            )
            .only("as_of", *(["data"] if with_data else []))
            .first()
        )
        if persisted is not None:
            data = parse_snapshot(persisted.data) if with_data else None
            source = _persisted_source(persisted.as_of, now)
            as_of = persisted.as_of
    market_open, market_reason = market_calendar(chain.underlying, now)
    freshness = fresh.freshness(
        feed,
        now=now,
        market_open=market_open,
        market_reason=market_reason,
        as_of=as_of,
        account=account.name,
    )
    health = fresh.feed_health(feed, now=now, account=account.name)
    view = ChainView(chain.underlying, expiry, account, data, source, freshness, health, feed=feed)
    problem = account_problem(account, now)
    if problem is not None:
        view.code, view.message = problem
    elif not health.connected:
        view.code, view.message = "feed_down", health.sentence
    elif snapshot is None or not snapshot["ready"]:
        view.code = "not_populated"
        reason = snapshot["reason"] if snapshot else "no data received yet"
        view.message = f"{chain.underlying} {expiry.isoformat()} is not populated yet: {reason}."
    if view.code is not None:
        if view.source == "live":
            view.source = "last_known"
        if view.freshness.state != fresh.STALE:
            view.freshness = fresh.stale(as_of, now=now, reason=view.message)
    return view


def account_problem(account: BrokerAccount, now: datetime) -> tuple[str, str] | None:
    """Why the chains of ``account`` cannot be current: (code, message saying what to do);
    None when nothing is wrong with the account."""
    missing = account.missing_static_credentials()
    if missing or not account.has_token:
        what = " and ".join(missing) if missing else "access token"
        return (
            "credentials_missing",
            f"Account '{account.name}' has no {what}: an admin must add it in {ADMIN}.",
        )
    if account.status == AccountStatus.TOKEN_EXPIRED or account.token_expired(now=now):
        how = get_spec(account.kind).token.replace_short
        return (
            "token_expired",
            f"The access token of account '{account.name}' has expired: an admin must {how} "
            f"in {ADMIN}.",
        )
    if account.status == AccountStatus.AUTH_FAILED:
        return (
            "credentials_missing",
            f"The broker refused account '{account.name}' ({account.last_error}): an admin "
            f"must fix its credentials in {ADMIN}.",
        )
    return None


def _persisted_source(as_of: datetime, now: datetime) -> str:
    local = as_of.astimezone(IST)
    today = now.astimezone(IST).date()
    return "closing" if local.time() >= CLOSE or local.date() < today else "last_known"
