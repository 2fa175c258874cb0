"""Debian's nginx running deploy/nginx/optionsite.conf in front of two daphnes (tests/deploy/
stack.py): pages, the API, static files and the live WebSocket work through it, the proxy's
X-Forwarded-Proto and client address are what the site trusts, and the login pages are
rate-limited."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from tests.processes import eventually

from .stack import HOST, DeployStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[DeployStack]:
    with DeployStack() as running:
        yield running


def test_pages_api_and_static_files_through_nginx(stack):
    with stack.client() as client:
        stack.log_in(client)
        page = client.get(f"/chains/{stack.underlying}/", follow_redirects=True)
        assert page.status_code == 200 and 'id="rows"' in page.text, page.text[:2000]
        for _ in range(4):  # round robin: both daphnes answer
            api = client.get("/api/v2/options/live", params={"underlying": stack.underlying})
            assert api.status_code == 200, api.text[:2000]
            assert api.json()["data"]["source"] == "live"
        static = client.get("/static/optionsite/chain.js")
    for port, web in stack.webs.items():
        assert "/api/v2/options/live" in web.output(), f"daphne on {port}:\n{stack.logs()}"
    # nginx serves /static/ from collectstatic's output; the daphnes do not serve it at all.
    assert static.status_code == 200 and static.headers["server"].startswith("nginx")
    assert static.content == (stack.static_root / "optionsite" / "chain.js").read_bytes()
    direct = httpx.get(f"http://{HOST}:{stack.web_ports[0]}/static/optionsite/chain.js",
                       headers={"X-Forwarded-Proto": "https"})  # fmt: skip
    assert direct.status_code == 404


def test_plain_http_is_redirected_to_https(stack):
    answer = httpx.get(f"http://{HOST}:{stack.http_port}/chains/NIFTY/?window=5")
    assert answer.status_code == 301
    assert answer.headers["location"] == f"https://{HOST}/chains/NIFTY/?window=5"


def test_the_site_trusts_the_proxys_scheme_and_client_address(stack):
    web = f"http://{HOST}:{stack.web_ports[0]}"
    # Straight to daphne over plain HTTP: the https redirect (DJANGO_SECURE_SSL_REDIRECT).
    assert httpx.get(f"{web}/accounts/login/").status_code == 301
    # nginx says https (X-Forwarded-Proto): served.
    with stack.client() as client:
        assert client.get("/accounts/login/").status_code == 200
    # A failed login from 127.0.0.2 that claims another address in X-Forwarded-For: django-axes
    # counts the address nginx saw, never the one the client wrote (DJANGO_PROXY_COUNT=1).
    with stack.client(local_address="127.0.0.2") as client:
        client.get("/accounts/login/").raise_for_status()
        failed = client.post(
            "/accounts/login/",
            data={"username": "nobody", "password": "wrong-test-only",
                  "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            headers={"Referer": f"{stack.url}/accounts/login/",
                     "X-Forwarded-For": "203.0.113.9"},
        )  # fmt: skip
    assert failed.status_code == 200 and "sessionid" not in client.cookies  # not logged in
    addresses = stack.access_attempt_addresses()
    assert "127.0.0.2" in addresses and "203.0.113.9" not in addresses, addresses


def test_live_websocket_through_nginx(stack):
    with stack.client() as client:
        stack.log_in(client)
        cookie = f"sessionid={client.cookies['sessionid']}"
    url = f"wss://{HOST}:{stack.port}/ws/live-options/{stack.underlying}?expiry={stack.expiry}"
    with connect(url, origin=stack.url, additional_headers={"Cookie": cookie},
                 ssl=stack.ssl_context(), open_timeout=30, max_size=None) as socket:  # fmt: skip
        kinds: list[str] = []
        seqs: list[int] = []

        def delta_arrived() -> bool:
            message = json.loads(socket.recv(timeout=30))
            kinds.append(message["type"])
            if message["type"] in {"snapshot", "delta"}:
                seqs.append(message["seq"])
            return message["type"] == "delta"

        eventually(delta_arrived, timeout=60, interval=0, what="a delta through nginx")
    assert kinds[0] == "snapshot", kinds
    assert seqs == sorted(seqs) and seqs[-1] > seqs[0], seqs


def codes_until_limited(client: httpx.Client, path: str) -> list[int]:
    """GET ``path`` until nginx answers 429; the status codes seen, in order."""
    codes: list[int] = []

    def refused() -> bool:
        codes.append(client.get(path).status_code)
        return codes[-1] == 429

    eventually(refused, timeout=120, interval=0, what=f"nginx to limit {path}")
    return codes


def test_login_pages_are_rate_limited(stack):
    for number, path in enumerate(["/accounts/login/", "/admin/login/"], start=3):
        with stack.client(local_address=f"127.0.0.{number}") as client:
            codes = codes_until_limited(client, path)
            assert codes[0] == 200 and set(codes) <= {200, 302, 429}, codes
            assert codes.count(429) == 1 and len(codes) > 10  # the burst got through first
            # Other pages from the same address are not limited.
            assert client.get("/static/optionsite/chain.js").status_code == 200
