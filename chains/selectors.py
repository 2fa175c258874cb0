"""Reads for pages, the JSON API, consumers and status: what a chain shows and why.

``chain_view`` decides a chain's answer in one place, so the API, the page and the WebSocket
give the same reasons: live data (200), or a named failure (``credentials_missing``,
``token_expired``, ``feed_down``, ``not_populated``) with what to do — plus the last known data
when there is some, labelled by ``source`` (``live``, ``last_known``, ``closing``) — and its
freshness (``chains.freshness``: live, quiet, market closed or stale). An answer with a failure
is always stale; a 200 answer is live, quiet or closed and its ``source`` is ``live``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from brokers import calendar
from brokers.exchange import IST, exchange_for
from brokers.models import AccountStatus, BrokerAccount, TrackedChain
from brokers.registry import get_spec

from . import freshness as fresh
from . import store
from .contracts import LegJSON, SnapshotMeta, StatusMessage, StoredSnapshot, Strikes, parse_snapshot
from .feed.status import FeedStatus
from .freshness import FeedHealth, Freshness
from .models import ChainSnapshot, TaskOutcome
from .outcomes import (
    CHECK_TOKENS,
    PERIODIC_TASKS,
    REFRESH_INSTRUMENTS,
    REPOPULATE,
    REPOPULATE_FORCED,
)
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
        return (self.feed_state, self.source, self.code, self.message, f.state, f.reason, as_of,
                f.seconds_since_tick is None)  # fmt: skip


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
    freshness = fresh.freshness(feed, now=now, market_open=market_open,
                                market_reason=market_reason, as_of=as_of,
                                account=account.name)  # fmt: skip
    health = fresh.feed_health(feed, now=now, account=account.name)
    view = ChainView(chain.underlying, expiry, account, data, source, freshness, health,
                     feed=feed)  # fmt: skip
    problem = _account_problem(account, now)
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


def _account_problem(account: BrokerAccount, now: datetime) -> tuple[str, str] | None:
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


# --- status --------------------------------------------------------------------------------------


def system_status(*, now: datetime | None = None) -> dict[str, Any]:
    """Accounts, feed workers, chains and periodic tasks, for /status/ and /api/v2/status.

    A feed worker's ``state`` is judged (``chains.freshness.feed_health``): a worker whose
    heartbeat is gone reads "not reporting" whatever its last record said ("reported_state").
    """
    now = now or timezone.now()
    accounts = []
    raw: dict[str, FeedStatus | None] = {}
    for account in BrokerAccount.objects.order_by("name"):
        feed = raw[account.name] = store.read_feed_status(account.name)
        seconds, words = _token_left(account, now)
        problem = _account_problem(account, now)
        accounts.append(
            {
                "name": account.name,
                "broker": account.kind,
                "enabled": account.enabled,
                "status": account.status,
                "token_present": account.has_token,
                "token_expires_at": _iso(account.token_expires_at),
                "token_seconds_left": seconds,
                "token_time_left": words,
                "last_checked_at": _iso(account.last_checked_at),
                "last_error": account.last_error,
                "problem": problem[1] if problem else None,
                "feed": _judged(account.name, feed, now),
            }
        )
    chains = []
    for chain in tracked_chains():
        for expiry in expiries(chain, now=now):
            view = chain_view(chain, expiry, now=now)
            data = view.data
            assert data is None or "strikes" in data  # a view with data: a whole snapshot
            strikes: Strikes = data["strikes"] if data is not None else {}
            chains.append(
                {
                    "underlying": chain.underlying,
                    "expiry": expiry.isoformat(),
                    "account": chain.account.name,
                    "source": view.source,
                    "feed_state": view.feed_state,
                    "freshness": view.freshness.to_json(),
                    "code": view.code,
                    "message": view.message,
                    "seq": data["seq"] if data is not None else None,
                    "as_of": data["as_of"] if data is not None else None,
                    "strikes": len(strikes),
                    **_legs_priced(strikes),
                }
            )
    return {
        "time": now.astimezone(UTC).isoformat(),
        "accounts": accounts,
        "feeds": [_feed_summary(a["name"], raw[a["name"]], now) for a in accounts if a["enabled"]],
        "chains": chains,
        "tasks": _task_outcomes(now),
        "channel_gaps": store.channel_gaps(),
    }


def _token_left(account: BrokerAccount, now: datetime) -> tuple[int | None, str]:
    """(seconds until the token's stored expiry, the same in words).

    The seconds are None, and the words say why, when there is no token, when the broker
    refused it (an account marked expired or refused keeps whatever expiry was stored for the
    token before: that time says nothing any more) or when no expiry is known.
    """
    if not account.has_token:
        return None, "no token"
    if account.status == AccountStatus.TOKEN_EXPIRED:
        how = get_spec(account.kind).token.replace_short
        return None, f"expired (the broker says so): {how} in {ADMIN}"
    if account.status == AccountStatus.AUTH_FAILED:
        return None, f"refused by the broker: fix the credentials in {ADMIN}"
    if account.token_expires_at is None:
        return None, "unknown until the next token check"
    seconds = round((account.token_expires_at - now).total_seconds())
    minutes = abs(seconds) // 60
    text = f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes}m"
    return seconds, text if seconds >= 0 else f"expired {text} ago"


FEED_FIELDS = (
    "state", "error", "connected_since", "ticks_per_second", "last_frame_age", "last_tick_at",
    "reconnects", "decode_errors", "publish_errors", "deltas", "unrouted", "updated_at",
    "retry_at", "lock_held",
)  # fmt: skip


def _judged(account: str, feed: FeedStatus | None, now: datetime) -> dict[str, Any] | None:
    """The raw record with its ``state`` judged (the record's own in ``reported_state``)."""
    if feed is None:
        return None
    health = fresh.feed_health(feed, now=now, account=account)
    return {**feed, "state": health.state, "reported_state": feed["state"]}


def _feed_summary(account: str, feed: FeedStatus | None, now: datetime) -> dict[str, Any]:
    """A feed worker's health: ``state`` "not running" when no record exists, "not reporting"
    when its heartbeat is gone, "lock lost", or the worker's state; ``words`` and ``action``
    say it in words and what to do; ``market`` the broker's market statuses."""
    health = fresh.feed_health(feed, now=now, account=account)
    fields = {key: feed[key] for key in FEED_FIELDS} if feed else dict.fromkeys(FEED_FIELDS)  # type: ignore[literal-required]
    return {
        "account": account,
        **fields,
        "state": health.state,
        "reported_state": feed["state"] if feed else None,
        "feed_state": health.feed_state,
        "connected": health.connected,
        "words": health.words,
        "action": health.action,
        "heartbeat_age": health.heartbeat_age,
        "market": fresh.market_words(feed["market"]) if feed else "–",
    }


def _legs_priced(strikes: Strikes) -> dict[str, int]:
    legs: list[LegJSON] = [leg for sides in strikes.values() for leg in sides.values()]
    priced = sum(1 for leg in legs if leg["ltp"] is not None or leg["prev_close"] is not None)
    return {"legs": len(legs), "legs_priced": priced}


def _task_outcomes(now: datetime) -> list[dict[str, Any]]:
    """Each periodic task's last outcome. A task that never ran is

    - "never run" (start Celery) when no periodic task ever ran;
    - "not due yet" (next at HH:MM) when others ran and no run of its own fell due since
      Celery demonstrably ran (the earliest recorded start);
    - "overdue" when one fell due since then and it still has not run.
    """
    rows = {t.name: t for t in TaskOutcome.objects.all()}
    since = min((t.started_at for t in rows.values()), default=None)
    schedules = beat_schedules()
    out = []
    for name in sorted({*rows, *PERIODIC_TASKS}):
        t = rows.get(name)
        if t is not None:
            state = {True: "ok", False: "failed", None: "running"}[t.ok]
            out.append({"name": t.name, "state": state, "ok": t.ok,
                        "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at),
                        "detail": t.detail})  # fmt: skip
            continue
        state, detail = _never_ran(schedules.get(name, []), since=since, now=now)
        out.append({"name": name, "state": state, "ok": None, "started_at": None,
                    "finished_at": None, "detail": detail})  # fmt: skip
    return out


NEVER_RUN = (
    "Never run: start `celery -A optionsite worker` and `celery -A optionsite beat` "
    "(see README, Processes)."
)

# Beat entries (settings.CELERY_BEAT_SCHEDULE) by (task, forced) → the outcome they record.
_OUTCOME_OF_TASK = {
    ("chains.repopulate_chains", False): REPOPULATE,
    ("chains.repopulate_chains", True): REPOPULATE_FORCED,
    ("brokers.check_tokens", False): CHECK_TOKENS,
    ("brokers.refresh_instruments", False): REFRESH_INSTRUMENTS,
}


def beat_schedules() -> dict[str, list[Any]]:
    """The beat schedules of each recorded task name (one task may run on several)."""
    out: dict[str, list[Any]] = {}
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        forced = bool((entry.get("kwargs") or {}).get("force", False))  # kwargs are optional
        name = _OUTCOME_OF_TASK.get((entry["task"], forced))
        if name is not None:
            out.setdefault(name, []).append(entry["schedule"])
    return out


def next_run(schedule: Any, after: datetime) -> datetime:
    """The first time ``schedule`` (a Celery crontab or an interval) fires after ``after``."""
    if hasattr(schedule, "remaining_delta"):  # crontab: its fields, in the app's zone
        start, delta, _ = schedule.remaining_delta(after)
        return start + delta
    seconds = schedule.total_seconds() if isinstance(schedule, timedelta) else schedule.seconds
    return after + timedelta(seconds=seconds)


def _never_ran(schedules: list[Any], *, since: datetime | None, now: datetime) -> tuple[str, str]:
    if since is None or not schedules:
        return "never run", NEVER_RUN
    due = min(next_run(s, since) for s in schedules)
    if due <= now:
        return "overdue", (
            f"Never run, though due at {_at(due, now)}: other tasks ran, so check that "
            "`celery -A optionsite beat` still runs and read the worker's log."
        )
    upcoming = min(next_run(s, now) for s in schedules)
    return "not due yet", f"Not due yet — next at {_at(upcoming, now)}."


def _at(moment: datetime, now: datetime) -> str:
    """ "06:30 IST", with the day when it is not ``now``'s day: "06:30 IST on Tue 08 Jan"."""
    local, today = moment.astimezone(IST), now.astimezone(IST).date()
    day = "" if local.date() == today else local.strftime(" on %a %d %b")
    return local.strftime("%H:%M IST") + day


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None
