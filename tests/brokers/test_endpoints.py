"""Broker URLs: only allowlisted hosts, https/wss outside debug, and a stored secret never
follows a changed URL. A URL forced into the database is refused where it would be used."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import os
import pickle
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from brokers import tokens
from brokers.accounts import account_config
from brokers.adapters import account_status_for, adapter_for
from brokers.endpoints import (
    AUTHORIZED_FEED_URI,
    EndpointPolicy,
    check_broker_url,
    host_allowed,
    secrets_clear_on_endpoint_change,
)
from brokers.exceptions import (
    EndpointRefused,
    FeedConfigError,
    InstrumentLoadError,
    InstrumentRefreshFailed,
    LoginError,
)
from brokers.loading import masters_refresh
from brokers.models import AccountStatus, BrokerAccount
from brokers.secret import Secret
from brokers.upstox_login import request_token
from chains.management.commands.demo import allow_simulator_host

from .factories import FAKE_DHAN_TOKEN, FAKE_UPSTOX_SECRET, dhan_account, upstox_account

# Real hosts and the simulator's loopback address, as tests/settings.py allows them.
POLICY = EndpointPolicy((".dhan.co", ".upstox.com", "127.0.0.1", "localhost"), debug=False)
# Loopback, but not in the allowlist: a stand-in for a host an attacker controls.
FOREIGN = "127.0.0.2"


# --- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["api.dhan.co", "dhan.co", "API.Dhan.CO", "api.dhan.co.", "assets.upstox.com"]
)
def test_allowlisted_domains_cover_their_subdomains(host: str) -> None:
    assert POLICY.host_allowed(host)


@pytest.mark.parametrize(
    "host", ["evildhan.co", "dhan.co.evil.example", "upstox.com.evil.example", "127.0.0.2", ""]
)
def test_hosts_outside_the_allowlist_are_not_allowed(host: str) -> None:
    assert not POLICY.host_allowed(host)


def test_a_foreign_host_is_refused_naming_the_setting() -> None:
    problem = POLICY.problem("https://evil.example/v2", field="rest_base_url")
    assert problem == (
        "rest_base_url host 'evil.example' is not in BROKER_HOST_ALLOWLIST: add it there if "
        "this is really your broker's host."
    )


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("http://api.dhan.co", "rest_base_url"),
        ("http://api.upstox.com", "login_base_url"),
        ("http://images.dhan.co/master.csv", "master_url"),
        ("ws://api-feed.dhan.co", "feed_base_url"),
    ],
)
def test_plain_http_and_ws_are_refused_outside_debug(url: str, field: str) -> None:
    problem = POLICY.problem(url, field=field)
    assert problem is not None and "outside DEBUG" in problem and field in problem
    assert EndpointPolicy(POLICY.allowlist, debug=True).problem(url, field=field) is None


def test_plain_http_to_an_allowlisted_loopback_host_is_allowed_outside_debug() -> None:
    assert POLICY.problem("http://127.0.0.1:8800/dhan", field="rest_base_url") is None
    assert POLICY.problem("ws://localhost:8800/dhan/feed", field="feed_base_url") is None
    # Loopback alone is not enough: the host must be allowlisted too.
    assert "BROKER_HOST_ALLOWLIST" in str(POLICY.problem(f"http://{FOREIGN}:1", field="x"))


def test_the_feed_needs_a_websocket_url_and_rest_an_http_one() -> None:
    assert "wss://" in str(POLICY.problem("https://api-feed.dhan.co", field="feed_base_url"))
    assert "https://" in str(POLICY.problem("wss://api.dhan.co", field="rest_base_url"))


@pytest.mark.parametrize(
    ("url", "field", "words"),
    [
        ("wss://api-feed.dhan.co/#x", "feed_base_url", "fragment"),
        ("https://api.dhan.co#", "rest_base_url", "fragment"),
        ("https://api.dhan.co/?a=1", "rest_base_url", "query"),
        ("wss://api-feed.dhan.co?token=x", "feed_base_url", "query"),
        ("wss://api.upstox.com/feeds?code=x#y", AUTHORIZED_FEED_URI, "fragment"),
    ],
)
def test_a_fragment_or_a_query_in_a_base_url_is_refused(url: str, field: str, words: str) -> None:
    """A '#' would cut off what the feed code appends (the DhanHQ token would land in an error
    message naming the URL); only the broker's single-use feed address carries a query."""
    problem = POLICY.problem(url, field=field)
    assert problem is not None and words in problem
    assert POLICY.problem("wss://api.upstox.com/feeds?code=x", field=AUTHORIZED_FEED_URI) is None


def test_user_and_password_in_a_url_are_refused_without_echoing_them() -> None:
    problem = POLICY.problem("https://me:FAKE-PASSWORD@api.dhan.co", field="rest_base_url")
    assert problem is not None and "user name or password" in problem
    assert "FAKE-PASSWORD" not in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\.dhan.co/v2",  # a backslash: other parsers see evil.example
        "https://evil.example%2f.dhan.co",
        "https:///v2",
        "https://api.dhan.co:99999",
        "https://api.dhan.co /v2",
    ],
)
def test_urls_other_parsers_could_read_differently_are_refused(url: str) -> None:
    assert POLICY.problem(url, field="rest_base_url") is not None


def test_the_refusal_is_a_permanent_broker_error_that_survives_pickling() -> None:
    with pytest.raises(EndpointRefused) as refused:
        POLICY.check("https://evil.example", field="rest_base_url", broker="dhan")
    copy = pickle.loads(pickle.dumps(refused.value))
    assert isinstance(copy, EndpointRefused) and copy.permanent and copy.broker == "dhan"
    assert copy.code == "endpoint-refused" and copy.message == refused.value.message


def test_the_settings_decide(settings) -> None:
    settings.BROKER_HOST_ALLOWLIST = [".example.test"]
    settings.DEBUG = False
    assert host_allowed("broker.example.test") and not host_allowed("api.dhan.co")
    with pytest.raises(EndpointRefused, match="outside DEBUG"):
        check_broker_url("http://broker.example.test", field="rest_base_url", broker="dhan")
    check_broker_url("http://broker.example.test", field="rest_base_url", broker="x", debug=True)


# --- the model ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_clean_refuses_a_foreign_host() -> None:
    account = BrokerAccount(
        name="main", kind="dhan", client_id="1", rest_base_url="https://evil.example"
    )
    with pytest.raises(ValidationError) as invalid:
        account.full_clean()
    assert "BROKER_HOST_ALLOWLIST" in invalid.value.message_dict["rest_base_url"][0]


@pytest.mark.django_db
def test_clean_refuses_plain_http_outside_debug(settings) -> None:
    settings.DEBUG = False
    account = BrokerAccount(
        name="main", kind="upstox", client_id="k", master_url="http://assets.upstox.com/x.json.gz",
        feed_base_url="ws://api.upstox.com/v3/feed/market-data-feed",
    )  # fmt: skip
    with pytest.raises(ValidationError) as invalid:
        account.full_clean()
    assert set(invalid.value.message_dict) == {"master_url", "feed_base_url"}
    settings.DEBUG = True
    account.full_clean()


@pytest.mark.django_db
def test_clean_accepts_the_simulator_and_blank_urls() -> None:
    BrokerAccount(name="main", kind="dhan", client_id="1").full_clean()
    BrokerAccount(
        name="sim", kind="dhan", client_id="1", rest_base_url="http://127.0.0.1:8800/dhan",
        feed_base_url="ws://127.0.0.1:8800/dhan/feed",
    ).full_clean()  # fmt: skip


# --- a changed endpoint removes the stored secrets (every save path) ------------------------


@pytest.mark.django_db
def test_changing_an_endpoint_in_code_removes_the_stored_secrets() -> None:
    account = upstox_account("ux")
    account.rest_base_url = "http://127.0.0.1:8800/upstox"
    account.save()
    account.refresh_from_db()
    assert not account.access_token and not account.api_secret
    assert account.token_expires_at is None
    assert account.status == AccountStatus.TOKEN_MISSING
    assert "must be entered again" in account.last_error


@pytest.mark.django_db
def test_a_partial_save_of_an_endpoint_removes_the_secrets_too() -> None:
    account = dhan_account()
    account.feed_base_url = "ws://127.0.0.1:8800/dhan/feed"
    account.save(update_fields=["feed_base_url"])
    assert not BrokerAccount.objects.get(pk=account.pk).access_token


@pytest.mark.django_db
def test_a_secret_entered_with_the_change_stays_and_the_old_ones_go() -> None:
    account = upstox_account("ux")
    account.rest_base_url = "http://127.0.0.1:8800/upstox"
    account.set_access_token("FAKE-NEW-UPSTOX-TOKEN")
    change = secrets_clear_on_endpoint_change(account)
    assert change is not None and change.fields == ("rest_base_url",)
    assert change.removed == ("API secret",)
    account.save()
    account.refresh_from_db()
    assert account.access_token == Secret("FAKE-NEW-UPSTOX-TOKEN") and not account.api_secret


@pytest.mark.django_db
def test_saving_without_an_endpoint_change_keeps_the_secrets() -> None:
    account = upstox_account("ux")
    account.client_id = "another-fake-key"
    account.rest_base_url = "https://api.upstox.com"  # blank meant this very host already
    account.save()
    account.refresh_from_db()
    assert account.access_token and account.api_secret.reveal() == FAKE_UPSTOX_SECRET


# --- a URL written to the database directly is refused where it would be used ---------------


@dataclass
class Listener:
    """A real server on a host outside the allowlist; records every request or connection."""

    url: str
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def foreign_http() -> Iterator[Listener]:
    listener = Listener("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            listener.seen.append(f"{self.command} {self.path} {dict(self.headers)}")
            body = b'{"status": "success", "data": {}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _any

        def log_message(self, *args: object) -> None:
            """Quiet: the test output is the assertion."""

    server = http.server.ThreadingHTTPServer((FOREIGN, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listener.url = f"http://{FOREIGN}:{server.server_address[1]}"
    yield listener
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_the_token_check_sends_nothing_to_a_url_forced_into_the_database(foreign_http) -> None:
    dhan_account("main")
    BrokerAccount.objects.filter(name="main").update(rest_base_url=foreign_http.url)
    verdict = tokens.token_check("main")
    assert foreign_http.seen == []
    assert not verdict.ok
    account = BrokerAccount.objects.get(name="main")
    assert account.status == AccountStatus.ERROR
    assert f"rest_base_url host '{FOREIGN}' is not in BROKER_HOST_ALLOWLIST" in account.last_error
    assert account.access_token.reveal() == FAKE_DHAN_TOKEN  # kept: an admin decides


@pytest.mark.django_db
def test_the_feed_refuses_to_start_on_a_url_forced_into_the_database(foreign_http) -> None:
    dhan_account("main")
    BrokerAccount.objects.filter(name="main").update(feed_base_url=f"ws://{FOREIGN}:1/feed")
    with pytest.raises(FeedConfigError, match=r"feed_base_url host '127\.0\.0\.2' is not in"):
        account_config("main")
    account = BrokerAccount.objects.get(name="main")
    assert account.status == AccountStatus.ERROR and "BROKER_HOST_ALLOWLIST" in account.last_error


@pytest.mark.django_db
def test_the_getters_refuse_what_the_checks_refuse(foreign_http) -> None:
    account = dhan_account("main")
    BrokerAccount.objects.filter(name="main").update(
        rest_base_url=foreign_http.url, login_base_url=foreign_http.url, master_url=foreign_http.url
    )
    account.refresh_from_db()
    with pytest.raises(EndpointRefused):
        account.effective_rest_base_url()
    with pytest.raises(LoginError, match="login_base_url"):
        account.effective_login_base_url()
    with pytest.raises(InstrumentLoadError, match="master_url"):
        account.effective_master_url()
    assert account.effective_rest_base_url(checked=False) == foreign_http.url


@pytest.mark.django_db
def test_an_upstox_token_request_sends_no_secret_to_a_url_forced_into_the_database(
    foreign_http,
) -> None:
    account = upstox_account("ux")
    account.rotate_notifier_secret()
    account.save()
    BrokerAccount.objects.filter(name="ux").update(rest_base_url=foreign_http.url)
    with pytest.raises(LoginError, match="BROKER_HOST_ALLOWLIST"):
        request_token(BrokerAccount.objects.get(name="ux"), user=None)
    assert foreign_http.seen == []


# --- the feed URI in Upstox's authorize answer -----------------------------------------------


@pytest.fixture
def forged_upstox() -> Iterator[tuple[str, list[str]]]:
    """An allowlisted Upstox REST host (loopback) whose authorize answer points the feed at a
    host outside the allowlist, where a real socket counts connections."""
    connections: list[str] = []
    sink = socket.create_server((FOREIGN, 0))
    sink.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sink.accept()
            except TimeoutError:
                continue
            connections.append("connected")
            conn.close()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    uri = f"ws://{FOREIGN}:{sink.getsockname()[1]}/feeds?requestId=r1&code=FAKE-CODE"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"status": "success", "data": {"authorized_redirect_uri": uri}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Quiet: the test output is the assertion."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", connections
    server.shutdown()
    server.server_close()
    stop.set()
    acceptor.join()
    sink.close()


@pytest.mark.django_db
def test_a_forged_authorize_answer_cannot_steer_the_feed_elsewhere(forged_upstox) -> None:
    rest, connections = forged_upstox
    upstox_account("ux", rest_base_url=rest)
    adapter = adapter_for(account_config("ux"))

    async def open_feed() -> None:
        try:
            await adapter.feed_url()
        finally:
            await adapter.aclose()

    with pytest.raises(EndpointRefused) as refused:
        asyncio.run(open_feed())
    assert refused.value.permanent
    assert f"{AUTHORIZED_FEED_URI} host '{FOREIGN}' is not in BROKER_HOST_ALLOWLIST" in str(
        refused.value
    )
    assert "FAKE-CODE" not in str(refused.value)
    assert connections == []


@pytest.mark.parametrize("kind", ["dhan", "upstox"])
def test_a_refused_url_marks_the_account_error_wherever_it_is_met(kind: str) -> None:
    # The feed's connection loop and the REST repopulate mark the account with this status.
    assert account_status_for(EndpointRefused("refused", broker=kind)) == AccountStatus.ERROR


# --- the simulator's wiring (tests, demo) ------------------------------------------------------


@pytest.mark.django_db
def test_simaccounts_refuses_a_simulator_outside_the_allowlist_and_changes_nothing() -> None:
    with pytest.raises(CommandError, match="is not in BROKER_HOST_ALLOWLIST"):
        call_command("simaccounts", url=f"http://{FOREIGN}:8800", stdout=io.StringIO())
    assert not BrokerAccount.objects.exists()


@pytest.mark.integration
@pytest.mark.django_db
def test_simaccounts_moved_to_another_simulator_sets_the_secrets_again(sim) -> None:
    call_command("simaccounts", url=sim.url, stdout=io.StringIO(), skip_masters=True)
    BrokerAccount.objects.filter(name="sim-upstox").update(rest_base_url="http://127.0.0.1:1/x")
    out = io.StringIO()
    call_command("simaccounts", url=sim.url, stdout=out, skip_masters=True)
    upstox = BrokerAccount.objects.get(name="sim-upstox")
    assert upstox.rest_base_url == f"{sim.url}/upstox"
    assert upstox.has_token and upstox.api_secret and upstox.status == AccountStatus.OK
    assert "sim-upstox: account updated: rest_base_url, access token, API secret." in out.getvalue()


def test_the_demo_adds_its_simulator_host_for_itself_and_its_processes(settings, monkeypatch):
    settings.BROKER_HOST_ALLOWLIST = [".dhan.co", ".upstox.com"]
    monkeypatch.delenv("BROKER_HOST_ALLOWLIST", raising=False)
    said: list[str] = []
    allow_simulator_host("127.0.0.1", say=said.append)
    assert host_allowed("127.0.0.1")
    assert os.environ["BROKER_HOST_ALLOWLIST"] == ".dhan.co,.upstox.com,127.0.0.1"
    assert said == ["The demo adds the simulator's host 127.0.0.1 to BROKER_HOST_ALLOWLIST."]
    allow_simulator_host("127.0.0.1", say=said.append)  # already there: nothing more
    assert len(said) == 1


@pytest.mark.django_db
def test_the_master_refresh_downloads_nothing_from_a_url_forced_into_the_database(
    foreign_http,
) -> None:
    dhan_account("main")
    BrokerAccount.objects.filter(name="main").update(master_url=f"{foreign_http.url}/m.csv")
    with pytest.raises(InstrumentRefreshFailed, match=r"master_url host '127\.0\.0\.2' is not in"):
        masters_refresh(account="main")
    assert foreign_http.seen == []
