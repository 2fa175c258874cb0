"""The exchange calendar: session hours, weekends and holidays (pure), the seeded holiday table,
its selectors and its admin."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError
from django.urls import reverse

from brokers import calendar
from brokers.exchange import (
    IST,
    Exchange,
    MarketState,
    Phase,
    exchange_for,
    expiry_moment,
    is_trading_day,
    market_state,
    next_open,
    next_trading_day,
    session_bounds,
)
from brokers.models import ExchangeHoliday

HOLI = {date(2026, 3, 3): "Holi"}
MONDAY = date(2026, 3, 2)  # the day before Holi 2026


def at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=IST)


# --- pure: the session --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "phase", "reason"),
    [
        (at(MONDAY, 8, 59, 59), Phase.CLOSED, "before open"),
        (at(MONDAY, 9, 0), Phase.PRE_OPEN, "pre-open"),
        (at(MONDAY, 9, 14, 59, 999_999), Phase.PRE_OPEN, "pre-open"),
        (at(MONDAY, 9, 15), Phase.OPEN, ""),
        (at(MONDAY, 15, 29, 59, 999_999), Phase.OPEN, ""),
        (at(MONDAY, 15, 30), Phase.CLOSED, "after close"),
        (at(MONDAY, 23, 59), Phase.CLOSED, "after close"),
        (at(date(2026, 3, 3), 11, 0), Phase.CLOSED, "holiday: Holi"),
        (at(date(2026, 2, 28), 11, 0), Phase.CLOSED, "weekend"),  # Saturday
        (at(date(2026, 3, 1), 11, 0), Phase.CLOSED, "weekend"),  # Sunday
    ],
)
def test_market_state_through_a_day_a_weekend_and_a_holiday(moment, phase, reason):
    state = market_state(moment, HOLI)
    assert (state.phase, state.reason) == (phase, reason)
    assert state.is_open is (phase is Phase.OPEN)


def test_market_state_reads_any_time_zone_as_ist():
    assert market_state(datetime(2026, 3, 2, 3, 45, tzinfo=UTC), HOLI).is_open  # 09:15 IST
    assert not market_state(datetime(2026, 3, 2, 3, 44, 59, tzinfo=UTC), HOLI).is_open
    # 20:00 UTC on Monday is 01:30 IST on Tuesday, Holi: the IST day decides.
    assert market_state(datetime(2026, 3, 2, 20, 0, tzinfo=UTC), HOLI).reason == "holiday: Holi"


def test_a_naive_moment_is_refused():
    with pytest.raises(ValueError, match="aware datetime"):
        market_state(datetime(2026, 3, 2, 10, 0), HOLI)


def test_a_holiday_on_a_weekend_reads_weekend():
    independence_day = {date(2026, 8, 15): "Independence Day"}  # a Saturday
    assert market_state(at(date(2026, 8, 15), 10), independence_day).reason == "weekend"


def test_trading_days_are_weekdays_without_a_holiday():
    assert is_trading_day(MONDAY, HOLI)
    assert not is_trading_day(date(2026, 3, 3), HOLI)
    assert not is_trading_day(date(2026, 3, 7), HOLI)  # Saturday
    assert is_trading_day(date(2026, 3, 3), {})


def test_market_state_describes_itself():
    assert str(market_state(at(MONDAY, 10), HOLI)) == "open"
    assert str(market_state(at(MONDAY, 9, 5), HOLI)) == "pre-open (pre-open)"
    assert str(MarketState(Phase.CLOSED, "holiday: Holi")) == "closed (holiday: Holi)"


def test_session_bounds_are_0915_and_1530_ist_and_the_close_is_the_expiry_moment():
    opens, closes = session_bounds(MONDAY)
    assert (opens, closes) == (at(MONDAY, 9, 15), at(MONDAY, 15, 30))
    assert closes == expiry_moment(MONDAY)


# --- pure: the next open ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(MONDAY, 7, 0), at(MONDAY, 9, 15)),  # before today's open
        (at(MONDAY, 9, 14, 59), at(MONDAY, 9, 15)),  # in pre-open
        (at(MONDAY, 9, 15), at(date(2026, 3, 4), 9, 15)),  # open now: the next one, after Holi
        (at(MONDAY, 16, 0), at(date(2026, 3, 4), 9, 15)),
        (at(date(2026, 3, 3), 8, 0), at(date(2026, 3, 4), 9, 15)),  # on the holiday itself
        (at(date(2026, 2, 27), 15, 30), at(MONDAY, 9, 15)),  # Friday's close: Monday
        (at(date(2026, 2, 28), 12, 0), at(MONDAY, 9, 15)),  # Saturday
    ],
)
def test_next_open_skips_weekends_and_holidays(moment, expected):
    assert next_open(moment, HOLI) == expected


def test_next_open_crosses_the_year():
    new_year = {date(2027, 1, 1): "New Year (example)"}
    assert next_open(at(date(2026, 12, 31), 15, 45), new_year) == at(date(2027, 1, 4), 9, 15)


def test_an_endless_run_of_holidays_is_reported_not_looped_over():
    closed = {MONDAY + timedelta(days=n): "closed" for n in range(1, 400)}
    with pytest.raises(ValueError, match="check the exchange holidays"):
        next_trading_day(MONDAY, closed)
    with pytest.raises(ValueError, match="no trading day"):
        next_open(at(MONDAY, 16), closed)


@pytest.mark.parametrize(
    ("underlying", "exchange"),
    [("NIFTY", "NSE"), ("BANKNIFTY", "NSE"), ("FINNIFTY", "NSE"), ("MIDCPNIFTY", "NSE"),
     ("SENSEX", "BSE"), ("BANKEX", "BSE"), (" sensex ", "BSE")],
)  # fmt: skip
def test_each_underlying_has_its_exchange(underlying, exchange):
    assert exchange_for(underlying) is Exchange(exchange)


# --- the seeded table ---------------------------------------------------------------------

NSE_2026 = {
    date(2026, 1, 15): "Municipal Corporation Election in Maharashtra",
    date(2026, 1, 26): "Republic Day",
    date(2026, 3, 3): "Holi",
    date(2026, 3, 26): "Shri Ram Navami",
    date(2026, 3, 31): "Shri Mahavir Jayanti",
    date(2026, 4, 3): "Good Friday",
    date(2026, 4, 14): "Dr. Baba Saheb Ambedkar Jayanti",
    date(2026, 5, 1): "Maharashtra Day",
    date(2026, 5, 28): "Bakri Id",
    date(2026, 6, 26): "Muharram",
    date(2026, 9, 14): "Ganesh Chaturthi",
    date(2026, 10, 2): "Mahatma Gandhi Jayanti",
    date(2026, 10, 20): "Dussehra",
    date(2026, 11, 10): "Diwali-Balipratipada",
    date(2026, 11, 24): "Prakash Gurpurb Sri Guru Nanak Dev",
    date(2026, 12, 25): "Christmas",
}


@pytest.fixture(autouse=True)
def fresh_cache():
    calendar.clear_cache()
    yield
    calendar.clear_cache()


@pytest.mark.django_db
@pytest.mark.parametrize("exchange", ["NSE", "BSE"])
def test_2026_is_seeded_from_the_circulars_on_weekdays(exchange):
    assert calendar.holidays(exchange, [2026]) == NSE_2026
    rows = ExchangeHoliday.objects.filter(exchange=exchange, date__year=2026)
    assert all(row.confirmed and row.date.weekday() < 5 for row in rows)
    assert {row.source for row in rows} == (
        {"NSE/FAOP/71777 (12 Dec 2025)", "NSE/FAOP/72262 (12 Jan 2026)"}
        if exchange == "NSE"
        else {"BSE notice 20251212-8 (12 Dec 2025)", "BSE notice 20260112-8 (12 Jan 2026)"}
    )


@pytest.mark.django_db
def test_2027_holds_only_provisional_fixed_rule_days():
    rows = ExchangeHoliday.objects.filter(date__year=2027)
    assert {r.date for r in rows} == {date(2027, 1, 26), date(2027, 3, 26), date(2027, 4, 14)}
    assert all(not r.confirmed and "provisional" in r.name and r.date.weekday() < 5 for r in rows)
    assert rows.count() == 6  # on both exchanges


@pytest.mark.django_db
def test_the_seed_can_be_undone_and_redone():
    from importlib import import_module

    migration = import_module("brokers.migrations.0003_exchange_holidays")
    ExchangeHoliday.objects.create(exchange="NSE", date=date(2028, 1, 26), name="Republic Day")
    migration.unseed_holidays(django_apps, None)
    assert list(ExchangeHoliday.objects.values_list("date", flat=True)) == [date(2028, 1, 26)]
    migration.seed_holidays(django_apps, None)
    migration.seed_holidays(django_apps, None)  # twice: no duplicate, no error
    assert ExchangeHoliday.objects.count() == 2 * 19 + 1


@pytest.mark.django_db
def test_one_row_per_exchange_and_day():
    with pytest.raises(IntegrityError):
        ExchangeHoliday.objects.create(exchange="NSE", date=date(2026, 3, 3), name="Holi again")


# --- selectors ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_market_state_now_reads_the_table():
    holi = at(date(2026, 3, 3), 10)
    assert calendar.market_state_now("NSE", now=holi) == MarketState(Phase.CLOSED, "holiday: Holi")
    assert calendar.market_state_now(Exchange.BSE, now=at(MONDAY, 10)).is_open


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("moment", "reason"),
    [
        (at(MONDAY, 10), None),
        (at(MONDAY, 9, 5), "pre-open"),
        (at(MONDAY, 15, 35), "after close"),
        (at(date(2026, 3, 3), 10), "holiday: Holi"),
        (at(date(2026, 3, 7), 10), "weekend"),
    ],
)
def test_market_closed_reason_for_the_periodic_tasks(moment, reason):
    assert calendar.market_closed_reason("NSE", moment) == reason


@pytest.mark.django_db
def test_trading_day_closed_reason_ignores_the_hour():
    assert calendar.trading_day_closed_reason("NSE", MONDAY) is None
    assert calendar.trading_day_closed_reason("BSE", date(2026, 3, 3)) == "holiday: Holi"
    assert calendar.trading_day_closed_reason("NSE", date(2026, 3, 8)) == "weekend"


@pytest.mark.django_db
def test_next_open_now_spans_the_year_end_with_the_next_years_rows():
    assert calendar.next_open_now("NSE", now=at(MONDAY, 15, 45)) == at(date(2026, 3, 4), 9, 15)
    # Thu 24 Dec 2026 after the close: Christmas (Fri), the weekend → Mon 28 Dec.
    assert calendar.next_open_now("NSE", now=at(date(2026, 12, 24), 16)) == at(
        date(2026, 12, 28), 9, 15
    )
    # Mon 25 Jan 2027 after the close: Republic Day 2027 (provisional) is on Tuesday.
    assert calendar.next_open_now("NSE", now=at(date(2027, 1, 25), 16)) == at(
        date(2027, 1, 27), 9, 15
    )


@pytest.mark.django_db
def test_an_edit_is_read_once_the_cache_is_cleared():
    day = date(2026, 3, 2)
    assert calendar.market_closed_reason("NSE", at(day, 10)) is None
    ExchangeHoliday.objects.create(exchange="NSE", date=day, name="Special closure")
    assert calendar.market_closed_reason("NSE", at(day, 10)) is None  # cached for a minute
    assert calendar.market_closed_reason("BSE", at(day, 10)) is None  # another exchange
    calendar.clear_cache()
    assert calendar.market_closed_reason("NSE", at(day, 10)) == "holiday: Special closure"


@pytest.mark.django_db
def test_an_unknown_exchange_is_refused():
    with pytest.raises(ValueError, match="MCX"):
        calendar.holidays("MCX", [2026])


@pytest.mark.django_db
def test_calendar_gaps_ask_for_next_years_circular_from_december():
    assert calendar.calendar_gaps(now=at(date(2026, 11, 30), 12)) == []
    gaps = calendar.calendar_gaps(now=at(date(2026, 12, 1), 12))
    assert gaps == [
        "No confirmed NSE trading holidays for 2027: add them in admin → Exchange holidays from "
        "the exchange's circular (every weekday trades until then).",
        "No confirmed BSE trading holidays for 2027: add them in admin → Exchange holidays from "
        "the exchange's circular (every weekday trades until then).",
    ]
    ExchangeHoliday.objects.filter(exchange="NSE", date__year=2027).update(source="NSE/FAOP/1")
    assert len(calendar.calendar_gaps(now=at(date(2026, 12, 1), 12))) == 1


# --- admin --------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.invalid", "pw-test-only")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_lists_filters_and_searches_holidays(admin_client):
    url = reverse("admin:brokers_exchangeholiday_changelist")
    page = admin_client.get(url, {"exchange__exact": "BSE", "year": "2027"})
    assert page.status_code == 200
    rows = list(page.context["cl"].queryset)
    assert {(r.exchange, r.date.year) for r in rows} == {("BSE", 2027)} and len(rows) == 3
    assert b"Wednesday" in page.content  # 14 Apr 2027: the weekday is shown to catch typos
    found = admin_client.get(url, {"q": "holi"})
    assert {r.name for r in found.context["cl"].queryset} == {"Holi"}
    assert admin_client.get(url, {"year": "20x7"}).context["cl"].queryset.count() == 0


@pytest.mark.django_db
def test_admin_adds_a_holiday_and_refuses_a_duplicate(admin_client):
    url = reverse("admin:brokers_exchangeholiday_add")
    data = {"exchange": "NSE", "date": "2027-03-10", "name": "Holi", "source": "NSE/FAOP/99999"}
    assert admin_client.post(url, data).status_code == 302
    assert ExchangeHoliday.objects.get(exchange="NSE", date=date(2027, 3, 10)).confirmed
    again = admin_client.post(url, data)
    assert again.status_code == 200 and b"already exists" in again.content
