"""The chain page's history context (``chains.history.selectors.page_history``): the recorded
minutes of the day, the expected move from the chain as served, IV rank; and the partials
rendered with them."""

from __future__ import annotations

import html
import math
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from brokers.exchange import IST
from chains.analytics import years_to_expiry
from chains.api import api_data
from chains.book import stored_snapshot
from chains.history.api import today
from chains.history.selectors import (
    chain_atm_iv,
    expected_move,
    page_history,
    recorded_minutes,
)
from chains.history.store import history_write
from chains.models import DailyClose
from tests.chains.fixtures import EXPIRY, build_book, publish, tracked

from .books import day_of_bars, make_book

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_redis")]


def opening(day: date) -> datetime:
    return datetime.combine(day, time(9, 15), tzinfo=IST)


def test_expected_move_is_spot_times_iv_times_root_t():
    assert expected_move(26_000.0, 0.12, 0.25) == pytest.approx(26_000 * 0.12 * 0.5)


@pytest.mark.parametrize(
    ("spot", "iv", "years"),
    [(None, 0.12, 0.1), (26_000.0, None, 0.1), (26_000.0, 0.12, 0.0), (26_000.0, 0.12, -0.01)],
)
def test_expected_move_is_none_without_spot_iv_or_time_left(spot, iv, years):
    assert expected_move(spot, iv, years) is None


def test_recorded_minutes_are_the_day_s_bars_of_the_chain_in_order(db):
    day = today()
    book = make_book(expiry=EXPIRY, strikes=4)
    history_write(day_of_bars(book, 6, start=opening(day), skip=frozenset({2})))
    history_write(day_of_bars(make_book(expiry=EXPIRY + timedelta(days=7)), 2, start=opening(day)))
    history_write(day_of_bars(book, 1, start=opening(day - timedelta(days=1))))
    minutes = recorded_minutes("NIFTY", EXPIRY, day)
    assert [f"{m:%H:%M}" for m in minutes] == ["09:15", "09:16", "09:18", "09:19", "09:20"]
    assert all(m.utcoffset() == timedelta(hours=5, minutes=30) for m in minutes)
    assert recorded_minutes("BANKNIFTY", EXPIRY, day) == []


def test_page_history_uses_the_served_chain_s_spot_and_atm_iv(tmp_path):
    account = tracked(tmp_path, "dhan")
    snapshot = stored_snapshot(build_book(account, EXPIRY), account=account.name,
                               broker=account.kind)  # fmt: skip
    data = api_data(snapshot, source="live")
    now = datetime.now(UTC)
    legs = data["strikes"][str(int(data["atm_strike"]))]
    iv = (legs["CE"]["iv"] + legs["PE"]["iv"]) / 2
    assert chain_atm_iv(data) == pytest.approx(iv)
    result = page_history("NIFTY", EXPIRY, data=data, now=now)
    move = data["spot"] * iv * math.sqrt(years_to_expiry(EXPIRY, now))
    assert result.expected_move == pytest.approx(move)
    assert result.expected_move_pct == pytest.approx(100 * move / data["spot"])
    assert result.minutes == [] and result.iv.days == 0 and result.iv.rank is None
    assert result.config == {
        "day": now.astimezone(IST).date().isoformat(),
        "minutes": [],
        "expiry_epoch": datetime.combine(EXPIRY, time(15, 30), tzinfo=IST).timestamp(),
    }


def test_page_history_without_data_has_no_expected_move(db):
    result = page_history("NIFTY", EXPIRY, data=None, now=datetime.now(UTC))
    assert result.expected_move is None and result.expected_move_pct is None


def test_atm_iv_is_none_without_an_atm_strike_or_its_ivs(tmp_path):
    account = tracked(tmp_path, "dhan")
    snapshot = stored_snapshot(build_book(account, EXPIRY), account=account.name,
                               broker=account.kind)  # fmt: skip
    data = api_data(snapshot, source="live")
    assert chain_atm_iv({**data, "atm_strike": None}) is None
    assert chain_atm_iv({**data, "atm_strike": 99_000.0}) is None  # not among the strikes
    key = str(int(data["atm_strike"]))
    blank = {side: {**leg, "iv": None} for side, leg in data["strikes"][key].items()}
    assert chain_atm_iv({**data, "strikes": {**data["strikes"], key: blank}}) is None


# --- the partials on the chain page ------------------------------------------------------------


@pytest.fixture
def page_client(tmp_path, clean_redis, client, django_user_model):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY), feed_state=None)
    client.force_login(django_user_model.objects.create_user("trader", password="x" * 12))
    return client


def test_the_page_shows_iv_rank_and_the_recorded_minutes(page_client):
    day = today()
    history_write(day_of_bars(make_book(expiry=EXPIRY, strikes=4), 3, start=opening(day)))
    for n, iv in enumerate([0.10, 0.20, 0.15]):  # two earlier days and today's close
        DailyClose.objects.update_or_create(
            underlying="NIFTY", expiry=EXPIRY, day=day - timedelta(days=2 - n),
            defaults={"minute": opening(day - timedelta(days=2 - n)), "atm_iv": iv},
        )  # fmt: skip
    page = page_client.get(f"/chains/NIFTY/{EXPIRY.isoformat()}/").content.decode()
    assert '<dd id="iv-rank">50.0</dd>' in page
    assert '<dd id="iv-percentile">33.3%</dd>' in page
    assert '<dd id="iv-days">3</dd>' in page
    assert '<dd id="expected-move">±' in page
    assert '<option value="09:17">09:17</option>' in page
    assert 'id="replay-slider" min="0" max="2" step="1" value="2">' in page
    config = page[page.index('id="history-config"') :]
    assert html.unescape('"minutes": ["09:15", "09:16", "09:17"]') in config
    assert "/static/vendor/uplot/uPlot.esm.js" in page and "/static/optionsite/history.js" in page


def test_the_page_without_history_or_closes_says_so(page_client):
    page = page_client.get(f"/chains/NIFTY/{EXPIRY.isoformat()}/").content.decode()
    assert '<dd id="iv-rank">–</dd>' in page and '<dd id="iv-days">0</dd>' in page
    assert 'id="history-empty" hidden' not in page
    assert "No minute of this chain is recorded today yet" in page
    assert 'id="replay-slider" min="0" max="0" step="1" value="0" disabled>' in page


def test_the_vendored_chart_library_is_found_by_the_static_files_finders():
    """What collectstatic copies and the site serves under static/vendor/ (``make`` installs
    node_modules/ from package-lock.json)."""
    found = finders.find("vendor/uplot/uPlot.esm.js")
    assert found is not None, "node_modules/uplot is missing: run `make test` (npm ci)"
    assert "export { uPlot as default }" in Path(found).read_text()
    assert finders.find("vendor/uplot/uPlot.min.css") is not None
