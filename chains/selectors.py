"""Reads for pages, the JSON API, consumers and status: what a chain shows and why.

``chain_view`` decides a chain's answer in one place, so the API, the page and the WebSocket
give the same reasons: live data (200), or a named failure (``credentials_missing``,
``token_expired``, ``feed_down``, ``not_populated``) with what to do — plus the last known data
when there is some, labelled by ``source`` (``live``, ``last_known``, ``closing``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from django.utils import timezone

from brokers.exchange import IST
from brokers.models import AccountStatus, BrokerAccount, TrackedChain

from . import store
from .models import ChainSnapshot, TaskOutcome
from .outcomes import PERIODIC_TASKS
from .plan import nearest_expiries

CLOSE = time(15, 30)
LIVE_STATES = {"live", "quiet"}
ADMIN = "admin → Broker accounts"


@dataclass
class ChainView:
    """What to answer for one chain: ``data`` (may be None) and, when not live, why."""

    underlying: str
    expiry: date
    account: BrokerAccount
    data: dict[str, Any] | None
    source: str | None
    code: str | None = None
    message: str = ""
    feed: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.code is None

    @property
    def feed_state(self) -> str:
        return self.feed["state"] if self.feed else "down"


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
    """Decide what to show for (chain, expiry): data, its source and the failure if any.

    ``with_data=False`` reads only the small meta record (for status polling): ``data`` is
    then the meta record, without strikes.
    """
    now = now or timezone.now()
    account = chain.account
    feed = store.read_feed_status(account.name)
    if with_data:
        snapshot = store.read_snapshot(chain.underlying, expiry)
    else:
        snapshot = store.read_meta(chain.underlying, expiry)
    view = ChainView(chain.underlying, expiry, account, None, None, feed=feed)
    if snapshot is not None:
        view.data, view.source = snapshot, "live"
    else:
        persisted = (
            ChainSnapshot.objects.filter(
                account=account, underlying=chain.underlying, expiry=expiry
            )
            .only("as_of", *(["data"] if with_data else []))
            .first()
        )
        if persisted is not None:
            data = persisted.data if with_data else {"as_of": persisted.as_of.isoformat()}
            view.data, view.source = data, _persisted_source(persisted.as_of)
    problem = _account_problem(account, now)
    if problem is not None:
        view.code, view.message = problem
    elif feed is None or feed.get("state") not in LIVE_STATES:
        state = feed.get("state") if feed else "not running"
        view.code = "feed_down"
        view.message = (
            f"The feed of account '{account.name}' is {state}"
            + (f" ({feed['error']})" if feed and feed.get("error") else "")
            + ": start `python manage.py runfeed` or see /status/."
        )
    elif snapshot is None or not snapshot.get("ready"):
        view.code = "not_populated"
        reason = snapshot.get("reason") if snapshot else "no data received yet"
        view.message = f"{chain.underlying} {expiry.isoformat()} is not populated yet: {reason}."
    if view.code is not None and view.source == "live":
        view.source = "last_known"
    if view.data is not None:
        view.data = {**view.data, "source": view.source}
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
        how = "log in to Upstox again" if account.kind == "upstox" else "enter a new token"
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


def _persisted_source(as_of: datetime) -> str:
    local = as_of.astimezone(IST)
    today = timezone.now().astimezone(IST).date()
    return "closing" if local.time() >= CLOSE or local.date() < today else "last_known"


# --- status --------------------------------------------------------------------------------------


def system_status(*, now: datetime | None = None) -> dict[str, Any]:
    """Accounts, feed workers, chains and periodic tasks, for /status/ and /api/v2/status."""
    now = now or timezone.now()
    accounts = []
    for account in BrokerAccount.objects.order_by("name"):
        feed = store.read_feed_status(account.name)
        left = (
            (account.token_expires_at - now).total_seconds() if account.token_expires_at else None
        )
        problem = _account_problem(account, now)
        accounts.append(
            {
                "name": account.name,
                "broker": account.kind,
                "enabled": account.enabled,
                "status": account.status,
                "token_present": account.has_token,
                "token_expires_at": _iso(account.token_expires_at),
                "token_seconds_left": round(left) if left is not None else None,
                "last_checked_at": _iso(account.last_checked_at),
                "last_error": account.last_error,
                "problem": problem[1] if problem else None,
                "feed": feed,
            }
        )
    chains = []
    for chain in tracked_chains():
        for expiry in expiries(chain, now=now):
            view = chain_view(chain, expiry, now=now)
            data = view.data or {}
            chains.append(
                {
                    "underlying": chain.underlying,
                    "expiry": expiry.isoformat(),
                    "account": chain.account.name,
                    "source": view.source,
                    "code": view.code,
                    "message": view.message,
                    "seq": data.get("seq"),
                    "as_of": data.get("as_of"),
                    "strikes": len(data.get("strikes") or {}),
                    **_legs_priced(data.get("strikes") or {}),
                }
            )
    return {
        "time": now.astimezone(UTC).isoformat(),
        "accounts": accounts,
        "feeds": [_feed_summary(a["name"], a["feed"]) for a in accounts if a["enabled"]],
        "chains": chains,
        "tasks": _task_outcomes(),
        "channel_gaps": store.channel_gaps(),
    }


FEED_FIELDS = (
    "state", "error", "connected_since", "ticks_per_second", "last_frame_age", "reconnects",
    "decode_errors", "publish_errors", "deltas", "unrouted", "updated_at",
)  # fmt: skip


def _feed_summary(account: str, feed: dict[str, Any] | None) -> dict[str, Any]:
    """A feed worker's health (``state`` "not running" when no worker refreshed its status)."""
    if feed is None:
        return {"account": account, **dict.fromkeys(FEED_FIELDS), "state": "not running"}
    return {"account": account, **{key: feed.get(key) for key in FEED_FIELDS}}


def _legs_priced(strikes: dict[str, dict[str, dict[str, Any]]]) -> dict[str, int]:
    legs = [leg for sides in strikes.values() for leg in sides.values()]
    priced = sum(
        1 for leg in legs if leg.get("ltp") is not None or leg.get("prev_close") is not None
    )
    return {"legs": len(legs), "legs_priced": priced}


def _task_outcomes() -> list[dict[str, Any]]:
    """Each periodic task's last outcome; a scheduled task that never ran says so."""
    rows = {t.name: t for t in TaskOutcome.objects.all()}
    out = []
    for name in sorted({*rows, *PERIODIC_TASKS}):
        t = rows.get(name)
        if t is None:
            out.append({"name": name, "state": "never run", "ok": None, "started_at": None,
                        "finished_at": None, "detail": NEVER_RUN})  # fmt: skip
            continue
        state = {True: "ok", False: "failed", None: "running"}[t.ok]
        out.append({"name": t.name, "state": state, "ok": t.ok, "started_at": _iso(t.started_at),
                    "finished_at": _iso(t.finished_at), "detail": t.detail})  # fmt: skip
    return out


NEVER_RUN = (
    "Never run: start `celery -A optionsite worker` and `celery -A optionsite beat` "
    "(see README, Processes)."
)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None
