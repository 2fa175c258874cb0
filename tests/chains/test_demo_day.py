"""The demo's simulated trading day (``chains.management.demo_day``): today while the market is
open, meeting the real clock; otherwise the latest trading day replayed to 11:00; the flags'
errors say what to give."""

from __future__ import annotations

from datetime import date, datetime, time
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command

from brokers.exchange import IST
from chains.management.demo_day import DEMO_REPLAY_UNTIL, demo_day

TUESDAY = date(2026, 12, 1)


def at(day: date, hh: int, mm: int) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=IST)


def test_in_the_session_the_demo_runs_today_and_meets_the_real_clock():
    now = at(TUESDAY, 10, 14)  # 59 minutes after the open: one more at 60x to catch up
    plan = demo_day(now, {}, speed=60)
    assert plan.day == TUESDAY
    assert plan.until == at(TUESDAY, 10, 15).replace(second=1)  # rounded up to the second
    assert "market is open" in plan.why
    assert plan.runsim_args() == [
        *("--start", "09:15", "--date", "2026-12-01", "--catch-up-to", "10:15:01"),
        *("--speed", "60", "--exchange-hours", "--clock-waits-for-feed"),
    ]


def test_just_after_the_open_the_catch_up_is_a_minute_and_never_past_the_close():
    assert demo_day(at(TUESDAY, 9, 15), {}).until == at(TUESDAY, 9, 16)
    assert demo_day(at(TUESDAY, 15, 29), {}).until == at(TUESDAY, 15, 30)


@pytest.mark.parametrize(
    ("now", "day", "why"),
    [
        (at(TUESDAY, 1, 0), date(2026, 11, 30), "before open"),  # the night: Monday's session
        (at(TUESDAY, 9, 5), date(2026, 11, 30), "pre-open"),
        (at(TUESDAY, 20, 0), TUESDAY, "after close"),  # today's session, replayed
        (at(date(2026, 12, 5), 12, 0), date(2026, 12, 4), "weekend"),  # Saturday: Friday
        (at(date(2026, 12, 7), 8, 0), date(2026, 12, 4), "before open"),  # Monday morning
    ],
)
def test_out_of_hours_the_demo_replays_the_latest_trading_day_to_eleven(now, day, why):
    plan = demo_day(now, {})
    assert plan.day == day and plan.until == datetime.combine(day, DEMO_REPLAY_UNTIL, tzinfo=IST)
    assert "not open now" in plan.why and why in plan.why


def test_a_holiday_is_skipped_and_named():
    holidays = {date(2026, 12, 4): "Simulated holiday", date(2026, 12, 7): "Another"}
    plan = demo_day(at(date(2026, 12, 7), 12, 0), holidays)  # a Monday that is a holiday
    assert plan.day == date(2026, 12, 3)
    assert "holiday: Another" in plan.why


def test_the_flags_choose_the_day_and_the_time():
    plan = demo_day(at(TUESDAY, 1, 0), {}, day=date(2026, 11, 27), until=time(10, 30))
    assert plan.until == datetime(2026, 11, 27, 10, 30, tzinfo=IST)
    assert "--sim-day" in plan.why
    plan = demo_day(at(TUESDAY, 12, 0), {}, until=time(10, 30))  # open market, another time
    assert plan.until == at(TUESDAY, 10, 30) and "--sim-until" in plan.why


@pytest.mark.parametrize(
    ("day", "until", "message"),
    [
        (date(2026, 11, 28), None, r"--sim-day 2026-11-28 is not a trading day \(weekend\)"),
        (date(2026, 11, 26), None, r"not a trading day \(holiday: Simulated holiday\)"),
        (date(2026, 12, 2), None, "--sim-day 2026-12-02 is ahead of today"),
        (None, time(9, 15), "--sim-until 09:15: give a time from 09:16 to 15:30"),
        (None, time(15, 31), "--sim-until 15:31: give a time from 09:16 to 15:30"),
    ],
)
def test_a_day_or_time_the_demo_cannot_run_is_refused_with_what_to_give(day, until, message):
    holidays = {date(2026, 11, 26): "Simulated holiday"}
    with pytest.raises(CommandError, match=message):
        demo_day(at(TUESDAY, 1, 0), holidays, day=day, until=until)


@pytest.mark.django_db
def test_the_demo_command_refuses_a_day_it_cannot_simulate_before_starting_anything(
    settings, tmp_path
):
    settings.LOCAL_DIR = tmp_path  # the demo's password file
    # Ports in use (Redis's): a demo that went on would stop at them, never start anything.
    busy = str(urlsplit(settings.REDIS_URL).port)
    with pytest.raises(CommandError, match=r"--sim-day 2026-11-28 is not a trading day \(weekend"):
        call_command("demo", "--sim-day", "2026-11-28", "--port", busy, "--sim-port", busy)
