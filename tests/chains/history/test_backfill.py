"""``backfillhistory`` against the real simulator over HTTP: the daily closes equal the
simulator's deterministic past days, IV rank works at once, re-runs replace, live days stay,
and every error path says what to do."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from brokers import calendar
from brokers.exceptions import BrokerError, FeedConfigError
from brokers.exchange import IST, Exchange, closed_day_reason
from brokers.models import AccountStatus, BrokerAccount, ExchangeHoliday
from brokers.simulator.historical import day_close
from brokers.simulator.universe import UNDERLYINGS_BY_SYMBOL
from chains.exceptions import BackfillError
from chains.history.backfill import (
    SOURCE_PREFIX,
    Cadence,
    backfill_history,
    cadence_of,
    trading_days,
)
from chains.history.store import history_write
from chains.models import DailyClose
from tests.asgi_client import AsgiClient

from .books import day_of_bars, make_book

pytestmark = [pytest.mark.django_db, pytest.mark.integration]
SEED = 7  # tests/conftest.py's simulator


def today() -> date:
    return datetime.now(IST).date()


def past_days(count: int, underlying: str = "NIFTY") -> list[date]:
    closed = calendar.holidays(Exchange.NSE, range(today().year - 1, today().year + 1))
    return trading_days(today(), count, dict(closed))[0]


@pytest.fixture
def sim_holidays(wired):
    """Past holidays of the simulator (``POST /sim/history/holidays``), cleared after."""

    def put(days: dict[date, str]) -> None:
        body = {d.isoformat(): name for d, name in days.items()}
        httpx.post(f"{wired.url}/sim/history/holidays", json=body, timeout=10).raise_for_status()

    yield put
    put({})


def test_dhan_backfill_writes_the_simulator_s_past_days(wired):
    report = backfill_history(account="sim-dhan", days=5)
    days = past_days(5)
    rows = {r.day: r for r in DailyClose.objects.filter(underlying="NIFTY")}
    assert sorted(rows) == sorted(days)
    spec = UNDERLYINGS_BY_SYMBOL["NIFTY"]
    for day in days:
        truth = day_close(SEED, spec, day)
        row = rows[day]
        assert row.source == f"{SOURCE_PREFIX}dhan"
        assert row.spot == truth.spot
        assert row.atm_strike == truth.strike
        assert row.atm_iv == pytest.approx((truth.ce_iv + truth.pe_iv) / 200.0, abs=1e-9)
        assert row.straddle == round(truth.ce_close + truth.pe_close, 2)
        assert row.minute == datetime.combine(day, datetime.min.time(), IST).replace(
            hour=15, minute=30
        )
        # Figures DhanHQ's history does not give stay unknown.
        assert (row.forward, row.pcr, row.max_pain, row.ce_oi, row.pe_oi) == (None,) * 5
        no_holiday_between = all(
            closed_day_reason(day + timedelta(d), {}) is not None
            or day + timedelta(d) not in calendar.holidays(Exchange.NSE, [day.year])
            for d in range((truth.expiry - day).days + 1)
        )
        if no_holiday_between:
            assert row.expiry == truth.expiry
    assert report.written == 5
    assert [line.wrote for line in report.lines if line.day in days] == [True] * 5


def test_iv_rank_works_right_after_a_backfill(wired):
    backfill_history(account="sim-dhan", days=10)
    client = AsgiClient.logged_in(get_user_model().objects.create_user("t", password="pw-test"))
    data = client.get("/api/v2/options/iv-rank", {"underlying": "NIFTY"}).json()["data"]
    latest = past_days(1)[0]
    row = DailyClose.objects.get(underlying="NIFTY", day=latest)
    assert data["days"] == 10
    assert data["date"] == latest.isoformat()
    assert data["atm_iv"] == row.atm_iv
    assert data["iv_rank"] is not None and 0 <= data["iv_rank"] <= 100


def test_running_again_replaces_and_does_not_duplicate(wired):
    backfill_history(account="sim-dhan", days=4)
    first = list(DailyClose.objects.order_by("day").values())
    report = backfill_history(account="sim-dhan", days=4)
    assert list(DailyClose.objects.order_by("day").values()) == first
    assert report.written == 4


def test_a_day_recorded_live_is_never_overwritten(wired):
    live_day = past_days(2)[1]
    live = DailyClose.objects.create(
        underlying="NIFTY",
        expiry=live_day + timedelta(days=3),
        day=live_day,
        minute=datetime.combine(live_day, datetime.min.time(), IST).replace(hour=15, minute=29),
        spot=1.0,
        atm_iv=0.5,
    )
    report = backfill_history(account="sim-dhan", days=3)
    assert DailyClose.objects.filter(underlying="NIFTY", day=live_day).count() == 1
    kept = DailyClose.objects.get(pk=live.pk)
    assert (kept.spot, kept.atm_iv, kept.source) == (1.0, 0.5, "live")
    line = next(line for line in report.lines if line.day == live_day)
    assert not line.wrote and "recorded live" in line.why
    assert report.written == 2


def test_a_day_the_feed_records_after_a_backfill_becomes_live_and_stays(wired):
    backfill_history(account="sim-dhan", days=1)
    row = DailyClose.objects.get(underlying="NIFTY")
    opening = datetime.combine(row.day, datetime.min.time(), IST).replace(hour=15, minute=20)
    bars = day_of_bars(make_book(expiry=row.expiry, first=25_700.0, strikes=4), 2, start=opening)
    history_write(bars)
    recorded = DailyClose.objects.get(underlying="NIFTY", day=row.day)
    assert (recorded.source, recorded.spot) == ("live", bars[-1].spot)
    report = backfill_history(account="sim-dhan", days=1)
    assert DailyClose.objects.get(underlying="NIFTY", day=row.day).spot == bars[-1].spot
    assert "recorded live" in report.lines[0].why


def test_upstox_backfill_writes_spot_only_and_says_iv_is_not_available(wired):
    report = backfill_history(account="sim-upstox", days=3)
    spec = UNDERLYINGS_BY_SYMBOL["BANKNIFTY"]
    rows = DailyClose.objects.filter(underlying="BANKNIFTY")
    assert rows.count() == 3
    for row in rows:
        assert row.spot == day_close(SEED, spec, row.day, weekly=False).spot
        assert (row.atm_iv, row.atm_strike, row.straddle) == (None, None, None)
        assert row.source == f"{SOURCE_PREFIX}upstox"
    assert any("no option IV" in note for note in report.notes)


def test_holidays_are_skipped_and_said_and_a_day_without_data_is_reported(wired, sim_holidays):
    days = past_days(4)
    holiday, missing = days[1], days[2]
    ExchangeHoliday.objects.create(exchange="NSE", date=holiday, name="Test Holiday")
    calendar.clear_cache()
    sim_holidays({holiday: "Test Holiday", missing: "Unannounced closure"})
    report = backfill_history(account="sim-dhan", days=3)
    calendar.clear_cache()
    by_day = {line.day: line for line in report.lines}
    assert not by_day[holiday].wrote and by_day[holiday].why == "holiday: Test Holiday"
    assert not by_day[missing].wrote and "has no data" in by_day[missing].why
    written = set(DailyClose.objects.values_list("day", flat=True))
    assert holiday not in written and missing not in written
    assert len(written) == 2


def test_the_command_prints_each_day(wired):
    out = io.StringIO()
    call_command("backfillhistory", account="sim-dhan", days=2, stdout=out)
    text = out.getvalue()
    for day in past_days(2):
        assert f"NIFTY {day}: wrote — expiry" in text
    assert "sim-dhan: 2 daily closes written." in text


def test_the_command_on_upstox_notes_that_iv_rank_needs_dhan(wired):
    out = io.StringIO()
    call_command("backfillhistory", account="sim-upstox", days=1, stdout=out)
    assert "Note: Upstox's historical candles carry no option IV" in out.getvalue()


# --- the calendar of past days (pure) ---------------------------------------------------------


def test_listed_expiries_tell_weekly_from_monthly():
    weekly = [date(2026, 12, 1), date(2026, 12, 8), date(2026, 12, 29), date(2027, 1, 26)]
    assert cadence_of(weekly) == Cadence(weekly=True, weekday=1)
    assert cadence_of([date(2026, 12, 29), date(2027, 1, 26)]) == Cadence(weekly=False, weekday=1)


def test_a_past_day_s_expiry_is_the_nearest_moved_before_a_holiday():
    weekly, monthly = Cadence(True, 1), Cadence(False, 1)
    assert weekly.expiry_on_or_after(date(2026, 11, 26), {}) == date(2026, 12, 1)
    assert weekly.expiry_on_or_after(date(2026, 12, 1), {}) == date(2026, 12, 1)
    holiday = {date(2026, 12, 1): "Test"}
    assert weekly.expiry_on_or_after(date(2026, 11, 26), holiday) == date(2026, 11, 30)
    # On the holiday itself the expiry moved before it: the next week's is the nearest.
    assert weekly.expiry_on_or_after(date(2026, 12, 1), holiday) == date(2026, 12, 8)
    assert monthly.expiry_on_or_after(date(2026, 11, 25), {}) == date(2026, 12, 29)
    assert monthly.expiry_on_or_after(date(2026, 11, 20), {}) == date(2026, 11, 24)


def test_trading_days_skip_weekends_and_name_holidays():
    days, holidays = trading_days(date(2026, 12, 2), 3, {date(2026, 11, 30): "Test"})
    assert days == [date(2026, 12, 1), date(2026, 11, 27), date(2026, 11, 26)]
    assert holidays == {date(2026, 11, 30): "holiday: Test"}


# --- errors ----------------------------------------------------------------------------------


def test_an_unknown_account_names_the_known_ones(wired):
    with pytest.raises(CommandError, match=r"No broker account named 'nope'.*sim-dhan"):
        call_command("backfillhistory", account="nope", days=2, stdout=io.StringIO())


def test_a_disabled_account_says_to_enable_it(wired):
    BrokerAccount.objects.filter(name="sim-dhan").update(enabled=False)
    with pytest.raises(FeedConfigError, match="disabled: enable it"):
        backfill_history(account="sim-dhan", days=2)


def test_an_expired_token_says_what_to_do_and_sends_nothing(wired):
    BrokerAccount.objects.filter(name="sim-dhan").update(
        token_expires_at=timezone.now() - timedelta(hours=1)
    )
    with pytest.raises(FeedConfigError, match=r"expired at .*paste a new token"):
        backfill_history(account="sim-dhan", days=2)
    assert not DailyClose.objects.exists()


def test_a_token_the_broker_refuses_stops_and_marks_the_account(wired):
    wired.fault(action="revoke_token", broker="dhan")
    with pytest.raises(BrokerError, match="DhanHQ rejected the access token") as caught:
        backfill_history(account="sim-dhan", days=2)
    assert caught.value.permanent
    assert BrokerAccount.objects.get(name="sim-dhan").status == AccountStatus.TOKEN_EXPIRED
    assert not DailyClose.objects.exists()


def test_a_lasting_server_failure_is_retried_then_stops_with_the_message(wired):
    wired.fault(action="rest_error", broker="dhan", status=503, seconds=60)
    with pytest.raises(CommandError, match=r"Backfill of 'sim-dhan' stopped: .*retried"):
        call_command("backfillhistory", account="sim-dhan", days=2, stdout=io.StringIO())
    assert BrokerAccount.objects.get(name="sim-dhan").status == AccountStatus.OK
    assert not DailyClose.objects.exists()


@pytest.mark.parametrize("days", [0, -1, 366])
def test_days_beyond_retention_are_refused(wired, days):
    with pytest.raises(BackfillError, match=r"give 1 to 365 .*HISTORY_DAILY_DAYS"):
        backfill_history(account="sim-dhan", days=days)


def test_an_account_without_chains_says_where_to_add_one(wired):
    BrokerAccount.objects.get(name="sim-dhan").chains.all().delete()
    with pytest.raises(BackfillError, match="tracks no chain: add one"):
        backfill_history(account="sim-dhan", days=2)
