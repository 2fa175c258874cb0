"""The JSON API: its shape, and every error code, for both brokers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from brokers.models import AccountStatus, TrackedChain
from chains.book import stored_snapshot
from chains.models import ChainSnapshot
from tests.asgi_client import AsgiClient

from .fixtures import EXPIRY, LATER, build_book, publish, tracked
from .test_freshness import feed_record, write_feed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_redis")]
LEG_KEYS = {
    "instrument_id", "ltp", "change", "bid", "ask", "bid_qty", "ask_qty", "volume", "oi",
    "oi_change", "prev_close", "iv", "delta", "gamma", "theta", "vega", "buildup", "exchange_time",
}  # fmt: skip
DATA_KEYS = {
    "underlying", "expiry", "lot_size", "strike_interval", "atm_strike", "spot", "forward",
    "spot_prev_close", "pcr", "max_pain", "source", "as_of", "seq", "strikes",
}  # fmt: skip
FRESHNESS_KEYS = {"state", "words", "reason", "as_of", "seconds_since_tick"}


@pytest.fixture
def user_client(db):
    return AsgiClient.logged_in(
        get_user_model().objects.create_user("trader", password="pw-test-only")
    )


@pytest.fixture
def anonymous():
    return AsgiClient()


@pytest.fixture(params=["dhan", "upstox"])
def broker_account(request, tmp_path):
    return tracked(tmp_path, request.param)


def live(client, **params):
    return client.get("/api/v2/options/live", {"underlying": "NIFTY", **params})


def serve(account, chain, *, ready: bool = True, **feed: object) -> None:
    """Store the chain's snapshot and a feed status record as the feed worker writes them
    (connected, a tick just now) with ``feed`` overriding fields of the record. The record
    promises a heartbeat every 30 s, so a slow test does not see it go stale."""
    publish(account, chain, ready=ready, feed_state=None)
    now = timezone.now()
    fields = {"heartbeat_seconds": 30.0, "last_tick_at": now.isoformat(), **feed}
    write_feed(account.name, feed_record(now, account=account.name, broker=account.kind,
                                         **fields))  # fmt: skip


def ago(seconds: float) -> str:
    return (timezone.now() - timedelta(seconds=seconds)).isoformat()


def test_live_chain_has_the_documented_shape(user_client, broker_account):
    chain = build_book(broker_account, EXPIRY)
    serve(broker_account, chain)
    response = live(user_client)  # no expiry: the nearest
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert set(body) == {"status", "freshness", "data"}
    assert set(body["freshness"]) == FRESHNESS_KEYS
    assert (body["freshness"]["state"], body["freshness"]["words"]) == ("live", "Live")
    assert body["freshness"]["as_of"] == body["data"]["as_of"]
    data = body["data"]
    assert set(data) == DATA_KEYS
    assert (data["underlying"], data["expiry"], data["source"]) == (
        "NIFTY",
        EXPIRY.isoformat(),
        "live",
    )
    assert data["strike_interval"] == 100.0 and data["lot_size"] == 75
    assert set(data["strikes"]) == {"25900", "26000", "26100", "26200"}
    leg = data["strikes"]["26000"]["CE"]
    assert set(leg) == LEG_KEYS
    assert leg["iv"] == pytest.approx(0.14, abs=0.005)
    assert data["atm_strike"] == 26_000.0


def test_explicit_expiry_is_served(user_client, broker_account):
    serve(broker_account, build_book(broker_account, LATER))
    response = live(user_client, expiry=LATER.isoformat())
    assert response.status_code == 200
    assert response.json()["data"]["expiry"] == LATER.isoformat()


def test_expiries_lists_the_tracked_expiries(user_client, broker_account):
    response = user_client.get("/api/v2/options/expiries", {"underlying": "nifty"})
    assert response.json() == {
        "status": "success",
        "data": {"underlying": "NIFTY", "expiries": [EXPIRY.isoformat(), LATER.isoformat()]},
    }


def test_anonymous_is_refused_with_401(anonymous, broker_account):
    response = live(anonymous)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert anonymous.get("/api/v2/options/expiries", {"underlying": "NIFTY"}).status_code == 401


def test_public_setting_opens_the_api(anonymous, broker_account, settings):
    settings.CHAINS_PUBLIC = True
    serve(broker_account, build_book(broker_account, EXPIRY))
    assert live(anonymous).status_code == 200


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"underlying": ""}, "underlying is required"),
        ({"expiry": "24-11-2026"}, "is not a date: use YYYY-MM-DD"),
        ({"expiry": "2026-02-30"}, "is not a date"),
    ],
)
def test_bad_parameters_answer_400(user_client, broker_account, params, message):
    response = live(user_client, **params)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert message in response.json()["message"]


def test_untracked_underlying_answers_404_listing_valid_ones(user_client, broker_account):
    response = live(user_client, underlying="BANKNIFTY")
    assert response.status_code == 404
    assert response.json()["code"] == "not_tracked"
    assert response.json()["valid"] == ["NIFTY"]
    assert user_client.get("/api/v2/options/expiries", {"underlying": "X"}).status_code == 404


def test_untracked_expiry_answers_404_listing_valid_ones(user_client, broker_account):
    response = live(user_client, expiry=(LATER + timedelta(days=7)).isoformat())
    assert response.status_code == 404
    assert response.json()["valid"] == [EXPIRY.isoformat(), LATER.isoformat()]


def test_missing_credentials_answer_503_with_last_known_data(user_client, broker_account):
    serve(broker_account, build_book(broker_account, EXPIRY))
    broker_account.set_access_token("")
    broker_account.save()
    response = live(user_client)
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "credentials_missing"
    assert "an admin must add it in admin → Broker accounts" in body["message"]
    assert body["data"]["source"] == "last_known"
    assert body["data"]["strikes"]
    # Ticks may still arrive, but a failed answer is never live: stale, with the reason.
    assert body["freshness"]["state"] == "stale"
    assert body["freshness"]["words"].startswith("Last known as of ")
    assert body["freshness"]["reason"] == body["message"]


def test_expired_token_answers_503_token_expired(user_client, broker_account):
    serve(broker_account, build_book(broker_account, EXPIRY))
    broker_account.status = AccountStatus.TOKEN_EXPIRED
    broker_account.save()
    response = live(user_client)
    assert response.status_code == 503
    assert response.json()["code"] == "token_expired"
    assert "expired" in response.json()["message"]


def test_token_past_its_expiry_answers_token_expired(user_client, broker_account):
    broker_account.token_expires_at = timezone.now() - timedelta(minutes=1)
    broker_account.save()
    assert live(user_client).json()["code"] == "token_expired"


def test_feed_down_serves_last_known_snapshot_from_redis(user_client, broker_account):
    publish(broker_account, build_book(broker_account, EXPIRY), feed_state=None)
    response = live(user_client)
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "feed_down"
    assert body["message"] == (
        "No feed worker is running for account 'main': start "
        "`python manage.py runfeed --account main`."
    )
    assert body["data"]["source"] == "last_known"
    assert body["freshness"]["state"] == "stale"


def test_feed_down_serves_the_persisted_snapshot_from_the_database(user_client, broker_account):
    chain = build_book(broker_account, EXPIRY)
    snapshot = stored_snapshot(chain, account=broker_account.name, broker=broker_account.kind)
    as_of = timezone.now() - timedelta(days=1)
    ChainSnapshot.objects.create(account=broker_account, underlying="NIFTY", expiry=EXPIRY,
                                 seq=chain.seq, as_of=as_of, data=snapshot)  # fmt: skip
    response = live(user_client)
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "feed_down"
    assert body["data"]["source"] == "closing"  # yesterday's last state
    assert body["data"]["seq"] == chain.seq


def test_feed_reconnecting_says_so_not_start_runfeed(user_client, broker_account):
    serve(broker_account, build_book(broker_account, EXPIRY), state="backoff",
          error="ConnectionClosed: no close frame received")  # fmt: skip
    body = live(user_client).json()
    assert body["code"] == "feed_down"
    assert body["message"].startswith(
        "The feed of account 'main' lost its connection (ConnectionClosed: no close frame "
        "received) and is reconnecting"
    )
    assert "start" not in body["message"]
    assert body["freshness"]["state"] == "stale"


def test_feed_waiting_for_a_token_says_what_an_admin_must_do(user_client, broker_account):
    serve(broker_account, build_book(broker_account, EXPIRY), state="token_wait",
          error="DhanHQ says the access token has expired")  # fmt: skip
    message = live(user_client).json()["message"]
    assert message.startswith("The feed of account 'main' waits for a new access token")
    assert "an admin must" in message and "runfeed" not in message
    assert "token_wait" not in message


def test_a_feed_record_whose_heartbeat_stopped_is_not_live(user_client, broker_account):
    # A kill -9'd worker's key outlives it by up to its TTL: the heartbeat says it is gone.
    serve(broker_account, build_book(broker_account, EXPIRY), updated_at=ago(20),
          heartbeat_seconds=1.0, last_tick_at=ago(20))  # fmt: skip
    response = live(user_client)
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "feed_down"
    assert "stopped reporting at" in body["message"]
    assert body["data"]["source"] == "last_known"
    assert body["freshness"]["state"] == "stale"


def test_a_feed_record_written_without_the_lock_is_not_live(user_client, broker_account):
    serve(broker_account, build_book(broker_account, EXPIRY), lock_held=False)
    body = live(user_client).json()
    assert body["code"] == "feed_down"
    assert "lost the account's feed lock" in body["message"]


def test_quiet_and_closed_chains_answer_200_saying_so(user_client, broker_account):
    chain = build_book(broker_account, EXPIRY)
    serve(broker_account, chain, state="quiet", last_tick_at=ago(42),
          market={"NSE_FO": "NORMAL_OPEN"})  # fmt: skip
    body = live(user_client).json()
    assert body["status"] == "success" and body["data"]["source"] == "live"
    assert body["freshness"]["state"] == "quiet"
    assert body["freshness"]["words"] in {"No ticks for 42 s", "No ticks for 43 s"}
    serve(broker_account, chain, state="quiet", last_tick_at=ago(600),
          market={"NSE_FO": "NORMAL_CLOSE"})  # fmt: skip
    body = live(user_client).json()
    assert (body["freshness"]["state"], body["freshness"]["words"]) == ("closed", "Market closed")


def test_the_cached_live_answer_still_follows_the_feeds_freshness(user_client, broker_account):
    chain = build_book(broker_account, EXPIRY)
    serve(broker_account, chain)
    assert live(user_client).json()["freshness"]["state"] == "live"
    # Same snapshot (the cached bytes), but the ticks stopped: the answer says so.
    write_feed(broker_account.name, feed_record(timezone.now(), account=broker_account.name,
                                                state="quiet", last_tick_at=ago(30),
                                                market={"NSE_FO": "NORMAL_OPEN"}))  # fmt: skip
    assert live(user_client).json()["freshness"]["state"] == "quiet"
    write_feed(broker_account.name, feed_record(timezone.now(), updated_at=ago(30)))
    body = live(user_client).json()
    assert body["code"] == "feed_down" and body["freshness"]["state"] == "stale"


def test_live_feed_but_unpopulated_chain_answers_not_populated(user_client, broker_account):
    serve(broker_account, build_book(broker_account, EXPIRY), ready=False)
    response = live(user_client)
    assert response.status_code == 503
    assert response.json()["code"] == "not_populated"
    assert "only 0 of 8 legs have a price" in response.json()["message"]


def test_no_data_at_all_never_answers_an_empty_chain(user_client, broker_account):
    response = live(user_client)
    assert response.status_code == 503
    assert response.json()["code"] == "feed_down"
    assert response.json()["data"] is None


# --- the live chain's hot path (bench/api.py) -----------------------------------------------


def test_live_answers_of_one_snapshot_agree_and_a_new_snapshot_is_served_at_once(
    user_client, broker_account
):
    chain = build_book(broker_account, EXPIRY)
    serve(broker_account, chain)
    first, again = live(user_client), live(user_client)
    assert first.status_code == again.status_code == 200
    assert first.json()["data"] == again.json()["data"]
    assert first.json()["data"]["seq"] == chain.seq
    leg = next(iter(chain.legs.values()))
    old_ltp = leg.ltp
    chain.apply_fields(leg.instrument, {"ltp": old_ltp + 7.5}, observed_at=2.0)
    chain.flush(timezone.now())
    serve(broker_account, chain)
    newer = live(user_client).json()["data"]
    assert newer["seq"] == first.json()["data"]["seq"] + 1
    strike = str(int(leg.strike))
    assert first.json()["data"]["strikes"][strike][leg.option_type]["ltp"] == old_ltp
    assert newer["strikes"][strike][leg.option_type]["ltp"] == old_ltp + 7.5


def test_cached_live_answer_equals_the_full_answer(user_client, broker_account):
    from chains import api, selectors

    serve(broker_account, build_book(broker_account, EXPIRY))
    body = live(user_client).json()
    view = selectors.chain_view(*selectors.resolve("NIFTY", None))
    assert body["data"] == api.view_data(view)
    assert body["freshness"]["state"] == view.freshness.state == "live"
    assert body["freshness"]["as_of"] == view.freshness.to_json()["as_of"]


def test_a_restarted_feed_with_the_same_seq_is_not_served_from_the_cache(
    user_client, broker_account
):
    serve(broker_account, build_book(broker_account, EXPIRY, forward=26_040.0))
    before = live(user_client).json()["data"]
    serve(broker_account, build_book(broker_account, EXPIRY, forward=26_400.0))  # seq 1 again
    after = live(user_client).json()["data"]
    assert after["seq"] == before["seq"] and after["as_of"] != before["as_of"]
    assert after["forward"] != before["forward"]


def test_resolution_is_reused_briefly_and_forgotten_when_a_chain_is_saved(
    user_client, broker_account, monkeypatch
):
    from chains import api

    serve(broker_account, build_book(broker_account, EXPIRY))
    assert live(user_client).status_code == 200
    TrackedChain.objects.update(enabled=False)  # no signal: the cached resolution still holds
    assert live(user_client).status_code == 200
    later = api.clock() + api.RESOLVE_SECONDS + 0.1
    monkeypatch.setattr(api, "clock", lambda: later)  # this module's clock, not the process's
    assert live(user_client).status_code == 404  # expired: resolved afresh
    tracked_chain = TrackedChain.objects.get()
    tracked_chain.enabled = True
    tracked_chain.save()  # a save forgets at once
    assert live(user_client).status_code == 200
    tracked_chain.enabled = False
    tracked_chain.save()
    assert live(user_client).status_code == 404
