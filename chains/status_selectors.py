"""Reads for the status page (``/status/``) and its JSON twin (``/api/v2/status``): accounts and
their tokens, feed workers, the tracked chains as ``selectors.chain_view`` answers them, the
channel layer's gaps, and each periodic task's last outcome (or why it has none)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from brokers.exchange import IST
from brokers.models import AccountStatus, BrokerAccount
from brokers.registry import get_spec

from . import freshness as fresh
from . import store
from .contracts import LegJSON, Strikes
from .feed.status import FeedStatus
from .models import TaskOutcome
from .outcomes import (
    CHECK_TOKENS,
    PERIODIC_TASKS,
    PRUNE_HISTORY,
    REFRESH_INSTRUMENTS,
    REPOPULATE,
    REPOPULATE_FORCED,
)
from .selectors import ADMIN, account_problem, chain_view, expiries, tracked_chains


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
        problem = account_problem(account, now)
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
    "state",
    "error",
    "connected_since",
    "ticks_per_second",
    "last_frame_age",
    "last_tick_at",
    "reconnects",
    "decode_errors",
    "publish_errors",
    "deltas",
    "unrouted",
    "updated_at",
    "retry_at",
    "lock_held",
    "history_recording",
    "history_bars",
    "history_errors",
    "history_last_error",
    "history_last_minute",
)


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
            out.append(
                {
                    "name": t.name,
                    "state": state,
                    "ok": t.ok,
                    "started_at": _iso(t.started_at),
                    "finished_at": _iso(t.finished_at),
                    "detail": t.detail,
                }
            )
            continue
        state, detail = _never_ran(schedules.get(name, []), since=since, now=now)
        out.append(
            {
                "name": name,
                "state": state,
                "ok": None,
                "started_at": None,
                "finished_at": None,
                "detail": detail,
            }
        )
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
    ("chains.prune_history", False): PRUNE_HISTORY,
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
