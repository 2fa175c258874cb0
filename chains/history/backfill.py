"""Daily closes from the brokers' historical APIs: the service behind ``backfillhistory``.

For each enabled chain an account tracks, and each of the last N trading days before today (the
exchange calendar: weekends and ``ExchangeHoliday`` rows are skipped and said so), it writes
the day's ``DailyClose`` from the account's broker (``FeedAdapter.daily_history``): DhanHQ's
expired-options history gives spot, ATM strike, ATM IV and the straddle; Upstox's candles give
the spot only. A figure the broker does not give is None, never estimated. Rows are marked
``source = "backfill:<kind>"``.

Rules: a day with a close recorded live is never touched; re-running replaces the day's
backfilled row (one per underlying and day, whatever the expiry it names); the expiry of a past
day is the nearest one on or after it, by the cadence (weekday, weekly or monthly) of the
expiries the account lists now, moved to the trading day before a holiday. Transient broker
failures are retried by the REST client's policy; a failure that remains stops the run with the
broker's message (a refusal of the account also marks it, as the other REST callers do).
"""

from __future__ import annotations

import calendar
import itertools
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction

from brokers.accounts import ADMIN, config_of, load_account, mark_account
from brokers.adapters import (
    AccountConfig,
    DayClose,
    HistoryAsk,
    InstrumentRef,
    account_status_for,
    adapter_for,
)
from brokers.calendar import holidays as exchange_holidays
from brokers.exceptions import BrokerError, FeedConfigError
from brokers.exchange import IST, closed_day_reason, exchange_for
from brokers.models import Instrument, InstrumentKind, TrackedChain
from brokers.registry import get_spec

from ..exceptions import BackfillError
from ..models import DailyClose

logger = logging.getLogger(__name__)

LIVE = "live"
SOURCE_PREFIX = "backfill:"


@dataclass(frozen=True)
class Cadence:
    """How an underlying's options expire: weekly on ``weekday``, or monthly on the last
    ``weekday`` of the month."""

    weekly: bool
    weekday: int

    def expiry_on_or_after(self, day: date, closed: dict[date, str]) -> date:
        """The nearest expiry on or after ``day``; one falling on a closed day moves to the
        trading day before it (if that is before ``day``, the next expiry is taken)."""
        candidate = self._next(day)
        for _ in range(8):
            moved = candidate
            while closed_day_reason(moved, closed) is not None:
                moved -= timedelta(days=1)
            if moved >= day:
                return moved
            candidate = self._next(candidate + timedelta(days=1))
        raise BackfillError(f"no expiry found after {day}: check the exchange holidays")

    def _next(self, day: date) -> date:
        if self.weekly:
            return day + timedelta(days=(self.weekday - day.weekday()) % 7)
        year, month = day.year, day.month
        while True:
            last = date(year, month, calendar.monthrange(year, month)[1])
            expiry = last - timedelta(days=(last.weekday() - self.weekday) % 7)
            if expiry >= day:
                return expiry
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def cadence_of(expiries: list[date]) -> Cadence:
    """The cadence of listed expiries: weekly when two of them are 7 days apart."""
    ordered = sorted(set(expiries))
    for a, b in itertools.pairwise(ordered):
        if (b - a).days == 7:
            return Cadence(weekly=True, weekday=a.weekday())
    return Cadence(weekly=False, weekday=ordered[-1].weekday())


@dataclass
class DayLine:
    """What the backfill did with one day of one underlying."""

    underlying: str
    day: date
    wrote: bool
    why: str

    def text(self) -> str:
        verb = "wrote" if self.wrote else "skipped"
        return f"{self.underlying} {self.day}: {verb} — {self.why}"


@dataclass
class BackfillReport:
    """Per day what was written or skipped and why, and what the broker's history lacks."""

    account: str
    lines: list[DayLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return sum(line.wrote for line in self.lines)


@dataclass(frozen=True)
class _Chain:
    underlying: str
    index: InstrumentRef
    option_segment: str
    cadence: Cadence
    closed: dict[date, str]


def backfill_history(*, account: str, days: int, today: date | None = None) -> BackfillReport:
    """Write the daily closes of the last ``days`` trading days before ``today`` (default:
    today in IST) of every chain ``account`` tracks; returns what was done per day.

    Raises BackfillError for ``days`` outside 1..HISTORY_DAILY_DAYS or an account without
    chains or instruments, FeedConfigError for an unknown, disabled or token-less account
    (the message says what to do), BrokerError when the broker refuses or keeps failing.
    """
    keep = settings.HISTORY_DAILY_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= keep:
        raise BackfillError(
            f"--days {days}: give 1 to {keep} (daily closes are kept {keep} days, "
            "HISTORY_DAILY_DAYS)"
        )
    today = today or datetime.now(IST).date()
    row = load_account(account)
    spec = get_spec(row.kind)
    if row.token_expired():
        how = spec.token.how_to_replace(admin=ADMIN, name=account)
        raise FeedConfigError(
            f"The access token of broker account {account!r} expired at "
            f"{row.token_expires_at:%Y-%m-%d %H:%M}: {how}, then run the backfill again."
        )
    chains = [_chain(c, today, days) for c in _tracked(row.pk, account)]
    report = BackfillReport(account=account)
    source = SOURCE_PREFIX + row.kind
    async_to_sync(_fetch_and_write)(config_of(row), chains, today, days, source, report)
    return report


def _tracked(account_id: int, name: str) -> list[TrackedChain]:
    chains = list(
        TrackedChain.objects.filter(account_id=account_id, enabled=True).select_related(
            "index_instrument"
        )
    )
    if not chains:
        raise BackfillError(
            f"Broker account {name!r} tracks no chain: add one in admin → Tracked chains."
        )
    return chains


def _chain(tracked: TrackedChain, today: date, days: int) -> _Chain:
    options = Instrument.objects.filter(
        account_id=tracked.account_id, kind=InstrumentKind.OPTION, underlying=tracked.underlying
    )
    expiries = list(options.values_list("expiry", flat=True).distinct())
    segment = options.values_list("segment", flat=True).first()
    if not expiries or segment is None:
        raise BackfillError(
            f"No option instruments of {tracked.underlying} for this account: load the "
            "instrument master first (python manage.py loadinstruments)."
        )
    # Enough years for the span (a trading day per ~1.4 calendar days) and the next expiry.
    first_year = (today - timedelta(days=days * 2 + 10)).year
    closed = dict(
        exchange_holidays(exchange_for(tracked.underlying), range(first_year, today.year + 2))
    )
    index = tracked.index_instrument
    return _Chain(
        underlying=tracked.underlying,
        index=InstrumentRef(index.segment, index.broker_id),
        option_segment=segment,
        cadence=cadence_of([e for e in expiries if e is not None]),
        closed=closed,
    )


def trading_days(
    today: date, count: int, closed: dict[date, str]
) -> tuple[list[date], dict[date, str]]:
    """The ``count`` trading days before ``today``, newest first, and the holidays (weekdays
    closed) met on the way with their reasons."""
    out: list[date] = []
    holidays: dict[date, str] = {}
    day = today
    while len(out) < count:
        day -= timedelta(days=1)
        reason = closed_day_reason(day, closed)
        if reason is None:
            out.append(day)
        elif day.weekday() < 5:
            holidays[day] = reason
    return out, holidays


async def _fetch_and_write(
    config: AccountConfig,
    chains: list[_Chain],
    today: date,
    count: int,
    source: str,
    report: BackfillReport,
) -> None:
    adapter = adapter_for(config)
    try:
        for chain in chains:
            days, holidays = trading_days(today, count, chain.closed)
            live = await sync_to_async(_live_days)(chain.underlying, days)
            wanted = tuple(d for d in days if d not in live)
            closes: dict[date, DayClose] = {}
            if wanted:
                ask = HistoryAsk(
                    underlying=chain.underlying,
                    index=chain.index,
                    option_segment=chain.option_segment,
                    weekly=chain.cadence.weekly,
                    days=wanted,
                )
                try:
                    closes, note = await adapter.daily_history(ask)
                except BrokerError as exc:
                    status = account_status_for(exc)
                    if status is not None:
                        await sync_to_async(mark_account)(config.name, status, exc.message)
                    raise
                if note and note not in report.notes:
                    report.notes.append(note)
            lines = await sync_to_async(_write)(chain, days, holidays, live, closes, source)
            report.lines.extend(lines)
    finally:
        await adapter.aclose()


def _live_days(underlying: str, days: list[date]) -> set[date]:
    return set(
        DailyClose.objects.filter(underlying=underlying, day__in=days)
        .exclude(source__startswith=SOURCE_PREFIX)
        .values_list("day", flat=True)
    )


def _write(
    chain: _Chain,
    days: list[date],
    holidays: dict[date, str],
    live: set[date],
    closes: dict[date, DayClose],
    source: str,
) -> list[DayLine]:
    label = source.removeprefix(SOURCE_PREFIX)
    lines = [DayLine(chain.underlying, d, False, why) for d, why in holidays.items()]
    for day in days:
        if day in live:
            # A backfilled row of another expiry that day would stand beside the live one.
            stale, _ = DailyClose.objects.filter(
                underlying=chain.underlying, day=day, source__startswith=SOURCE_PREFIX
            ).delete()
            why = "recorded live (kept as it is" + (
                "; the backfilled row removed)" if stale else ")"
            )
            lines.append(DayLine(chain.underlying, day, False, why))
            continue
        close = closes.get(day)
        if close is None:
            lines.append(DayLine(chain.underlying, day, False, f"{label} has no data for it"))
            continue
        expiry = chain.cadence.expiry_on_or_after(day, chain.closed)
        with transaction.atomic():
            if _live_days(chain.underlying, [day]):  # recorded live meanwhile: keep it
                lines.append(DayLine(chain.underlying, day, False, "recorded live (kept)"))
                continue
            DailyClose.objects.filter(underlying=chain.underlying, day=day).exclude(
                expiry=expiry
            ).filter(source__startswith=SOURCE_PREFIX).delete()
            DailyClose.objects.update_or_create(
                underlying=chain.underlying,
                expiry=expiry,
                day=day,
                defaults={
                    "minute": close.at,
                    "spot": close.spot,
                    "forward": None,
                    "atm_strike": close.atm_strike,
                    "atm_iv": close.atm_iv,
                    "straddle": close.straddle,
                    "pcr": None,
                    "max_pain": None,
                    "ce_oi": None,
                    "pe_oi": None,
                    "ce_oi_change": None,
                    "pe_oi_change": None,
                    "source": source,
                },
            )
        lines.append(DayLine(chain.underlying, day, True, _describe(close, expiry)))
    return sorted(lines, key=lambda line: line.day, reverse=True)


def _describe(close: DayClose, expiry: date) -> str:
    parts = [f"expiry {expiry}"]
    if close.spot is not None:
        parts.append(f"spot {close.spot:,.2f}")
    if close.atm_strike is not None:
        parts.append(f"ATM {close.atm_strike:g}")
    parts.append("ATM IV " + ("n/a" if close.atm_iv is None else f"{close.atm_iv * 100:.2f} %"))
    return ", ".join(parts)
