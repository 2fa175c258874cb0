"""The status page and its JSON API: who may see them (staff only), and that accounts, feed
workers, chains and periodic tasks show what is wrong and what to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from brokers.dhan.codec import MARKET_STATUS_CHANGED
from brokers.models import AccountStatus
from chains import status_selectors, store
from chains.models import TaskOutcome
from chains.outcomes import (
    CHECK_TOKENS,
    PERIODIC_TASKS,
    REFRESH_INSTRUMENTS,
    REPOPULATE,
    REPOPULATE_FORCED,
    record_outcome,
)
from chains.status_selectors import NEVER_RUN
from tests.brokers.factories import dhan_account, upstox_account
from tests.chains.fixtures import EXPIRY, LATER, build_book, publish, tracked
from tests.chains.test_freshness import feed_record, write_feed
from tests.redis_server import RedisServer, use_in_process

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_redis")]


@pytest.fixture
def user_client(client, django_user_model):
    """A staff user's client: the status shows accounts, tokens, errors and PIDs."""
    staff = django_user_model.objects.create_user("admin", password="x" * 12, is_staff=True)
    client.force_login(staff)
    return client


@pytest.fixture
def trader_client(client, django_user_model):
    """A logged-in user who is not staff: chain pages, never the status."""
    client.force_login(django_user_model.objects.create_user("trader", password="x" * 12))
    return client


def api(client) -> dict:
    response = client.get("/api/v2/status")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()["data"]


# --- access --------------------------------------------------------------------------------------


def test_the_api_answers_anonymous_callers_401_json_not_a_redirect(client):
    response = client.get("/api/v2/status")
    assert response.status_code == 401
    assert response.json() == {
        "status": "error",
        "code": "unauthenticated",
        "message": "Log in at /accounts/login/ to see the status.",
    }


def test_the_page_sends_anonymous_visitors_to_the_login(client):
    response = client.get("/status/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/status/")


def test_the_api_answers_a_trader_who_is_not_staff_403_json_naming_what_to_do(trader_client):
    dhan_account("main")
    response = trader_client.get("/api/v2/status")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["status"], body["code"]) == ("error", "staff_only")
    assert "Staff status" in body["message"]
    assert "main" not in response.content.decode()  # no account name, token or error leaks


def test_the_page_answers_a_trader_who_is_not_staff_403_saying_why(trader_client):
    main = dhan_account("main")
    main.last_error = "DhanHQ rejected the token: paste a new one"
    main.save()
    response = trader_client.get("/status/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "staff only" in page and "Staff status" in page
    assert "DhanHQ rejected the token" not in page and "Broker accounts" not in page
    assert 'href="/status/"' not in page  # the navigation does not offer it either


def test_a_trader_still_sees_chain_state_on_the_chain_pages(trader_client, tmp_path):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY), feed_state=None)
    write_feed("main", feed_record(timezone.now(), heartbeat_seconds=30.0,
                                   last_tick_at=timezone.now().isoformat()))  # fmt: skip
    response = trader_client.get(f"/chains/NIFTY/{EXPIRY.isoformat()}/")
    assert response.status_code == 200
    assert 'id="freshness" data-state="live"' in response.content.decode()


def test_with_two_factor_required_staff_need_a_confirmed_code(client, django_user_model, settings):
    settings.ADMIN_REQUIRE_OTP = True
    dhan_account("main")
    client.force_login(django_user_model.objects.create_user("clerk", is_staff=True))
    # A password-only login (e.g. through /accounts/login/) is not verified by a one-time code.
    assert client.get("/api/v2/status").status_code == 403
    assert client.get("/status/").status_code == 403
    settings.ADMIN_REQUIRE_OTP = False
    assert client.get("/api/v2/status").status_code == 200


def test_staff_see_the_status_link(user_client):
    assert 'href="/status/"' in user_client.get("/").content.decode()


def test_the_api_refuses_writes(user_client):
    assert user_client.post("/api/v2/status").status_code == 405


# --- what it shows -------------------------------------------------------------------------------


def test_an_empty_system_still_lists_every_periodic_task_as_never_run(user_client):
    data = api(user_client)
    assert data["accounts"] == [] and data["feeds"] == [] and data["chains"] == []
    assert [t["name"] for t in data["tasks"]] == sorted(PERIODIC_TASKS)
    assert {t["state"] for t in data["tasks"]} == {"never run"}
    assert data["tasks"][0]["detail"] == NEVER_RUN
    assert data["channel_gaps"] == 0


def test_accounts_show_token_state_expiry_time_left_and_errors(user_client):
    main = dhan_account("main")
    main.token_expires_at = timezone.now() + timedelta(hours=5, minutes=30)
    main.last_error = "Renewing the DhanHQ access token of 'main' failed: busy"
    main.save()
    upstox_account("ux", token=False)
    accounts = {a["name"]: a for a in api(user_client)["accounts"]}
    assert 5 * 3600 < accounts["main"]["token_seconds_left"] <= 5.5 * 3600
    assert accounts["main"]["last_error"].startswith("Renewing the DhanHQ access token")
    assert accounts["ux"]["token_present"] is False
    assert "an admin must add it" in accounts["ux"]["problem"]


def test_a_feed_worker_that_is_not_running_says_so(user_client):
    dhan_account("main")
    (feed,) = api(user_client)["feeds"]
    assert feed["account"] == "main" and feed["state"] == "not running"
    assert feed["ticks_per_second"] is None


def test_a_running_feed_worker_shows_its_counters(user_client, clean_redis):
    dhan_account("main")
    write_feed("main", feed_record(timezone.now(), heartbeat_seconds=30.0, ticks_per_second=812.5,
                                   reconnects=2, decode_errors=3, last_frame_age=0.1))  # fmt: skip
    clean_redis.set(store.GAPS_KEY, 4)
    data = api(user_client)
    (feed,) = data["feeds"]
    assert (feed["state"], feed["ticks_per_second"], feed["reconnects"]) == ("live", 812.5, 2)
    assert feed["decode_errors"] == 3 and feed["last_frame_age"] == 0.1
    assert (feed["connected"], feed["words"], feed["action"]) == (True, "Connected", "")
    assert data["channel_gaps"] == 4


def test_failed_history_writes_are_shown_with_what_to_do(user_client):
    dhan_account("main")
    error = "Writing the 10:01 minute bars failed (OperationalError: refused): check DATABASE_URL"
    write_feed("main", feed_record(timezone.now(), heartbeat_seconds=30.0, history_bars=120,
                                   history_errors=2, history_last_error=error,
                                   history_last_minute="2026-12-07T10:03:00+05:30"))  # fmt: skip
    (feed,) = api(user_client)["feeds"]
    assert (feed["history_errors"], feed["history_last_error"]) == (2, error)
    assert feed["history_last_minute"] == "2026-12-07T10:03:00+05:30"
    page = user_client.get("/status/").content.decode()
    assert "recorded to 10:03" in page and "2 failed: Writing the 10:01 minute bars" in page
    write_feed("main", feed_record(timezone.now(), heartbeat_seconds=30.0,
                                   history_recording=False))  # fmt: skip
    assert "off (HISTORY_RECORDING)" in user_client.get("/status/").content.decode()


def test_a_feed_worker_whose_heartbeat_stopped_is_not_reported_live(user_client):
    # kill -9: the record says "live" and its key lives on until its TTL; its heartbeat is old.
    dhan_account("main")
    stopped = (timezone.now() - timedelta(seconds=8)).isoformat()
    write_feed("main", feed_record(timezone.now(), updated_at=stopped, last_tick_at=stopped))
    data = api(user_client)
    (feed,) = data["feeds"]
    assert feed["state"] == "not reporting" and feed["reported_state"] == "live"
    assert feed["feed_state"] == "down" and feed["connected"] is False
    assert "runfeed --account main" in feed["action"]
    (account,) = data["accounts"]
    assert account["feed"]["state"] == "not reporting"
    page = user_client.get("/status/").content.decode()
    assert "Stopped reporting" in page
    assert 'class="badge feed-live"' not in page


def test_a_reconnecting_feed_says_so_and_not_start_runfeed(user_client, tmp_path):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY), feed_state=None)
    write_feed("main", feed_record(timezone.now(), state="backoff", heartbeat_seconds=30.0,
                                   error="ConnectionClosed: no close frame received"))  # fmt: skip
    data = api(user_client)
    (feed,) = data["feeds"]
    assert feed["words"] == "Reconnecting after a drop"
    nearest = {c["expiry"]: c for c in data["chains"]}[EXPIRY.isoformat()]
    assert nearest["code"] == "feed_down"
    assert "is reconnecting" in nearest["message"] and "runfeed" not in nearest["message"]
    assert nearest["freshness"]["state"] == "stale"
    page = user_client.get("/status/").content.decode()
    assert "Reconnecting after a drop" in page
    assert "start <code>python manage.py runfeed" not in page


def test_the_brokers_market_status_reads_in_words_never_unspecified(user_client):
    dhan_account("main")
    write_feed("main", feed_record(timezone.now(), heartbeat_seconds=30.0,
                                   market={"NSE_FNO": MARKET_STATUS_CHANGED}))  # fmt: skip
    (feed,) = api(user_client)["feeds"]
    assert feed["market"] == "NSE_FNO status changed (DhanHQ does not say to what)"
    assert "unspecified" not in user_client.get("/status/").content.decode()


def test_chains_show_source_seq_and_legs_priced(user_client, tmp_path):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY), feed_state=None)
    write_feed("main", feed_record(timezone.now(), heartbeat_seconds=30.0,
                                   last_tick_at=timezone.now().isoformat()))  # fmt: skip
    chains = {c["expiry"]: c for c in api(user_client)["chains"]}
    nearest = chains[EXPIRY.isoformat()]
    assert (nearest["source"], nearest["code"], nearest["seq"]) == ("live", None, 1)
    assert nearest["freshness"]["state"] == "live" and nearest["feed_state"] == "live"
    assert (nearest["strikes"], nearest["legs"], nearest["legs_priced"]) == (4, 8, 8)
    later = chains[LATER.isoformat()]
    assert later["source"] is None and later["code"] == "not_populated"
    assert (later["legs"], later["legs_priced"]) == (0, 0)


def test_task_outcomes_show_failures_with_their_error(user_client):
    with pytest.raises(RuntimeError), record_outcome(REFRESH_INSTRUMENTS) as outcome:
        outcome.add("main: 2920 instruments")
        raise RuntimeError("sim-dhan: HTTP 404")
    tasks = {t["name"]: t for t in api(user_client)["tasks"]}
    failed = tasks[REFRESH_INSTRUMENTS]
    assert failed["state"] == "failed" and failed["ok"] is False
    assert failed["detail"] == "RuntimeError: sim-dhan: HTTP 404\nmain: 2920 instruments"
    assert failed["finished_at"] is not None


def test_the_page_renders_every_section_with_what_to_do(user_client):
    main = dhan_account("main")
    main.status, main.last_error = "token_expired", "DhanHQ rejected the token: paste a new one"
    main.save()
    now = timezone.now()
    TaskOutcome.objects.create(
        name="check tokens", started_at=now, finished_at=now, ok=False, detail="TokenCheckFailed"
    )
    response = user_client.get("/status/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("Broker accounts", "Feed workers", "Chains", "Periodic tasks",
                 "DhanHQ rejected the token: paste a new one",
                 "python manage.py runfeed --account main", "TokenCheckFailed",
                 "Not due yet — next at", "Messages dropped by the channel layer"):  # fmt: skip
        assert text in page, text


def test_a_quiet_chain_is_not_listed_as_live(user_client, tmp_path):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY), feed_state=None)
    quiet_since = (timezone.now() - timedelta(seconds=90)).isoformat()
    write_feed("main", feed_record(timezone.now(), state="quiet", heartbeat_seconds=30.0,
                                   last_tick_at=quiet_since,
                                   market={"NSE_FNO": "NORMAL_OPEN"}))  # fmt: skip
    nearest = {c["expiry"]: c for c in api(user_client)["chains"]}[EXPIRY.isoformat()]
    assert nearest["code"] is None and nearest["freshness"]["state"] == "quiet"
    assert nearest["feed_state"] == "quiet"
    page = user_client.get("/status/").content.decode()
    assert "No ticks for 9" in page  # 90 s, or a second more on a slow machine
    assert '<span class="ok">live</span>' not in page


# --- tokens ----------------------------------------------------------------------------------


def test_an_expired_account_never_shows_time_left_from_its_old_expiry(user_client):
    # The broker refused the token (code 807) while the expiry stored for it was a day ahead.
    main = dhan_account("main")
    main.token_expires_at = timezone.now() + timedelta(hours=23, minutes=47, seconds=30)
    main.status = AccountStatus.TOKEN_EXPIRED
    main.last_error = "DhanHQ says the access token has expired"
    main.save()
    (account,) = api(user_client)["accounts"]
    assert account["token_seconds_left"] is None
    assert account["token_time_left"].startswith("expired (the broker says so)")
    page = user_client.get("/status/").content.decode()
    assert "23h 47m" not in page
    assert "expired (the broker says so): enter a new access token" in page


def test_time_left_in_words(user_client):
    for name, offset in (("ok", timedelta(hours=5, minutes=12, seconds=30)),
                         ("past", -timedelta(hours=3, minutes=4, seconds=5))):  # fmt: skip
        account = dhan_account(name)
        account.token_expires_at = timezone.now() + offset
        account.save()
    dhan_account("unknown")
    upstox_account("none", token=False)
    left = {a["name"]: a["token_time_left"] for a in api(user_client)["accounts"]}
    assert left == {"ok": "5h 12m", "past": "expired 3h 4m ago", "none": "no token",
                    "unknown": "unknown until the next token check"}  # fmt: skip


# --- periodic tasks ------------------------------------------------------------------------------

MONDAY_10 = datetime(2030, 1, 7, 4, 30, tzinfo=UTC)  # Monday 10:00 IST


def ran(name: str, at: datetime) -> None:
    TaskOutcome.objects.create(name=name, started_at=at, finished_at=at, ok=True, detail="done")


def test_a_task_not_due_since_celery_started_says_when_it_is_due():
    # Worker and beat run (tokens were checked at 09:45); instruments refresh daily at 06:30.
    ran(CHECK_TOKENS, MONDAY_10 - timedelta(minutes=15))
    tasks = {t["name"]: t for t in status_selectors.system_status(now=MONDAY_10)["tasks"]}
    refresh = tasks[REFRESH_INSTRUMENTS]
    assert refresh["state"] == "not due yet"
    assert refresh["detail"] == "Not due yet — next at 06:30 IST on Tue 08 Jan."
    assert "start" not in refresh["detail"]
    forced = tasks[REPOPULATE_FORCED]  # 09:15 and 15:35 on weekdays: next is today 15:35
    assert forced["detail"] == "Not due yet — next at 15:35 IST."


def test_a_task_overdue_while_others_run_says_to_check_beat():
    ran(CHECK_TOKENS, MONDAY_10 - timedelta(minutes=15))
    tasks = {t["name"]: t for t in status_selectors.system_status(now=MONDAY_10)["tasks"]}
    repopulate = tasks[REPOPULATE]
    assert repopulate["state"] == "overdue"  # every minute from 09:00: due at 09:46
    assert repopulate["detail"].startswith("Never run, though due at 09:46 IST")


def test_nothing_ever_run_says_start_celery():
    tasks = status_selectors.system_status(now=MONDAY_10)["tasks"]
    assert {t["state"] for t in tasks} == {"never run"}
    assert {t["detail"] for t in tasks} == {NEVER_RUN}


def test_the_page_shows_not_due_yet_without_start_celery(user_client):
    ran(CHECK_TOKENS, timezone.now() - timedelta(minutes=1))
    page = user_client.get("/status/").content.decode()
    # Instruments refresh at 06:30, chains are forced at 09:15 and 15:35: one of them is not
    # due within the minute since the tokens were checked, whenever the test runs.
    assert "Not due yet — next at" in page
    assert "start `celery" not in page and "start <code>celery" not in page


# --- Redis down ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_api_and_the_page_say_store_unavailable_while_redis_is_down_and_recover(user_client):
    dhan_account("main")
    with RedisServer() as server, use_in_process(server):
        assert user_client.get("/api/v2/status").status_code == 200
        server.stop()
        response = user_client.get("/api/v2/status")
        assert response.status_code == 503
        assert response["Content-Type"] == "application/json"
        body = response.json()
        assert (body["status"], body["code"]) == ("error", "store_unavailable")
        assert "REDIS_URL" in body["message"]
        page = user_client.get("/status/")
        assert page.status_code == 503
        assert "store_unavailable" in page.content.decode()
        assert "REDIS_URL" in page.content.decode()
        server.start()  # back, empty: both answer again without a restart of the web process
        assert api(user_client)["feeds"][0]["state"] == "not running"
        assert user_client.get("/status/").status_code == 200
