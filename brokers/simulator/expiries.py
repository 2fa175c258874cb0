"""Which option expiries the simulated exchanges list on a given day. Pure Python, no Django.

The rules of today's Indian index options (sources in ``brokers.simulator.specs``):

* an underlying with a weekly weekday lists its next ``weeklies`` weekly expiries (NIFTY on
  Tuesdays, SENSEX on Thursdays) and its next ``monthlies`` monthly ones; every other underlying
  lists monthlies only;
* the monthly expiry is the last such weekday of the month; a weekly that falls on the same day
  is that month's monthly, listed once, as monthly;
* an expiry whose day is not a trading day (a weekend or one of the exchange's ``holidays``)
  moves to the trading day before it — and stays weekly or monthly as it was;
* an expiry is listed until 15:30 IST on its day.

Quarterly and half-yearly far months are not listed.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta

from brokers.exchange import IST, MAX_CLOSED_DAYS, Holidays, is_trading_day

from .specs import UnderlyingSpec

EXPIRY_TIME = time(15, 30)  # options expire at the close, 15:30 IST
NO_HOLIDAYS: Holidays = {}


def last_weekday_of_month(year: int, month: int, weekday: int) -> date:
    """Return the last ``weekday`` (Monday = 0) of the month."""
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def expiry_close(day: date) -> datetime:
    """Return the aware datetime at which an option of expiry ``day`` stops trading."""
    return datetime.combine(day, EXPIRY_TIME, tzinfo=IST)


def trading_day_on_or_before(day: date, holidays: Holidays) -> date:
    """``day`` if it is a trading day, else the last trading day before it. Raises ValueError
    when no trading day is found within ``MAX_CLOSED_DAYS`` (the holidays are bad data)."""
    for back in range(MAX_CLOSED_DAYS + 1):
        candidate = day - timedelta(days=back)
        if is_trading_day(candidate, holidays):
            return candidate
    raise ValueError(
        f"no trading day in the {MAX_CLOSED_DAYS} days up to {day.isoformat()}: the holiday "
        "list is wrong"
    )


def expiries_for(
    spec: UnderlyingSpec,
    now: datetime,
    *,
    weeklies: int = 4,
    monthlies: int = 3,
    holidays: Holidays = NO_HOLIDAYS,
) -> list[tuple[date, bool]]:
    """Return (expiry, weekly?) pairs, ascending, of the contracts still trading at ``now``.

    ``holidays`` are the trading holidays of the spec's exchange (day → name): an expiry on
    one (or on a weekend) is listed on the trading day before it.
    """
    if weeklies < 0 or monthlies < 0:
        raise ValueError(f"weeklies and monthlies must be ≥ 0, got {weeklies} and {monthlies}")
    local = now.astimezone(IST)
    first = local.date() if local.time() < EXPIRY_TIME else local.date() + timedelta(days=1)
    chosen: dict[date, bool] = {}
    # The rule's dates from `first` on: a shift only moves an expiry earlier, so a rule date
    # before `first` is never still listed, and one on or after it may have moved before it.
    year, month = first.year, first.month
    while len(chosen) < monthlies:
        rule = last_weekday_of_month(year, month, spec.monthly_weekday)
        day = trading_day_on_or_before(rule, holidays)
        if rule >= first and day >= first:
            chosen[day] = False
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    if spec.weekly_weekday is not None:
        rule = first + timedelta(days=(spec.weekly_weekday - first.weekday()) % 7)
        listed = 0
        while listed < weeklies:
            day = trading_day_on_or_before(rule, holidays)
            if day >= first:
                chosen.setdefault(day, not _is_monthly(spec, rule))
                listed += 1
            rule += timedelta(days=7)
    return sorted(chosen.items())


def _is_monthly(spec: UnderlyingSpec, rule: date) -> bool:
    """True when the rule date ``rule`` is its month's monthly expiry day."""
    return rule == last_weekday_of_month(rule.year, rule.month, spec.monthly_weekday)
