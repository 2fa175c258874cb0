"""REST repopulation of tracked chains: the service behind the ``repopulate chains`` task.

What it does per enabled account with tracked chains:

1. **Decide.** A chain is fetched when ``force`` is set (market open/close), when the account's
   feed is not live (its status in Redis is missing or not ``live``/``quiet``), or when the
   chain's snapshot is missing or not ready. Otherwise the live feed keeps it current.
2. **Fetch** the broker's REST option chains with one adapter per account, so the broker's rate
   limits (Dhan: one option chain per 3 s) hold across the whole run. A permanent refusal of
   the account (expired token, no data plan) marks the account and stops its fetches.
3. **Write, one writer per chain.** While a feed worker holds the account's lock it is the
   chain's only writer: the REST chain is handed to it (``ownership.hand_over_rest_chain``) and
   it merges it into its book. Otherwise the REST rows are merged here with the chain book's
   newer-wins rule — a book seeded from the Redis snapshot (every leg observed at the
   snapshot's ``as_of``), the REST rows applied as observed at the fetch start — and written
   with an optimistic lock (``ownership.replace_snapshot``): a snapshot written by anyone after
   our read is merged again, never overwritten, and a snapshot whose ``as_of`` is newer than
   the fetch start is kept as it is. Then the delta is published to the chain's group and the
   snapshot saved to the database (unless the stored one is newer).

Failures are collected; after everything else was done ``RepopulateFailed`` lists them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from brokers.accounts import config_of, load_account, mark_account
from brokers.adapters import AccountConfig, RestChain, account_status_for, adapter_for
from brokers.calendar import market_closed_reason, trading_day_closed_reason
from brokers.exceptions import BrokerError, FeedConfigError
from brokers.exchange import exchange_for, ist
from brokers.models import BrokerAccount, TrackedChain

from . import store
from .book import ChainBook, stored_snapshot
from .contracts import Delta, StoredSnapshot, chain_delta_event, leg_book_fields
from .exceptions import ContractError, RepopulateFailed, SnapshotContention
from .freshness import feed_health
from .models import ChainSnapshot
from .outcomes import Outcome
from .ownership import RestHandover, hand_over_rest_chain, lock_key, replace_snapshot
from .plan import ChainPlan, plan_chains

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One account's part of a run: its settings and the chains to fetch."""

    account: BrokerAccount
    config: AccountConfig
    plans: list[ChainPlan]
    fetched: list[tuple[ChainPlan, float, RestChain | BrokerError]] = field(default_factory=list)


# --- pure merge ----------------------------------------------------------------------------------


def seed_book(book: ChainBook, snapshot: StoredSnapshot) -> None:
    """Load a stored snapshot into a fresh ``book``: leg fields, exchange times, spot and its
    previous close, ``run``, ``seq`` and ``as_of``, all as observed at the snapshot's
    ``as_of``. Leaves no leg pending."""
    as_of = datetime.fromisoformat(snapshot["as_of"]) if snapshot["as_of"] else None
    observed = as_of.timestamp() if as_of is not None else 0.0
    for sides in snapshot["strikes"].values():
        for leg in sides.values():
            instrument = leg["instrument_id"]
            if instrument not in book.legs:
                continue
            fields, exchange_time = leg_book_fields(leg)
            book.apply_fields(instrument, fields, observed)
            if exchange_time is not None:
                book.legs[instrument].exchange_time = exchange_time
    if snapshot["spot"]:
        book.apply_spot_value(snapshot["spot"], observed)
    if snapshot["spot_prev_close"] is not None:
        book.apply_spot_prev_close(snapshot["spot_prev_close"])
    book.seq = snapshot["seq"]
    book.run = snapshot["run"]
    book.as_of = as_of
    book.dirty.clear()
    book.header_dirty = False


def book_for(plan: ChainPlan, current: StoredSnapshot | None, spot: float | None) -> ChainBook:
    """The chain book to merge into: the legs the stored snapshot shows (the feed worker's
    strike window), or without a snapshot the plan's window centred on ``spot``."""
    if current is not None:
        shown = {leg["instrument_id"] for s in current["strikes"].values() for leg in s.values()}
        legs = [leg for leg in plan.legs if leg.ref.broker_id in shown]
        if legs:
            return ChainPlan(
                plan.underlying, plan.expiry, plan.index, plan.lot_size, plan.window, legs
            ).new_book()
    return plan.narrowed(spot).new_book()


def merge_rest_chain(
    *,
    plan: ChainPlan,
    current: StoredSnapshot | None,
    rest: RestChain,
    observed_at: float,
    account: str,
    broker: str,
    now: datetime,
) -> tuple[StoredSnapshot, Delta] | None:
    """Merge a REST chain fetched at ``observed_at`` (epoch seconds) into ``current``.

    Returns (snapshot to store, delta to publish), or None when ``current`` is newer than the
    fetch (its ``as_of`` is after ``observed_at``) or the REST chain changes nothing.
    """
    as_of = current["as_of"] if current is not None else None
    if as_of and datetime.fromisoformat(as_of).timestamp() > observed_at:
        return None
    book = book_for(plan, current, rest.spot)
    if current is not None:
        seed_book(book, current)
    book.apply_rest(rest.spot, rest.rows, observed_at)
    delta = book.flush(now)
    if delta is None:
        return None
    return stored_snapshot(book, account=account, broker=broker), delta


# --- the run -------------------------------------------------------------------------------------


def chains_repopulate(
    *,
    outcome: Outcome,
    account: str | None = None,
    force: bool = False,
    calendar: bool = False,
    now: datetime | None = None,
) -> None:
    """Repopulate the chains of ``account`` (default: every enabled account tracking a chain).

    With ``calendar`` (the beat schedule's runs) a chain whose exchange does not trade is
    skipped and says why: the every-minute run needs the regular session open, the forced
    runs at the open and after the close a trading day (``brokers.calendar``); ``now`` is
    the moment to judge (default: the current time). Reports one line per chain in
    ``outcome``. Raises RepopulateFailed listing every account or chain that could not be
    refreshed (after the others were), ImproperlyConfigured without a channel layer.
    """
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("No channel layer: CHANNEL_LAYERS is not configured.")
    failures: list[str] = []
    jobs = []
    for name in _account_names(account):
        try:
            job = _job(name, force=force, outcome=outcome, calendar=calendar, now=now)
        except FeedConfigError as exc:
            failures.append(f"{name}: {exc}")
            continue
        if job is not None:
            jobs.append(job)
    if jobs:
        asyncio.run(_fetch_all(jobs))
    elif not failures:
        outcome.add("Nothing to fetch.")
    for job in jobs:
        for plan, started, result in job.fetched:
            where = f"{job.account.name} {plan.underlying} {plan.expiry.isoformat()}"
            if isinstance(result, BrokerError):
                failures.append(f"{where}: {result}")
                status = _refused(result)
                if status is not None:
                    mark_account(job.account.name, status, str(result))
                continue
            try:
                outcome.add(f"{where}: {_store(job, plan, started, result, layer)}")
            except (SnapshotContention, ContractError, RedisError) as exc:
                failures.append(f"{where}: {exc}")
    if failures:
        raise RepopulateFailed(f"{len(failures)} failure(s): " + "; ".join(failures))


def _account_names(account: str | None) -> list[str]:
    if account is not None:
        return [account]
    tracked = TrackedChain.objects.filter(enabled=True, account__enabled=True)
    return sorted(set(tracked.values_list("account__name", flat=True)))


def _job(
    name: str, *, force: bool, outcome: Outcome, calendar: bool, now: datetime | None
) -> Job | None:
    """The account's chains to fetch now (None: none). Raises FeedConfigError."""
    account = load_account(name)
    plans = plan_chains(account)
    # A worker that holds the lock, reports on time and has its broker socket open keeps its
    # chains current; anything less (not running, frozen, reconnecting) needs REST.
    health = feed_health(store.read_feed_status(name), now=now or timezone.now(), account=name)
    live = health.connected
    todo = []
    for plan in plans:
        if calendar:
            closed = _closed(plan.underlying, force=force, now=now)
            if closed is not None:
                where = f"{name} {plan.underlying} {plan.expiry.isoformat()}"
                outcome.add(f"{where}: market closed ({closed}), skipped")
                continue
        meta = store.read_meta(plan.underlying, plan.expiry)
        if force or not live or meta is None or not meta["ready"]:
            todo.append(plan)
        else:
            outcome.add(f"{name} {plan.underlying} {plan.expiry.isoformat()}: fed live, skipped")
    if not todo:
        return None
    return Job(account, config_of(account), todo)


def _closed(underlying: str, *, force: bool, now: datetime | None) -> str | None:
    """Why the beat's repopulate skips ``underlying`` now, or None to go ahead."""
    exchange = exchange_for(underlying)
    if force:  # at the open and after the close: any trading day
        day = None if now is None else ist(now).date()
        return trading_day_closed_reason(exchange, day)
    return market_closed_reason(exchange, now)


async def _fetch_all(jobs: Sequence[Job]) -> None:
    """Fetch every job's chains; accounts run concurrently, each account's chains in turn."""
    await asyncio.gather(*(_fetch(job) for job in jobs))


async def _fetch(job: Job) -> None:
    adapter = adapter_for(job.config)  # one per account and run: its rate limiters are shared
    try:
        for plan in job.plans:
            started = time.time()
            try:
                result: RestChain | BrokerError = await adapter.option_chain(
                    plan.index, plan.expiry
                )
            except BrokerError as exc:
                result = exc
            job.fetched.append((plan, started, result))
            if _refused(result) is not None:
                return  # the broker refuses the account itself: asking again cannot help
    finally:
        await adapter.aclose()


def _refused(result: RestChain | BrokerError) -> str | None:
    """The account status when ``result`` is the broker refusing the account, else None."""
    if isinstance(result, BrokerError) and result.permanent:
        return account_status_for(result)
    return None


def _store(job: Job, plan: ChainPlan, started: float, rest: RestChain, layer: Any) -> str:
    """Write one fetched chain (or hand it to the feed worker); returns what happened."""
    name = job.account.name
    merged: list[Delta] = []

    def merge(current: StoredSnapshot | None) -> StoredSnapshot | None:
        merged.clear()
        result = merge_rest_chain(
            plan=plan,
            current=current,
            rest=rest,
            observed_at=started,
            account=name,
            broker=job.account.kind,
            now=datetime.now(UTC),
        )
        if result is None:
            return None
        merged.append(result[1])
        return result[0]

    write = replace_snapshot(plan.underlying, plan.expiry, merge, owner_key=lock_key(name))
    if write.owned:
        hand_over_rest_chain(
            name, RestHandover(plan.underlying, plan.expiry, started, rest.spot, rest.rows)
        )
        return f"{len(rest.rows)} legs from REST handed to the running feed worker"
    if write.written is None:
        return "kept the stored snapshot: it is newer than the fetch or the same"
    snapshot, delta = write.written, merged[0]
    async_to_sync(layer.group_send)(
        store.group_name(plan.underlying, plan.expiry),
        chain_delta_event(underlying=plan.underlying, expiry=plan.expiry.isoformat(), delta=delta),
    )
    saved = _persist(job.account, plan.underlying, plan.expiry, snapshot)
    return (
        f"{len(rest.rows)} legs from REST written (seq {snapshot['seq']}, "
        f"{'ready' if snapshot['ready'] else 'not ready: ' + snapshot['reason']})"
        + ("" if saved else "; the database holds a newer snapshot")
    )


def _persist(account: BrokerAccount, underlying: str, expiry: date, snap: StoredSnapshot) -> bool:
    """Save the snapshot (one just merged, so flushed: it has an ``as_of``) unless the database
    holds a newer one; True when saved."""
    assert snap["as_of"] is not None, "a merged snapshot was flushed"
    as_of = datetime.fromisoformat(snap["as_of"])
    with transaction.atomic():
        row = (
            ChainSnapshot.objects.select_for_update()
            .filter(account=account, underlying=underlying, expiry=expiry)
            .first()
        )
        if row is not None and row.as_of > as_of:
            return False
        ChainSnapshot.objects.update_or_create(
            account=account,
            underlying=underlying,
            expiry=expiry,
            defaults={"seq": snap["seq"], "as_of": as_of, "data": snap},
        )
    return True
