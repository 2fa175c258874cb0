"""The demo's simulated trading day (``make demo``): which day the simulator runs, and until
when it runs fast. Pure: the real time and the exchange's holidays are passed in.

The simulator starts the day at 09:15 IST and runs it at ``DEMO_SPEED`` while the feed worker
records every minute, then goes on at real time from the demo's "now": while the exchange is
open, the real time (the simulated clock meets the real one, on today's date); otherwise — a
night, a weekend, a holiday — the latest trading day replayed up to ``DEMO_REPLAY_UNTIL``, and
the demo says so: its pages show the simulated exchange's day and time, never the real ones
dressed up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time

from django.core.management.base import CommandError

from brokers.exchange import (
    IST,
    SESSION_CLOSE,
    SESSION_OPEN,
    Holidays,
    closed_day_reason,
    is_trading_day,
    market_state,
)

DEMO_SPEED = 60.0  # the morning runs at a simulated minute per second
DEMO_REPLAY_UNTIL = clock_time(11, 0)  # the "now" of a trading day replayed out of hours
FIRST_MINUTE = clock_time(9, 16)  # the earliest catch-up: one simulated minute


@dataclass(frozen=True)
class DemoDay:
    """The simulated trading day of the demo: ``day`` from 09:15 IST at ``DEMO_SPEED`` up to
    ``until`` (IST on ``day``), then real time; ``why`` says which day it is and why."""

    day: date
    until: datetime
    why: str

    def runsim_args(self) -> list[str]:
        return [
            *("--start", SESSION_OPEN.isoformat("minutes"), "--date", self.day.isoformat()),
            *("--catch-up-to", f"{self.until:%H:%M:%S}", "--speed", f"{DEMO_SPEED:g}"),
            *("--exchange-hours", "--clock-waits-for-feed"),
        ]


def demo_day(
    now: datetime,
    holidays: Holidays,
    *,
    day: date | None = None,
    until: clock_time | None = None,
    speed: float = DEMO_SPEED,
) -> DemoDay:
    """The demo's simulated day at real time ``now`` (aware) with the exchange's ``holidays``.

    Open market: today, caught up to the instant the simulated clock meets the real one
    (``now`` + the catch-up's own duration; the clock waits for the feed worker, so it runs
    behind the real one by the demo's setup time). Otherwise the latest trading day whose session
    has begun, caught up to ``DEMO_REPLAY_UNTIL``. ``day``/``until`` choose them instead.
    Raises CommandError for a ``day`` that is not a trading day or lies ahead, or an
    ``until`` outside 09:16–15:30.
    """
    local = now.astimezone(IST)
    if until is not None and not FIRST_MINUTE <= until <= SESSION_CLOSE:
        raise CommandError(
            f"--sim-until {until:%H:%M}: give a time from 09:16 to 15:30 (IST), e.g. 11:00"
        )
    if day is not None:
        closed = closed_day_reason(day, holidays)
        if closed is not None:
            raise CommandError(f"--sim-day {day} is not a trading day ({closed}): pick another")
        if day > local.date():
            raise CommandError(f"--sim-day {day} is ahead of today ({local.date()} IST)")
    opened = datetime.combine(local.date(), SESSION_OPEN, tzinfo=IST)
    state = market_state(local, holidays)
    if day is None and until is None and state.is_open:
        # The catch-up runs (until − open) / speed real seconds from now: meeting the real
        # clock means until = now + (until − open) / speed.
        meet = local + (local - opened) / (speed - 1.0)
        meet = meet.replace(microsecond=0) + timedelta(seconds=1)
        first = datetime.combine(local.date(), FIRST_MINUTE, tzinfo=IST)
        closing = datetime.combine(local.date(), SESSION_CLOSE, tzinfo=IST)
        meet = min(max(meet, first), closing)
        why = "the market is open: today, caught up to the real time less the demo's setup"
        return DemoDay(local.date(), meet, why)
    if day is None:
        day = local.date()
        if not (is_trading_day(day, holidays) and local >= opened):
            day -= timedelta(days=1)
            while not is_trading_day(day, holidays):
                day -= timedelta(days=1)
        why = (
            "today, up to the time asked for (--sim-until)"
            if state.is_open
            else f"the market is not open now ({state.reason}): the latest trading day, replayed"
        )
    else:
        why = "the day asked for (--sim-day)"
    at = datetime.combine(day, until or DEMO_REPLAY_UNTIL, tzinfo=IST)
    return DemoDay(day, at, why)
