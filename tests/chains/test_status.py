"""The status page and its JSON API: who may see them, and that accounts, feed workers, chains
and periodic tasks show what is wrong and what to do."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from chains import store
from chains.models import TaskOutcome
from chains.outcomes import PERIODIC_TASKS, REFRESH_INSTRUMENTS, record_outcome
from chains.selectors import NEVER_RUN
from tests.brokers.factories import dhan_account, upstox_account
from tests.chains.fixtures import EXPIRY, LATER, build_book, publish, tracked

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def redis_db():
    client = store.sync_client()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def user_client(client, django_user_model):
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


def test_a_running_feed_worker_shows_its_counters(user_client, redis_db):
    dhan_account("main")
    status = {"state": "live", "error": "", "connected_since": "2030-01-01T03:45:00+00:00",
              "ticks_per_second": 812.5, "last_frame_age": 0.1, "reconnects": 2,
              "decode_errors": 3, "publish_errors": 0, "deltas": 90, "unrouted": 0,
              "updated_at": "2030-01-01T04:00:00+00:00", "chains": []}  # fmt: skip
    redis_db.set(store.feed_key("main"), json.dumps(status), ex=15)
    redis_db.set(store.GAPS_KEY, 4)
    data = api(user_client)
    (feed,) = data["feeds"]
    assert (feed["state"], feed["ticks_per_second"], feed["reconnects"]) == ("live", 812.5, 2)
    assert feed["decode_errors"] == 3 and feed["last_frame_age"] == 0.1
    assert data["channel_gaps"] == 4


def test_chains_show_source_seq_and_legs_priced(user_client, tmp_path):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY))
    chains = {c["expiry"]: c for c in api(user_client)["chains"]}
    nearest = chains[EXPIRY.isoformat()]
    assert (nearest["source"], nearest["code"], nearest["seq"]) == ("live", None, 1)
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
                 "never run", "Messages dropped by the channel layer"):  # fmt: skip
        assert text in page, text
