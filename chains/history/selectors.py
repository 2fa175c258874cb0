"""Reads of intraday history: minute bars of a chain over a window, the bar as of a minute,
the expiries recorded on a day, and IV rank from the daily closes."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import F

from brokers.exchange import IST, SESSION_CLOSE, SESSION_OPEN

from ..models import DailyClose, HistoryBar
from .bars import LegColumns, MinuteBar, SideColumns, unpack_legs
from .store import CHAIN_FIELDS

IV_RANK_DAYS = 252  # a year of trading days
# The legs of a bar read without them (chain-level reads): no strikes.
NO_LEGS = LegColumns(strikes=(), ce=SideColumns.empty(0), pe=SideColumns.empty(0))


def session_minutes(
    day: date, start: time = SESSION_OPEN, end: time = SESSION_CLOSE
) -> list[datetime]:
    """Every minute (IST) of ``day`` from ``start`` to ``end``, both included."""
    first = datetime.combine(day, start, tzinfo=IST)
    last = datetime.combine(day, end, tzinfo=IST)
    count = int((last - first).total_seconds() // 60) + 1
    return [first + timedelta(minutes=i) for i in range(max(count, 0))]


def _bar(row: HistoryBar, *, with_legs: bool) -> MinuteBar:
    legs = unpack_legs(bytes(row.legs)) if with_legs else NO_LEGS
    return MinuteBar(
        underlying=row.underlying,
        expiry=row.expiry,
        minute=row.minute.astimezone(IST),
        legs=legs,
        **{name: getattr(row, name) for name in CHAIN_FIELDS},
    )


def window_bars(
    underlying: str, expiry: date, start: datetime, end: datetime, *, with_legs: bool = False
) -> list[MinuteBar]:
    """The chain's bars from ``start`` to ``end`` (both included; one IST day), by minute.
    Without ``with_legs`` the bars' ``legs`` are ``NO_LEGS`` (the chain-level fields only)."""
    rows = HistoryBar.objects.filter(
        underlying=underlying,
        expiry=expiry,
        day=start.astimezone(IST).date(),
        minute__gte=start,
        minute__lte=end,
    ).order_by("minute")
    if not with_legs:
        rows = rows.defer("legs")
    return [_bar(row, with_legs=with_legs) for row in rows]


def bar_as_of(underlying: str, expiry: date, minute: datetime) -> MinuteBar | None:
    """The chain as it stood at ``minute``: the latest bar of that IST day at or before it
    (its ``minute`` says which); None when none was recorded that day by then."""
    row = (
        HistoryBar.objects.filter(
            underlying=underlying,
            expiry=expiry,
            day=minute.astimezone(IST).date(),
            minute__lte=minute,
        )
        .order_by("-minute")
        .first()
    )
    return None if row is None else _bar(row, with_legs=True)


def recorded_expiries(underlying: str, day: date) -> list[date]:
    """The expiries of ``underlying`` with bars recorded on ``day``, nearest first."""
    return sorted(
        set(
            HistoryBar.objects.filter(underlying=underlying, day=day).values_list(
                "expiry", flat=True
            )
        )
    )


@dataclass(frozen=True)
class IvRank:
    """Today's ATM IV against the daily closes: ``rank`` = (IV − low) / (high − low) and
    ``percentile`` = share of the days with a lower IV, both in 0–100 (None when fewer than
    two days or a flat range); ``days`` = the daily closes used (today's included)."""

    underlying: str
    day: date | None  # the day of ``atm_iv``: today, or the last day recorded
    expiry: date | None  # the expiry whose ATM IV that day is used (the nearest)
    atm_iv: float | None
    rank: float | None
    percentile: float | None
    days: int
    low: float | None
    high: float | None


def iv_rank(underlying: str, *, today: date) -> IvRank:
    """IV rank and percentile of ``underlying`` over its last ``IV_RANK_DAYS`` daily closes
    up to ``today``. Each day counts once, with the ATM IV of its nearest expiry not expired
    before that day (and known)."""
    closes = (
        DailyClose.objects.filter(
            underlying=underlying, day__lte=today, expiry__gte=F("day"), atm_iv__isnull=False
        )
        .order_by("-day", "expiry")
        .values_list("day", "expiry", "atm_iv")
    )
    per_day: dict[date, tuple[date, float]] = {}
    for day, expiry, value in closes:
        if day not in per_day:
            if len(per_day) == IV_RANK_DAYS:
                break
            per_day[day] = (expiry, value)
    if not per_day:
        return IvRank(underlying, None, None, None, None, None, 0, None, None)
    latest = max(per_day)
    expiry, current = per_day[latest]
    values = sorted(v for _, v in per_day.values())
    low, high = values[0], values[-1]
    rank = percentile = None
    if len(values) >= 2:
        if high > low:
            rank = round(100 * (current - low) / (high - low), 2)
        percentile = round(100 * bisect.bisect_left(values, current) / len(values), 2)
    return IvRank(underlying, latest, expiry, current, rank, percentile, len(values), low, high)
