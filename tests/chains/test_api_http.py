"""The API's HTTP edge (chains.api_http): routing, host and method checks, security headers,
sessions and failures of the store, through the ASGI application."""

from __future__ import annotations

import logging

import pytest
import redis
from django.contrib.auth import get_user_model

from brokers import connections
from chains import store
from tests.asgi_client import AsgiClient
from tests.processes import free_port

from .fixtures import EXPIRY, build_book, publish, tracked

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_redis")]
LIVE = "/api/v2/options/live"


@pytest.fixture
def account(tmp_path):
    account = tracked(tmp_path, "dhan")
    publish(account, build_book(account, EXPIRY))
    return account


@pytest.fixture
def trader(db):
    return get_user_model().objects.create_user("trader", password="pw-test-only")


def test_a_live_answer_carries_length_json_type_no_store_and_security_headers(trader, account):
    response = AsgiClient.logged_in(trader).get(LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["vary"] == "Cookie"  # the answer depends on the session
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


def test_a_host_not_in_allowed_hosts_is_refused_with_400(trader, account, caplog):
    client = AsgiClient.logged_in(trader, host="evil.example")
    with caplog.at_level(logging.WARNING, logger="django.security.DisallowedHost"):
        response = client.get(LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert "evil.example" in caplog.text
    assert "strikes" not in response.content.decode()


def test_a_bad_host_is_400_even_when_https_is_required(trader, account, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = AsgiClient.logged_in(trader, host="evil.example").get(LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 400 and response.json()["code"] == "bad_request"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_methods_other_than_get_answer_405_naming_get(trader, account, method):
    response = AsgiClient.logged_in(trader).request(method, LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["code"] == "method_not_allowed"


def test_a_forged_or_stale_session_cookie_is_anonymous(account):
    response = AsgiClient(cookie="sessionid=not-a-session-key").get(LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_a_session_of_a_user_whose_password_changed_is_refused(trader, account):
    client = AsgiClient.logged_in(trader)
    assert client.get(LIVE, {"underlying": "NIFTY"}).status_code == 200
    trader.set_password("pw-test-only-2")
    trader.save()  # every session of this user ends, as with Django's pages
    assert client.get(LIVE, {"underlying": "NIFTY"}).status_code == 401


def test_public_answers_do_not_vary_by_cookie(account, settings):
    settings.CHAINS_PUBLIC = True
    response = AsgiClient().get(LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 200 and "vary" not in response.headers


def test_https_redirect_and_hsts_follow_the_security_settings(trader, account, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    client = AsgiClient.logged_in(trader)
    plain = client.get(LIVE, {"underlying": "NIFTY"})
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://localhost/api/v2/options/live?underlying=NIFTY"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    secure = client.request("GET", LIVE, {"underlying": "NIFTY"},
                            headers={"x-forwarded-proto": "https"})  # fmt: skip
    assert secure.status_code == 200
    assert secure.headers["strict-transport-security"].startswith("max-age=3600")


def test_redis_down_answers_503_store_unavailable(trader, account, monkeypatch, caplog):
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=1)
    client = AsgiClient.logged_in(trader)
    with monkeypatch.context() as patch, caplog.at_level(logging.ERROR, logger="chains.api_http"):
        patch.setattr(connections, "_sync_client", dead)  # the connection goes nowhere
        response = client.get(LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "store_unavailable"
    assert "REDIS_URL" in body["message"]
    assert "Redis does not answer" in caplog.text


def test_a_corrupt_record_in_redis_answers_500_with_json_and_logs_it(trader, account, caplog):
    store.sync_client().set(store.meta_key("NIFTY", EXPIRY), b"{not json")
    with caplog.at_level(logging.ERROR, logger="chains.api_http"):
        response = AsgiClient.logged_in(trader).get(LIVE, {"underlying": "NIFTY"})
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert "Traceback" in caplog.text or caplog.records[-1].exc_info


def test_other_paths_still_reach_django(trader):
    login = AsgiClient().get("/accounts/login/")
    assert login.status_code == 200 and b"<form" in login.content
    assert AsgiClient().get("/api/v2/options/nothing").status_code == 404
