"""The Upstox token notifier against the simulator: a token is accepted only for a pending
request made from admin, once, fresh and newer than the stored one; its path secret is kept as
a hash, shown once, never logged, echoed or dumped; every outcome is in admin history."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from brokers.audit import SYSTEM_USERNAME
from brokers.models import BrokerAccount, TokenRequest, notifier_secret_hash
from brokers.secret import Secret
from tests.sim_process import RunningSimulator, start_simulator

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

STORED_TOKEN = "FAKE-STORED-TOKEN-test-only"


class Hook:
    """What the simulator POSTs to its notifier URL, captured (a stand-in for the site's
    address the broker would call; the bodies are then posted to the site by the test)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test reads the bodies

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    hook = Hook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def notifying_sim(hook: Hook) -> Iterator[RunningSimulator]:
    """A simulator that delivers approved token requests' tokens to ``hook``."""
    sim = start_simulator("--seed", "7", "--upstox-notifier-url", hook.url)
    yield sim
    sim.stop()


@pytest.fixture
def boss(db):
    return get_user_model().objects.create_superuser("boss", "b@example.invalid", "pw-test-only")


@pytest.fixture
def admin_client(client, boss):
    client.force_login(boss)
    return client


@pytest.fixture
def account(notifying_sim, hook):
    notifying_sim.reset()
    hook.bodies.clear()
    call_command("simaccounts", url=notifying_sim.url, skip_masters=True, stdout=io.StringIO())
    account = BrokerAccount.objects.get(name="sim-upstox")
    account.set_access_token(STORED_TOKEN, expires_at=timezone.now() + timedelta(hours=5))
    account.upstox_user_id = "SIM0001"  # as the admin login records it
    account.save()
    return account


def run_action(client, action: str, account: BrokerAccount):
    return client.post(
        reverse("admin:brokers_brokeraccount_changelist"),
        {"action": action, "_selected_action": [account.pk]},
        follow=True,
    )


def new_notifier_secret(client, account: BrokerAccount) -> str:
    """Run 'Create a new Upstox notifier URL' and read the URL's secret off the answer."""
    page = run_action(client, "rotate_notifier_url", account).content.decode()
    found = re.search(r"/brokers/upstox/notifier/([A-Za-z0-9_-]+)/", page)
    assert found, page
    return found[1]


def request_token(client, account: BrokerAccount) -> None:
    page = run_action(client, "request_upstox_token", account).content.decode()
    assert "approve the token request in the Upstox app before" in page, page


def approve_at_broker(sim: RunningSimulator, hook: Hook) -> tuple[bytes, str]:
    """Approve the simulator's pending request; returns the body it POSTed and the token."""
    pending = httpx.get(f"{sim.url}/sim/token-requests", params={"format": "json"}).json()
    (request_id,) = [p["id"] for p in pending["pending"]]
    approved = httpx.post(f"{sim.url}/sim/token-requests/{request_id}/approve").json()
    assert approved["delivered"] is True, approved
    return hook.bodies[-1], approved["access_token"]


def post(client, secret: str, body: bytes):
    return client.post(f"/brokers/upstox/notifier/{secret}/", body, content_type="application/json")


def ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def forged_body(account: BrokerAccount, **overrides: str) -> bytes:
    """A body anyone who knows the (public) API key and the user id can write."""
    now = datetime.now(UTC)
    body = {
        "client_id": account.client_id, "user_id": "SIM0001",
        "access_token": "FAKE-FORGED-TOKEN-1", "token_type": "Bearer",
        "expires_at": ms(now + timedelta(hours=5)), "issued_at": ms(now),
        "message_type": "access_token",
    }  # fmt: skip
    body.update(overrides)
    return json.dumps(body).encode()


def unchanged(account: BrokerAccount) -> bool:
    """True when nothing was saved on the account (so its feed was not told to swap tokens)."""
    now = BrokerAccount.objects.get(pk=account.pk)
    return (
        now.access_token == Secret(STORED_TOKEN)
        and now.updated_at == account.updated_at
        and now.status == account.status
    )


def history(account: BrokerAccount) -> list[tuple[str, str]]:
    entries = LogEntry.objects.filter(object_id=str(account.pk)).order_by("action_time", "pk")
    return [(e.user.get_username(), e.get_change_message()) for e in entries]


def test_a_requested_and_approved_token_is_accepted_once(
    admin_client, client, account, notifying_sim, hook, caplog
):
    caplog.set_level(logging.DEBUG)
    secret = new_notifier_secret(admin_client, account)
    request_token(admin_client, account)
    body, token = approve_at_broker(notifying_sim, hook)
    response = post(client, secret, body)
    assert response.status_code == 200, response.content
    stored = BrokerAccount.objects.get(pk=account.pk)
    assert stored.access_token == Secret(token)
    assert stored.token_issued_at is not None and stored.token_expires_at > timezone.now()
    assert TokenRequest.objects.get(account=account).consumed_at is not None

    replay = post(client, secret, body)  # byte-identical
    assert replay.status_code == 400
    assert "already accepted; a replay is refused" in replay.json()["message"]
    assert BrokerAccount.objects.get(pk=account.pk).updated_at == stored.updated_at

    entries = history(account)
    assert ("boss", "Requested an Upstox token: the notifier accepts one token for it until") in [
        (user, message[:70]) for user, message in entries
    ]
    assert any(
        user == "boss" and message.startswith("Upstox notifier stored a new access token")
        for user, message in entries
    )
    assert any("a replay is refused" in message for _, message in entries)
    for text in (caplog.text, " ".join(m for _, m in entries), replay.content.decode()):
        assert token not in text and secret not in text


def test_a_forged_notification_without_a_pending_request_is_refused(admin_client, client, account):
    secret = new_notifier_secret(admin_client, account)
    account.refresh_from_db()
    response = post(client, secret, forged_body(account))
    assert response.status_code == 400
    assert "no token request is pending" in response.json()["message"]
    assert unchanged(account)
    assert any(
        user == SYSTEM_USERNAME
        and message.startswith("Refused an Upstox token notification: sim-upstox: no token request")
        for user, message in history(account)
    )


def test_a_request_is_pending_only_within_its_window(admin_client, client, account):
    secret = new_notifier_secret(admin_client, account)
    request_token(admin_client, account)
    TokenRequest.objects.filter(account=account).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    account.refresh_from_db()
    response = post(client, secret, forged_body(account))
    assert "no token request is pending" in response.json()["message"]
    assert unchanged(account)


@pytest.mark.parametrize(
    ("times", "message"),
    [
        (
            {
                "issued_at": ms(datetime(2020, 1, 1, tzinfo=UTC)),
                "expires_at": ms(datetime(2020, 1, 2, tzinfo=UTC)),
            },
            "the token expired at",
        ),
        ({"issued_at": ms(datetime(2020, 1, 1, tzinfo=UTC))}, "a stale token is refused"),
        ({"expires_at": ms(datetime.now(UTC) - timedelta(minutes=1))}, "the token expired at"),
        ({"issued_at": ms(datetime.now(UTC) + timedelta(hours=1))}, "is in the future"),
    ],
)
def test_a_stale_or_expired_token_is_refused(admin_client, client, account, times, message):
    secret = new_notifier_secret(admin_client, account)
    request_token(admin_client, account)
    account.refresh_from_db()
    response = post(client, secret, forged_body(account, **times))
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert unchanged(account)
    assert TokenRequest.objects.get(account=account).consumed_at is None  # still pending


def test_a_token_older_than_the_stored_one_is_refused(admin_client, client, account):
    secret = new_notifier_secret(admin_client, account)
    request_token(admin_client, account)
    account.refresh_from_db()
    account.token_issued_at = timezone.now()
    account.save()
    account.refresh_from_db()
    older = ms(datetime.now(UTC) - timedelta(seconds=30))
    response = post(client, secret, forged_body(account, issued_at=older))
    assert response.status_code == 400
    assert "is not newer than the stored one" in response.json()["message"]
    assert unchanged(account)


def test_a_fresh_well_formed_token_the_broker_does_not_know_is_refused(
    admin_client, client, account
):
    """Whoever learned the notifier URL posts a token in the right shape while a request is
    pending: the token is checked at the broker (its profile) before it is stored."""
    secret = new_notifier_secret(admin_client, account)
    request_token(admin_client, account)
    account.refresh_from_db()
    response = post(client, secret, forged_body(account))
    assert response.status_code == 400
    assert "Upstox does not accept the notified token" in response.json()["message"]
    assert "FAKE-FORGED-TOKEN-1" not in response.content.decode()
    assert unchanged(account)
    # The request is still pending: the genuine delivery is not locked out by the forgery.
    assert TokenRequest.objects.filter(account=account, consumed_at__isnull=True).exists()


def test_a_token_issued_before_the_request_is_refused(admin_client, client, account):
    secret = new_notifier_secret(admin_client, account)
    request_token(admin_client, account)
    TokenRequest.objects.filter(account=account).update(requested_at=timezone.now())
    account.refresh_from_db()
    before = ms(datetime.now(UTC) - timedelta(minutes=3))
    response = post(client, secret, forged_body(account, issued_at=before))
    assert "before the pending token request" in response.json()["message"]
    assert unchanged(account)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": "someone-else"}, "another API key"),
        ({"user_id": "INTRUDER"}, "another Upstox user"),
        ({"message_type": "order_update"}, "message_type"),
        ({"expires_at": "tomorrow"}, "epoch milliseconds"),
    ],
)
def test_a_malformed_or_foreign_notification_is_refused(
    admin_client, client, account, overrides, message
):
    secret = new_notifier_secret(admin_client, account)
    request_token(admin_client, account)
    account.refresh_from_db()
    response = post(client, secret, forged_body(account, **overrides))
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert unchanged(account)


def test_the_old_notifier_url_stops_working_when_a_new_one_is_made(admin_client, client, account):
    old = new_notifier_secret(admin_client, account)
    new = new_notifier_secret(admin_client, account)
    assert old != new
    assert post(client, old, forged_body(account)).status_code == 404
    assert post(client, new, forged_body(account)).status_code == 400  # known: no request


def test_only_the_secrets_hash_is_stored_and_dumpdata_never_shows_the_secret(admin_client, account):
    secret = new_notifier_secret(admin_client, account)
    stored = BrokerAccount.objects.get(pk=account.pk)
    assert stored.notifier_secret_hash == notifier_secret_hash(secret)
    assert not any(
        getattr(stored, f.attname) == secret for f in BrokerAccount._meta.concrete_fields
    )
    dump = io.StringIO()
    call_command("dumpdata", "brokers", stdout=dump)
    assert secret not in dump.getvalue()
    page = admin_client.get(reverse("admin:brokers_brokeraccount_change", args=[account.pk]))
    assert secret not in page.content.decode()  # shown once, by the action only
    assert "it was shown once, when it was created" in page.content.decode()


def test_the_path_secret_is_never_logged_nor_echoed(admin_client, client, account, caplog):
    caplog.set_level(logging.DEBUG)
    secret = new_notifier_secret(admin_client, account)
    answers = [
        post(client, secret, forged_body(account)),  # 400: refused
        post(client, secret, b"\xff not json"),  # 400: malformed
        client.get(f"/brokers/upstox/notifier/{secret}/"),  # 405
        post(client, secret[:-2] + "xx", forged_body(account)),  # 404: unknown address
        post(client, secret, b"{" + b" " * 3_000_000 + b"}"),  # 413: too large to read
    ]
    assert [a.status_code for a in answers] == [400, 400, 405, 404, 413]
    for answer in answers:
        assert secret not in answer.content.decode()
    assert "Refused an Upstox token notification" in caplog.text
    assert secret not in caplog.text
    assert secret[:-2] not in caplog.text


def test_an_account_without_a_notifier_url_cannot_request_a_token(admin_client, account):
    BrokerAccount.objects.filter(pk=account.pk).update(notifier_secret_hash=None)
    page = run_action(admin_client, "request_upstox_token", account).content.decode()
    assert "has no notifier URL: run the action" in page
    assert not TokenRequest.objects.filter(account=account).exists()
