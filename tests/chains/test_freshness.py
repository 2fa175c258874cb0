"""Freshness: live, quiet, market closed or stale — one pure derivation, and every surface
(API, page, list, status page, WebSocket status message) saying the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers import calendar
from brokers.dhan.codec import MARKET_STATUS_CHANGED
from brokers.exchange import MarketState, Phase
from brokers.models import ExchangeHoliday, TrackedChain
from chains import selectors, store
from chains.exceptions import ContractError
from chains.freshness import (
    LIVE_WITHIN_SECONDS,
    Freshness,
    broker_market,
    calendar_verdict,
    clock_text,
    feed_health,
    freshness,
    market_words,
    no_ticks_words,
)

NOW = datetime(2030, 1, 7, 9, 59, 58, tzinfo=UTC)  # Monday 15:29:58 IST
AS_OF = NOW - timedelta(seconds=1)
NOT_RUNNING_STATES = ("starting", "standby", "preparing", "connecting", "backoff", "token_wait",
                      "error", "store_unavailable", "stopping", "stopped")  # fmt: skip
INTERNAL_WORDS = ("token_wait", "store_unavailable", "backoff", "standby", "lock_held", "None")


def feed_record(now: datetime = NOW, **overrides: Any) -> dict[str, Any]:
    """A feed status record as the feed worker writes it at ``now``: connected, holding the
    lock, a tick a second ago, the market open by the broker's word unless overridden."""
    record: dict[str, Any] = {
        "account": "main",
        "broker": "dhan",
        "state": "live",
        "error": "",
        "pid": 4242,
        "updated_at": (now - timedelta(seconds=0.5)).isoformat(),
        "heartbeat_seconds": 1.0,
        "lock_held": True,
        "connected_since": (now - timedelta(minutes=5)).isoformat(),
        "last_frame_at": (now - timedelta(seconds=1)).isoformat(),
        "last_frame_age": 1.0,
        "last_tick_at": (now - timedelta(seconds=1)).isoformat(),
        "retry_at": None,
        "ticks_per_second": 120.0,
        "frames": 1000,
        "ticks": 9000,
        "unrouted": 0,
        "reconnects": 0,
        "crashes": 0,
        "decode_errors": 0,
        "publish_errors": 0,
        "store_errors": 0,
        "deltas": 50,
        "rest_legs": 0,
        "market": {},
        "chains": [],
        "history_recording": True,
        "history_bars": 0,
        "history_errors": 0,
        "history_last_error": "",
        "history_last_minute": None,
        "flush_seconds": {"bounds": [0.01], "counts": [3, 1], "sum": 0.05, "count": 4},
        "publish_lag_seconds": {"bounds": [0.5], "counts": [4, 0], "sum": 0.8, "count": 4},
    }
    record.update(overrides)
    return record


def write_feed(account: str, record: dict[str, Any] | None) -> None:
    """Store (or, for None, remove) ``account``'s feed status record in the test Redis."""
    client = store.sync_client()
    if record is None:
        client.delete(store.feed_key(account))
    else:
        client.set(store.feed_key(account), json.dumps(record), ex=60)


def judge(record: dict[str, Any] | None, *, market_open: bool | None = True,
          market_reason: str = "regular session", as_of: datetime | None = AS_OF,
          now: datetime = NOW) -> Freshness:  # fmt: skip
    return freshness(record, now=now, market_open=market_open, market_reason=market_reason,
                     as_of=as_of, account="main")  # fmt: skip


def ago(seconds: float, now: datetime = NOW) -> str:
    return (now - timedelta(seconds=seconds)).isoformat()


# --- live -------------------------------------------------------------------------------------


def test_a_recent_tick_with_a_fresh_heartbeat_is_live():
    f = judge(feed_record())
    assert (f.state, f.words, f.reason, f.seconds_since_tick) == ("live", "Live", "", 1)
    assert f.as_of == AS_OF and f.as_of_text == "15:29:57"


def test_live_lasts_exactly_the_live_window():
    assert judge(feed_record(last_tick_at=ago(LIVE_WITHIN_SECONDS))).state == "live"
    quiet = judge(feed_record(last_tick_at=ago(LIVE_WITHIN_SECONDS + 0.5)))
    assert (quiet.state, quiet.words) == ("quiet", "No ticks for 5 s")


def test_ticks_win_over_a_calendar_that_says_closed():
    # A special session the calendar does not know (Muhurat trading): prices are moving.
    assert judge(feed_record(), market_open=False, market_reason="weekend").state == "live"


def test_a_tick_stamped_in_the_future_counts_as_just_now():
    f = judge(feed_record(last_tick_at=ago(-2)))
    assert (f.state, f.seconds_since_tick) == ("live", 0)


# --- quiet ------------------------------------------------------------------------------------


def test_connected_open_market_without_ticks_is_quiet_counting_seconds():
    f = judge(feed_record(state="quiet", last_tick_at=ago(42)))
    assert (f.state, f.words, f.seconds_since_tick) == ("quiet", "No ticks for 42 s", 42)
    assert f.reason == "Connected and the market is open, but no ticks arrive."


def test_quiet_counts_minutes_after_two_minutes():
    assert judge(feed_record(last_tick_at=ago(119))).words == "No ticks for 119 s"
    assert judge(feed_record(last_tick_at=ago(150))).words == "No ticks for 2 min"
    assert no_ticks_words(3600) == "No ticks for 60 min"


def test_no_tick_since_the_worker_started_is_quiet_without_a_count():
    f = judge(feed_record(state="quiet", last_tick_at=None))
    assert (f.state, f.words, f.seconds_since_tick) == ("quiet", "No ticks yet", None)


def test_an_unknown_market_state_is_quiet_and_says_it_is_unknown():
    f = judge(feed_record(last_tick_at=ago(30)), market_open=None, market_reason="")
    assert f.state == "quiet"
    assert "market's state is not known" in f.reason


def test_the_brokers_open_status_outranks_a_calendar_that_says_closed():
    record = feed_record(last_tick_at=ago(30), market={"NSE_FO": "NORMAL_OPEN"})
    assert judge(record, market_open=False, market_reason="holiday: Holi").state == "quiet"


# --- market closed ----------------------------------------------------------------------------


def test_no_ticks_and_the_calendar_closed_is_market_closed():
    f = judge(feed_record(state="quiet", last_tick_at=ago(600)), market_open=False,
              market_reason="after the 15:30 IST close")  # fmt: skip
    assert (f.state, f.words) == ("closed", "Market closed")
    assert f.reason == "Market closed: after the 15:30 IST close. Prices as of 15:29:57."
    assert f.seconds_since_tick == 600


def test_the_brokers_closed_status_outranks_a_calendar_that_says_open():
    record = feed_record(last_tick_at=ago(30), market={"NSE_FO": "NORMAL_CLOSE"})
    f = judge(record, market_open=True)
    assert (f.state, f.words) == ("closed", "Market closed")
    assert "the broker reports NSE_FO closed" in f.reason


def test_dhans_valueless_status_change_leaves_the_verdict_to_the_calendar():
    record = feed_record(last_tick_at=ago(30), market={"NSE_FNO": MARKET_STATUS_CHANGED})
    assert judge(record, market_open=False, market_reason="weekend").state == "closed"
    assert judge(record, market_open=True).state == "quiet"


@pytest.mark.parametrize(
    ("market", "verdict"),
    [
        ({}, None),
        ({"NSE_FNO": MARKET_STATUS_CHANGED}, None),
        ({"NSE_FO": "NORMAL_OPEN"}, True),
        ({"NSE_FO": "NORMAL_CLOSE"}, False),
        ({"NSE_FO": "CLOSING_END"}, False),
        ({"NSE_FO": "CLOSING_START"}, False),
        ({"NSE_FO": "PRE_OPEN_START"}, False),
        ({"NSE_FO": "PRE_OPEN_END"}, False),
        ({"NSE_FO": "NORMAL_OPEN", "BSE_FO": "NORMAL_CLOSE"}, True),
        ({"NSE_FO": "SOMETHING_NEW"}, None),
    ],
)
def test_broker_market_verdicts(market, verdict):
    assert broker_market(market)[0] is verdict


def test_market_words_never_show_dhans_change_as_a_status():
    assert market_words({}) == "–"
    assert market_words({"NSE_FO": "NORMAL_OPEN", "BSE_FO": "NORMAL_CLOSE"}) == (
        "BSE_FO closed, NSE_FO open"
    )
    words = market_words({"NSE_FNO": MARKET_STATUS_CHANGED})
    assert words == "NSE_FNO status changed (DhanHQ does not say to what)"
    assert "unspecified" not in words


# --- stale --------------------------------------------------------------------------------------


def test_no_feed_record_is_stale_and_says_start_runfeed():
    f = judge(None)
    assert (f.state, f.words) == ("stale", "Last known as of 15:29:57")
    assert f.reason == (
        "No feed worker is running for account 'main': start "
        "`python manage.py runfeed --account main`."
    )
    assert f.seconds_since_tick is None


def test_a_heartbeat_older_than_three_beats_is_stale_although_the_key_lives():
    record = feed_record(updated_at=ago(3.5), last_tick_at=ago(3.5))
    f = judge(record)
    assert f.state == "stale"
    assert "stopped reporting at 15:29:54 (it was live)" in f.reason
    assert "runfeed --account main" in f.reason


def test_the_heartbeat_window_is_three_beats_and_at_least_three_seconds():
    assert judge(feed_record(updated_at=ago(3.0))).state == "live"  # exactly the window
    assert judge(feed_record(updated_at=ago(3.1))).state == "stale"
    slow = {"heartbeat_seconds": 2.0, "last_tick_at": ago(1)}
    assert judge(feed_record(updated_at=ago(5.9), **slow)).state == "live"
    assert judge(feed_record(updated_at=ago(6.1), **slow)).state == "stale"
    fast = {"heartbeat_seconds": 0.25}
    assert judge(feed_record(updated_at=ago(2.9), **fast)).state == "live"  # min 3 s
    assert judge(feed_record(updated_at=ago(3.1), **fast)).state == "stale"


def test_a_writer_without_the_lock_is_never_live():
    f = judge(feed_record(lock_held=False))
    assert f.state == "stale"
    assert "lost the account's feed lock" in f.reason


@pytest.mark.parametrize("updated_at", [None, "", "yesterday", "2030-01-07T09:59:57"])
def test_a_record_without_a_readable_heartbeat_is_stale(updated_at):
    f = judge(feed_record(updated_at=updated_at))
    assert f.state == "stale"
    assert "does not report a heartbeat" in f.reason


@pytest.mark.parametrize("state", NOT_RUNNING_STATES)
def test_every_unconnected_state_is_stale_in_traders_words_with_what_to_do(state):
    record = feed_record(state=state, error="ConnectionClosed: 1006", last_tick_at=ago(1))
    f = judge(record)
    health = feed_health(record, now=NOW, account="main")
    assert f.state == "stale" and f.words == "Last known as of 15:29:57"
    assert health.action and health.action in f.reason
    for word in INTERNAL_WORDS:
        assert word not in health.words and word not in f.reason, (state, word)
    assert health.feed_state == state and not health.connected


def test_reconnecting_says_so_and_never_says_start_runfeed():
    record = feed_record(state="backoff", error="ConnectionClosed: no close frame",
                         retry_at=(NOW + timedelta(seconds=7)).isoformat())  # fmt: skip
    health = feed_health(record, now=NOW, account="main")
    assert health.words == "Reconnecting after a drop"
    assert health.sentence == (
        "The feed of account 'main' lost its connection (ConnectionClosed: no close frame) and "
        "is reconnecting (next attempt at 15:30:05): nothing to do unless it lasts — then an "
        "admin checks /status/ and the worker's log."
    )
    assert "start" not in health.sentence


@pytest.mark.parametrize(("broker", "how"), [("dhan", "enter a new access token"),
                                             ("upstox", "log in to Upstox again")])  # fmt: skip
def test_waiting_for_a_token_says_who_must_do_what(broker, how):
    record = feed_record(state="token_wait", broker=broker, error="access token expired")
    health = feed_health(record, now=NOW, account="main")
    assert health.words == "Waiting for a new access token"
    assert health.sentence == (
        "The feed of account 'main' waits for a new access token (access token expired): "
        f"an admin must {how} in admin → Broker accounts."
    )


def test_standby_says_another_worker_holds_the_lock():
    health = feed_health(feed_record(state="standby", lock_held=False), now=NOW, account="main")
    assert health.words == "Standing by"
    assert "another worker holds the account's feed lock" in health.sentence


def test_stale_without_data_says_no_data():
    f = judge(None, as_of=None)
    assert (f.words, f.as_of_text) == ("No data", "–")


def test_an_as_of_time_before_today_carries_its_day():
    f = judge(None, as_of=datetime(2030, 1, 6, 9, 59, 58, tzinfo=UTC))
    assert f.words == "Last known as of 06 Jan 15:29:58"
    assert clock_text(None, now=NOW) == "–"


@given(
    state=st.sampled_from(["live", "quiet", *NOT_RUNNING_STATES]),
    heartbeat_age=st.floats(min_value=0, max_value=30),
    heartbeat_seconds=st.floats(min_value=0.1, max_value=5),
    lock_held=st.sampled_from([True, False]),
    tick_age=st.one_of(st.none(), st.floats(min_value=-5, max_value=600)),
    market_open=st.sampled_from([True, False, None]),
)
def test_never_live_without_a_connection_a_heartbeat_and_the_lock(
    state, heartbeat_age, heartbeat_seconds, lock_held, tick_age, market_open
):
    record = feed_record(state=state, updated_at=ago(heartbeat_age),
                         heartbeat_seconds=heartbeat_seconds, lock_held=lock_held,
                         last_tick_at=None if tick_age is None else ago(tick_age))  # fmt: skip
    f = judge(record, market_open=market_open)
    window = max(3.0, 3 * heartbeat_seconds)
    alive = state in {"live", "quiet"} and heartbeat_age <= window and lock_held
    assert (f.state != "stale") == alive
    if f.state == "live":
        assert tick_age is not None and tick_age <= LIVE_WITHIN_SECONDS
    health = feed_health(record, now=NOW, account="main")
    assert (health.feed_state in {"live", "quiet"}) == alive


# --- the feed's state as the API names it --------------------------------------------------------


def test_feed_state_is_down_whenever_the_record_cannot_be_trusted():
    assert feed_health(None, now=NOW).feed_state == "down"
    assert feed_health(feed_record(updated_at=ago(10)), now=NOW).feed_state == "down"
    assert feed_health(feed_record(lock_held=False), now=NOW).feed_state == "down"
    assert feed_health(feed_record(), now=NOW).feed_state == "live"
    assert feed_health(feed_record(last_tick_at=ago(9)), now=NOW).feed_state == "quiet"
    assert feed_health(feed_record(state="backoff"), now=NOW).feed_state == "backoff"


@pytest.mark.parametrize("key", ["heartbeat_seconds", "lock_held", "last_tick_at"])
def test_a_record_without_a_heartbeat_field_is_refused_when_read_not_guessed(key, clean_redis):
    """Every worker writes these fields: a record without one is a writer running other code,
    and reading it fails naming the key (no fallback to a one-second heartbeat or the last
    frame's time)."""
    legacy = feed_record()
    del legacy[key]
    write_feed("main", legacy)
    with pytest.raises(ContractError, match=rf"feed status record lacks '{key}'"):
        store.read_feed_status("main")


def test_to_json_is_the_documented_object():
    assert judge(feed_record(last_tick_at=ago(42))).to_json() == {
        "state": "quiet",
        "words": "No ticks for 42 s",
        "reason": "Connected and the market is open, but no ticks arrive.",
        "as_of": AS_OF.isoformat(),
        "seconds_since_tick": 42,
    }


# --- the exchange calendar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        (MarketState(Phase.OPEN), (True, "regular session")),
        (MarketState(Phase.CLOSED, "weekend"), (False, "weekend")),
        (MarketState(Phase.CLOSED, "holiday: Holi"), (False, "trading holiday (Holi)")),
        (MarketState(Phase.CLOSED, "before open"), (False, "before the 09:15 IST open")),
        (MarketState(Phase.CLOSED, "after close"), (False, "after the 15:30 IST close")),
        (MarketState(Phase.PRE_OPEN, "pre-open"),
         (False, "pre-open session; options trade from 09:15 IST")),
    ],
)  # fmt: skip
def test_the_calendars_states_in_words(state, verdict):
    assert calendar_verdict(state) == verdict


# --- every surface says the same -------------------------------------------------------------

HOLIDAY = datetime(2030, 3, 20, 5, 30, tzinfo=UTC)  # a Wednesday, 11:00 IST


@pytest.fixture
def surfaces(db, tmp_path, clean_redis, client, django_user_model):
    """A tracked DhanHQ NIFTY chain with its snapshot stored, and a logged-in client."""
    from tests.chains.fixtures import EXPIRY, build_book, publish, tracked

    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY), feed_state=None)
    client.force_login(django_user_model.objects.create_user("trader", password="x" * 12))
    calendar.clear_cache()
    yield account, EXPIRY, client
    calendar.clear_cache()


def view_at(account, expiry, now: datetime, **feed: Any):
    write_feed(account.name, feed_record(now, **feed))
    chain = TrackedChain.objects.select_related("account").get(account=account)
    return selectors.chain_view(chain, expiry, now=now)


def test_the_exchange_calendar_closes_a_quiet_chain_on_a_holiday(surfaces):
    account, expiry, _ = surfaces
    ExchangeHoliday.objects.create(exchange="NSE", date=HOLIDAY.date(), name="Test holiday")
    view = view_at(account, expiry, HOLIDAY, state="quiet", last_tick_at=ago(3600, HOLIDAY))
    assert view.ok and view.source == "live"
    assert (view.freshness.state, view.freshness.words) == ("closed", "Market closed")
    assert "trading holiday (Test holiday)" in view.freshness.reason
    assert view.feed_state == "quiet"
    # The next trading day at the same hour, the same silence is a quiet market.
    later = HOLIDAY + timedelta(days=1)
    view = view_at(account, expiry, later, state="quiet", last_tick_at=ago(3600, later))
    assert view.freshness.state == "quiet"


def test_the_status_message_carries_the_freshness_and_agrees_with_it(surfaces):
    account, expiry, _ = surfaces
    now = HOLIDAY + timedelta(days=1)
    live = view_at(account, expiry, now)
    message = live.status_message()
    assert message == {"type": "status", "feed_state": "live", "source": "live", "code": None,
                       "message": "", "freshness": live.freshness.to_json()}  # fmt: skip
    assert message["freshness"]["state"] == "live"
    gone = view_at(account, expiry, now, updated_at=ago(30, now))
    message = gone.status_message()
    assert (message["feed_state"], message["source"], message["code"]) == (
        "down", "last_known", "feed_down")  # fmt: skip
    assert message["freshness"]["state"] == "stale"
    assert message["freshness"]["reason"] == message["message"]


def test_the_status_key_ignores_a_quiet_chains_count_but_not_its_state(surfaces):
    account, expiry, _ = surfaces
    now = HOLIDAY + timedelta(days=1)
    quiet = {"state": "quiet", "market": {"NSE_FNO": "NORMAL_OPEN"}}
    first = view_at(account, expiry, now, last_tick_at=ago(42, now), **quiet)
    later = now + timedelta(seconds=1)
    second = view_at(account, expiry, later, last_tick_at=ago(43, later), **quiet)
    assert first.status_message() != second.status_message()
    assert first.status_key() == second.status_key()
    live = view_at(account, expiry, later)
    assert live.status_key() != second.status_key()


def test_the_page_renders_the_badge_the_as_of_time_and_no_banner_when_quiet(surfaces):
    account, expiry, client = surfaces
    now = datetime.now(UTC)
    write_feed(account.name, feed_record(now, heartbeat_seconds=30.0, state="quiet",
                                         last_tick_at=ago(42, now),
                                         market={"NSE_FNO": "NORMAL_OPEN"}))  # fmt: skip
    page = client.get(f"/chains/NIFTY/{expiry.isoformat()}/").content.decode()
    badge = page[page.index('id="freshness"') : page.index("</span>", page.index('id="freshness"'))]
    assert 'data-state="quiet"' in badge and "No ticks for 4" in badge  # 42 s or a bit more
    assert '<span class="as-of" id="as-of">as of <time datetime=' in page
    stale = page[page.index('id="stale"') - 40 : page.index('id="stale"') + 40]
    assert "hidden" in stale
    assert ">Live<" not in page


def test_the_page_of_a_chain_whose_feed_is_gone_shows_last_known_and_why(surfaces):
    account, expiry, client = surfaces
    now = datetime.now(UTC)
    write_feed(account.name, feed_record(now, updated_at=ago(30, now)))
    response = client.get(f"/chains/NIFTY/{expiry.isoformat()}/")
    assert response.status_code == 503
    page = response.content.decode()
    assert 'data-state="stale"' in page
    banner = page[page.index('id="stale"') : page.index("</div>", page.index('id="stale"'))]
    assert "hidden" not in banner.split(">")[0]
    assert "Last known as of " in banner and "stopped reporting at" in banner
    assert ">Live<" not in page


def test_the_chain_list_shows_each_chains_freshness(surfaces):
    account, _, client = surfaces
    write_feed(account.name, None)
    page = client.get("/").content.decode()
    assert "Last known as of " in page
    assert '<span class="ok">live</span>' not in page
