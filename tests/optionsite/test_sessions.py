"""Sessions in the database, read from Redis (chains.sessions), and the API's login check:
logout, deactivation, deletion and password changes refuse at once; the cached copies never
outlive their bounds; a Redis restart logs nobody out; a Redis outage reads sessions from the
database and the API answers 503 with what to do."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client

from brokers.connections import sync_client
from chains import sessions
from chains.sessions import SessionStore
from tests.asgi_client import AsgiClient
from tests.chains.fixtures import EXPIRY, build_book, publish, tracked
from tests.processes import eventually
from tests.redis_server import RedisServer, use_in_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]
LIVE = "/api/v2/options/live"
QUERY = {"underlying": "NIFTY"}
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
PAGE = "/accounts/password_change/"  # a page behind the login that does not read the chain


@pytest.fixture
def account(tmp_path):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY))
    return account


@pytest.fixture
def trader(db):
    return get_user_model().objects.create_user("trader", password="pw-test-only")


def logged_in(user) -> tuple[Client, AsgiClient]:
    """A browser's session of ``user``: Django's client for the pages, the same cookie for the
    API."""
    client = Client()
    client.force_login(user)
    return client, AsgiClient(cookie=f"sessionid={client.cookies['sessionid'].value}")


def cached_copy(key: str) -> bytes | None:
    return sync_client().get(sessions.copy_key(key))


def ttl(key: str) -> int:
    """Seconds the session's copy in Redis has left."""
    return int(sync_client().ttl(sessions.copy_key(key)))


def test_the_session_engine_is_the_database_read_through_redis():
    assert settings.SESSION_ENGINE == "chains.sessions"


def test_a_logged_in_api_request_reads_no_database_once_cached(
    trader, account, django_assert_num_queries
):
    _, api = logged_in(trader)
    assert api.get(LIVE, QUERY).status_code == 200  # fills the caches: session, user, chain
    with django_assert_num_queries(0):
        assert api.get(LIVE, QUERY).status_code == 200


def test_logout_refuses_the_api_at_once(trader, account):
    page, api = logged_in(trader)
    key = page.cookies["sessionid"].value
    assert api.get(LIVE, QUERY).status_code == 200
    assert cached_copy(key) is not None
    assert page.post("/accounts/logout/").status_code == 302
    assert cached_copy(key) == sessions.ENDED
    assert not Session.objects.filter(session_key=key).exists()
    response = api.get(LIVE, QUERY)
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"


def test_a_copy_made_from_a_read_just_before_the_logout_cannot_revive_the_session(trader):
    page, _ = logged_in(trader)
    key = page.cookies["sessionid"].value
    late = SessionStore(key)
    data = late.load()  # a request read the session (from Redis or the database)…
    SessionStore(key).delete()  # …another logged out…
    late._write_copy(data, 300, only_new=True)  # …and the first caches what it read, late
    assert cached_copy(key) == sessions.ENDED
    assert SessionStore(key).load() == {}
    assert sessions.session_user_id(SessionStore(key)) is None


def test_a_user_change_leaves_a_mark_that_a_stale_read_cannot_overwrite(trader, account):
    _, api = logged_in(trader)
    assert api.get(LIVE, QUERY).status_code == 200
    key = sessions.user_key(MODEL_BACKEND, trader.pk)
    trader.first_name = "Renamed"
    trader.save()
    assert sync_client().get(key) == sessions.CHANGED
    assert 0 < sync_client().ttl(key) <= sessions.CHANGED_SECONDS
    assert api.get(LIVE, QUERY).status_code == 200  # checked in the database meanwhile
    assert sync_client().get(key) == sessions.CHANGED  # what it read did not replace the mark


def test_a_deactivated_user_is_refused_at_the_next_request(trader, account):
    _, api = logged_in(trader)
    assert api.get(LIVE, QUERY).status_code == 200  # the user's state is cached now
    trader.is_active = False
    trader.save()
    assert api.get(LIVE, QUERY).status_code == 401


def test_a_deleted_user_is_refused_at_the_next_request(trader, account):
    _, api = logged_in(trader)
    assert api.get(LIVE, QUERY).status_code == 200
    trader.delete()
    assert api.get(LIVE, QUERY).status_code == 401


def test_a_reactivated_user_is_let_in_again(trader, account):
    _, api = logged_in(trader)
    trader.is_active = False
    trader.save()
    assert api.get(LIVE, QUERY).status_code == 401  # "refused" is cached too…
    trader.is_active = True
    trader.save()
    assert api.get(LIVE, QUERY).status_code == 200  # …and dropped by the save


def test_a_deactivation_that_bypasses_save_ends_within_the_user_cache_seconds(
    trader, account, settings, clean_redis
):
    settings.SESSION_USER_CACHE_SECONDS = 1
    _, api = logged_in(trader)
    assert api.get(LIVE, QUERY).status_code == 200
    key = sessions.user_key(MODEL_BACKEND, trader.pk)
    assert 0 < clean_redis.ttl(key) <= 1
    get_user_model().objects.filter(pk=trader.pk).update(is_active=False)  # no signal
    eventually(lambda: api.get(LIVE, QUERY).status_code == 401, timeout=30,
               what="the cached state to expire")  # fmt: skip


def test_a_session_copy_lives_at_most_session_cache_seconds_and_never_past_its_expiry(
    trader, settings, clean_redis
):
    page, _ = logged_in(trader)
    key = page.cookies["sessionid"].value
    assert 0 < ttl(key) <= settings.SESSION_CACHE_SECONDS
    store = SessionStore(key)
    store.set_expiry(5)  # expires in 5 s: its copy may not outlive it
    store.save()
    assert 0 < ttl(key) <= 5


def test_a_redis_restart_logs_nobody_out(trader, clean_redis):
    page, _ = logged_in(trader)
    assert page.get(PAGE).status_code == 200
    clean_redis.flushdb()  # what a restart without persistence, or an eviction, leaves
    assert page.get(PAGE).status_code == 200  # from the database, and cached again
    assert cached_copy(page.cookies["sessionid"].value) is not None


def test_the_user_check_refuses_what_get_user_refuses(trader, clean_redis):
    page, _ = logged_in(trader)
    key = page.cookies["sessionid"].value
    assert sessions.session_user_id(SessionStore(key)) == trader.pk
    assert sessions.session_user_id(SessionStore("no-such-session")) is None
    assert sessions.session_user_id(SessionStore()) is None  # no cookie at all
    for field, value in (("_auth_user_hash", "0" * 64), ("_auth_user_backend", "x.Backend")):
        stored = SessionStore(key)
        stored[field] = value  # a stored session that does not hold this user's login
        stored.save()
        assert sessions.session_user_id(SessionStore(key)) is None, field
        clean_redis.delete(sessions.copy_key(key))  # and read from the database: the same
        assert sessions.session_user_id(SessionStore(key)) is None, field
        page.force_login(trader)
        key = page.cookies["sessionid"].value


@pytest.mark.integration
def test_a_redis_outage_reads_sessions_from_the_database_and_the_api_says_503(
    trader, account, caplog
):
    with RedisServer() as server, use_in_process(server):
        page, api = logged_in(trader)
        key = page.cookies["sessionid"].value
        assert cached_copy(key) is not None  # the copy is on the private server
        server.stop()
        with caplog.at_level(logging.WARNING, logger="chains.sessions"):
            assert page.get(PAGE).status_code == 200  # pages behind the login keep working
            assert page.get(PAGE).status_code == 200
            response = api.get(LIVE, QUERY)
        assert response.status_code == 503
        assert response.json()["code"] == "store_unavailable"
        assert "REDIS_URL" in response.json()["message"]
        errors = [r for r in caplog.records if r.name == "chains.sessions"]
        assert len(errors) == 1 and "read from the database" in errors[0].getMessage()
        # A logout while Redis is down ends the session in the database, the truth.
        with caplog.at_level(logging.ERROR, logger="chains.sessions"):
            assert page.post("/accounts/logout/").status_code == 302
        assert not Session.objects.filter(session_key=key).exists()
        assert "expires within" in caplog.text
        server.start()  # back, empty
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="chains.sessions"):
            assert api.get(LIVE, QUERY).status_code == 401  # the ended session's cookie
        assert "answers again" in caplog.text
