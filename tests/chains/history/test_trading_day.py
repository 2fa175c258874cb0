"""The chain's trading day (``chains.history.trading_day``): without a ``date``, the history
API and the chain page answer for the day the chain's feed worker records (its exchange clock:
the latest minute it recorded), which on a simulator running another day — the demo out of
hours — is not the server's today."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model

from brokers.exchange import IST
from chains import store
from chains.history.api import today
from chains.history.store import history_write
from chains.history.trading_day import trading_day
from tests.asgi_client import AsgiClient
from tests.chains.fixtures import EXPIRY, build_book, publish, tracked
from tests.chains.test_freshness import feed_record

from .books import day_of_bars, make_book

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_redis")]


def opening(day: date) -> datetime:
    return datetime.combine(day, time(9, 15), tzinfo=IST)


@pytest.fixture
def simulated_day() -> date:
    return today() - timedelta(days=2)


@pytest.fixture
def account(tmp_path, simulated_day):
    """NIFTY on account ``main`` with 09:15–09:24 of ``simulated_day`` recorded."""
    account = tracked(tmp_path, "dhan")
    book = make_book(expiry=EXPIRY, first=25_900.0, strikes=4)
    history_write(day_of_bars(book, 10, start=opening(simulated_day)))
    return account


def feed_recorded(account: str, last_minute: datetime | None) -> None:
    """``account``'s feed status record saying the latest minute it recorded."""
    record = feed_record(
        datetime.now(UTC),
        account=account,
        history_last_minute=None if last_minute is None else last_minute.isoformat(),
    )
    store.sync_client().set(store.feed_key(account), json.dumps(record), ex=60)


@pytest.fixture
def client(db):
    return AsgiClient.logged_in(
        get_user_model().objects.create_user("trader", password="pw-test-only")
    )


def get(client, endpoint: str, **params: str):
    return client.get(
        f"/api/v2/options/{endpoint}",
        {"underlying": "NIFTY", "expiry": EXPIRY.isoformat(), **params},
    )


def test_the_trading_day_is_the_day_of_the_latest_minute_recorded_else_today(account):
    now_day = date(2026, 12, 2)
    assert trading_day("main", today=now_day) == now_day  # no feed worker reporting
    feed_recorded("main", None)
    assert trading_day("main", today=now_day) == now_day  # nothing recorded yet
    feed_recorded("main", datetime(2026, 12, 1, 10, 29, tzinfo=IST))
    assert trading_day("main", today=now_day) == date(2026, 12, 1)
    # The minute is exchange time: a late-evening UTC stamp is the next day in IST.
    feed_recorded("main", datetime(2026, 12, 1, 20, 0, tzinfo=UTC))
    assert trading_day("main", today=now_day) == date(2026, 12, 2)


def test_without_a_date_the_api_answers_for_the_feed_s_trading_day(client, account, simulated_day):
    # The server's today has nothing recorded: that is what it answers without a feed.
    response = get(client, "history", **{"from": "09:15", "to": "09:30"})
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["date"] == today().isoformat()
    assert response.json()["data"]["recorded"] == 0

    feed_recorded("main", opening(simulated_day) + timedelta(minutes=9))
    response = get(client, "history", **{"from": "09:15", "to": "09:30"})
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["date"] == simulated_day.isoformat() and data["recorded"] == 10
    assert data["series"][0]["time"] == opening(simulated_day).isoformat()
    assert data["series"][0]["spot"] is not None
    change = get(client, "oi-change", **{"from": "09:15", "to": "09:24"})
    assert change.status_code == 200, change.json()
    assert change.json()["data"]["date"] == simulated_day.isoformat()
    replay = get(client, "live", at="09:20")
    assert replay.status_code == 200, replay.json()
    assert replay.json()["data"]["source"] == "history"
    # An explicit date still wins: today is no date "in the future", only one without history.
    response = get(client, "history", date=today().isoformat())
    assert response.status_code == 404, response.json()
    assert f"has no history on {today()}" in response.json()["message"]


def test_the_chain_page_shows_the_feed_s_trading_day_and_its_minutes(
    account, simulated_day, django_user_model
):
    from django.test import Client

    browser = Client()
    browser.force_login(django_user_model.objects.create_user("viewer", password="x" * 12))
    publish(account, build_book(account, EXPIRY))  # a live chain; its feed recorded nothing
    page = browser.get(f"/chains/NIFTY/{EXPIRY.isoformat()}/")
    assert page.status_code == 200
    assert f"Intraday history <small>{today():%d %b %Y} · IST" in page.content.decode()
    feed_recorded("main", opening(simulated_day) + timedelta(minutes=9))
    page = browser.get(f"/chains/NIFTY/{EXPIRY.isoformat()}/").content.decode()
    assert f"Intraday history <small>{simulated_day:%d %b %Y} · IST" in page
    assert '"09:15"' in page and '"09:24"' in page  # the replay's minutes of that day


def test_oi_change_since_an_open_not_recorded_starts_at_the_first_bar(client, tmp_path):
    """The open is usually a gap (the first minute after the feed connects): "since open"
    answers from the day's first bar, and ``from_bar`` says which."""
    tracked(tmp_path, "dhan")
    bars = day_of_bars(
        make_book(expiry=EXPIRY, first=25_900.0, strikes=4), 8, start=opening(today())
    )
    history_write(bars[2:])  # 09:17 on
    response = get(client, "oi-change", **{"from": "09:15", "to": "09:22"})
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["from_bar"] == bars[2].minute.isoformat()
    assert data["to_bar"] == bars[7].minute.isoformat()
    first, last = bars[2].legs, bars[7].legs
    for i, row in enumerate(data["strikes"]):
        assert row["strike"] == last.strikes[i] == first.strikes[i]
        assert row["CE"]["change"] == last.side("CE").oi[i] - first.side("CE").oi[i]
    # Nothing recorded by ``to`` either: still nothing to answer from.
    early = get(client, "oi-change", **{"from": "09:15", "to": "09:16"})
    assert early.status_code == 404 and early.json()["code"] == "no_history"
