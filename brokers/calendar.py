"""Selectors of the exchange calendar: the holiday table read for the pure calendar.

``brokers.exchange`` decides (weekends, session hours, the state of the market); this module
only reads ``ExchangeHoliday`` rows, caches them per process for ``CACHE_SECONDS`` (an edit
in admin reaches every process within a minute) and answers the questions the beat tasks,
the freshness state and the status page ask.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import date, datetime

from django.utils import timezone

from .exchange import (
    Exchange,
    Holidays,
    MarketState,
    closed_day_reason,
    ist,
    market_state,
    next_open,
)
from .models import ExchangeHoliday

CACHE_SECONDS = 60.0

_cache: dict[tuple[Exchange, int], tuple[float, dict[date, str]]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached year (the next read goes to the database)."""
    with _lock:
        _cache.clear()


def _year(exchange: Exchange, year: int) -> dict[date, str]:
    key = (exchange, year)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    rows = ExchangeHoliday.objects.filter(exchange=exchange.value, date__year=year)
    days = dict(rows.values_list("date", "name"))
    with _lock:
        _cache[key] = (now, days)
    return days


def holidays(exchange: Exchange | str, years: Iterable[int]) -> Holidays:
    """The trading holidays of ``exchange`` in ``years`` as ``{date: name}`` for the pure
    functions of ``brokers.exchange``. Raises ValueError for an unknown exchange."""
    exchange = Exchange(exchange)
    merged: dict[date, str] = {}
    for year in sorted(set(years)):
        merged.update(_year(exchange, year))
    return merged


def _around(now: datetime) -> tuple[int, int]:
    """The years a question at ``now`` can touch: this one and the next (the next open)."""
    year = ist(now).year
    return year, year + 1


def market_state_now(exchange: Exchange | str, *, now: datetime | None = None) -> MarketState:
    """The market of ``exchange`` at ``now`` (default: the current time) by the calendar."""
    now = timezone.now() if now is None else now
    return market_state(now, holidays(exchange, _around(now)))


def market_closed_reason(exchange: Exchange | str, now: datetime | None = None) -> str | None:
    """Why the regular session of ``exchange`` is not running at ``now`` (default: the current
    time) — "weekend", "holiday: <name>", "before open", "pre-open", "after close" — or None
    when it is open. For the periodic tasks that work through market hours."""
    state = market_state_now(exchange, now=now)
    return None if state.is_open else state.reason


def trading_day_closed_reason(exchange: Exchange | str, day: date | None = None) -> str | None:
    """Why ``exchange`` does not trade at all on ``day`` (default: today in IST) — "weekend"
    or "holiday: <name>" — or None on a trading day. For the once-a-day tasks scheduled
    outside the session (after the close, before the open)."""
    day = ist(timezone.now()).date() if day is None else day
    return closed_day_reason(day, holidays(exchange, [day.year]))


def next_open_now(exchange: Exchange | str, *, now: datetime | None = None) -> datetime:
    """When the regular session of ``exchange`` next opens after ``now`` (aware, IST).

    Raises ValueError when the holiday table leaves no trading day within two months.
    """
    now = timezone.now() if now is None else now
    local = ist(now)
    return next_open(now, holidays(exchange, range(local.year, local.year + 2)))


def calendar_gaps(*, now: datetime | None = None) -> list[str]:
    """What a person must do so the calendar stays right: one message per exchange and year
    (this one, and the next from 1 December) that has no confirmed holiday. An empty list when
    nothing is missing. For the status page and a system check."""
    now = timezone.now() if now is None else now
    local = ist(now)
    years = [local.year] + ([local.year + 1] if local.month == 12 else [])
    confirmed = set(
        ExchangeHoliday.objects.filter(date__year__in=years)
        .exclude(source="")
        .values_list("exchange", "date__year")
    )
    return [
        f"No confirmed {exchange} trading holidays for {year}: add them in admin → Exchange "
        f"holidays from the exchange's circular (every weekday trades until then)."
        for exchange in Exchange
        for year in years
        if (exchange.value, year) not in confirmed
    ]
