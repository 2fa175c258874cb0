"""Reads of intraday history: minute bars of a chain over a window, the bar as of a minute,
the expiries recorded on a day, and IV rank from the daily closes."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import F

from brokers.exchange import IST, SESSION_CLOSE, SESSION_OPEN, expiry_moment

from .. import analytics
from ..contracts import ApiData
from ..exceptions import HistoryCorrupt
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


# The columns a bar is read from, in this order (rows are read as tuples: a request reads up
# to 376 of them, and model instances cost more than the query).
_COLUMNS = ("underlying", "expiry", "minute", *CHAIN_FIELDS)


def _bar(row: tuple[Any, ...], legs: Any = None) -> MinuteBar:
    """The bar of a stored row (``_COLUMNS``), with its packed ``legs`` unpacked when given
    (else ``NO_LEGS``); HistoryCorrupt when they cannot be read."""
    underlying, expiry, minute, *figures = row
    minute = minute.astimezone(IST)
    unpacked = NO_LEGS
    if legs is not None:
        try:
            unpacked = unpack_legs(bytes(legs))
        except ValueError as exc:
            raise HistoryCorrupt(underlying=underlying, expiry=expiry, minute=minute) from exc
    return MinuteBar(
        underlying=underlying,
        expiry=expiry,
        minute=minute,
        legs=unpacked,
        **dict(zip(CHAIN_FIELDS, figures, strict=True)),
    )


def window_bars(
    underlying: str, expiry: date, start: datetime, end: datetime, *, with_legs: bool = False
) -> list[MinuteBar]:
    """The chain's bars from ``start`` to ``end`` (both included; one IST day), by minute.
    Without ``with_legs`` the bars' ``legs`` are ``NO_LEGS`` (the chain-level fields only).
    HistoryCorrupt when a bar's legs are asked for and cannot be read."""
    rows = HistoryBar.objects.filter(
        underlying=underlying,
        expiry=expiry,
        day=start.astimezone(IST).date(),
        minute__gte=start,
        minute__lte=end,
    ).order_by("minute")
    if not with_legs:
        return [_bar(row) for row in rows.values_list(*_COLUMNS)]
    return [_bar(row[:-1], row[-1]) for row in rows.values_list(*_COLUMNS, "legs")]


def bar_as_of(underlying: str, expiry: date, minute: datetime) -> MinuteBar | None:
    """The chain as it stood at ``minute``: the latest bar of that IST day at or before it
    (its ``minute`` says which); None when none was recorded that day by then.
    HistoryCorrupt when that bar's legs cannot be read."""
    row = (
        HistoryBar.objects.filter(
            underlying=underlying,
            expiry=expiry,
            day=minute.astimezone(IST).date(),
            minute__lte=minute,
        )
        .order_by("-minute")
        .values_list(*_COLUMNS, "legs")
        .first()
    )
    return None if row is None else _bar(row[:-1], row[-1])


def recorded_expiries(underlying: str, day: date) -> list[date]:
    """The expiries of ``underlying`` with bars recorded on ``day``, nearest first."""
    # DISTINCT in the database: a day holds 376 rows per expiry, the answer one per expiry.
    return list(
        HistoryBar.objects.filter(underlying=underlying, day=day)
        .order_by("expiry")
        .values_list("expiry", flat=True)
        .distinct()
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


def recorded_minutes(underlying: str, expiry: date, day: date) -> list[datetime]:
    """The minutes (IST, ascending) of ``day`` with a bar of the chain: what replay offers."""
    rows = HistoryBar.objects.filter(underlying=underlying, expiry=expiry, day=day).order_by(
        "minute"
    )
    return [minute.astimezone(IST) for minute in rows.values_list("minute", flat=True)]


def expected_move(spot: float | None, atm_iv: float | None, years: float) -> float | None:
    """The ±1σ move to expiry: spot × ATM IV × √T (T in years, ``analytics.years_to_expiry``).
    None when the spot or the IV is not known, or the expiry has passed (T ≤ 0)."""
    if spot is None or atm_iv is None or years <= 0:
        return None
    return spot * atm_iv * math.sqrt(years)


@dataclass(frozen=True)
class PageHistory:
    """What the chain page's history partials start from (the script refreshes it):
    today's recorded minutes, IV rank, and the expected move of the chain as served."""

    day: date
    minutes: list[datetime]
    iv: IvRank
    expected_move: float | None
    expected_move_pct: float | None  # of the spot, in percent
    expiry_epoch: float  # the expiry's end (15:30 IST), seconds since the epoch: T for the script

    @property
    def config(self) -> dict[str, object]:
        """The page script's starting point (``json_script``): the day, its recorded minutes
        as "HH:MM" (IST) and the expiry's end."""
        return {
            "day": self.day.isoformat(),
            "minutes": [f"{m:%H:%M}" for m in self.minutes],
            "expiry_epoch": self.expiry_epoch,
        }


def chain_atm_iv(data: ApiData) -> float | None:
    """The ATM IV the chain page's header shows: the mean of the IVs known at the ATM strike
    (``presenter.build``); None without an ATM strike or an IV there."""
    atm = data["atm_strike"]
    if atm is None:
        return None
    key = str(int(atm)) if float(atm).is_integer() else f"{atm:g}"
    legs = data["strikes"].get(key)
    if legs is None:  # an ATM strike outside the strikes served: no IV known there
        return None
    ivs = [leg["iv"] for leg in legs.values() if leg["iv"] is not None]
    return sum(ivs) / len(ivs) if ivs else None


def page_history(
    underlying: str,
    expiry: date,
    *,
    data: ApiData | None,
    now: datetime,
    day: date | None = None,
) -> PageHistory:
    """The history figures of the chain page of ``underlying`` ``expiry`` at ``now`` on the
    trading ``day`` (default ``now``'s day in IST; the page passes the chain's trading day,
    ``trading_day.trading_day``), the expected move from ``data`` (the chain as the page serves
    it; None: unknown): its spot and ATM IV (``chain_atm_iv``), T as the page's "To expiry"
    (``analytics.years_to_expiry``)."""
    day = now.astimezone(IST).date() if day is None else day
    spot = None if data is None else data["spot"]
    atm_iv = None if data is None else chain_atm_iv(data)
    move = expected_move(spot, atm_iv, analytics.years_to_expiry(expiry, now))
    return PageHistory(
        day=day,
        minutes=recorded_minutes(underlying, expiry, day),
        iv=iv_rank(underlying, today=day),
        expected_move=move,
        expected_move_pct=None if move is None or not spot else 100 * move / spot,
        expiry_epoch=expiry_moment(expiry).timestamp(),
    )
