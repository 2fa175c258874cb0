"""The WebSocket origin check: scheme, host and port against the site's public origins."""

from __future__ import annotations

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.test import RequestFactory

from chains.origin import (
    client_ip,
    origin_allowed,
    public_origins,
    scope_client_ip,
    site_origin_validator,
)

SITE = "https://opt.example.test"


class Accept(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


async def handshake(headers: list[tuple[bytes, bytes]], **scope: str) -> bool:
    """Whether the site's validator (current settings) lets this handshake through."""
    communicator = WebsocketCommunicator(
        site_origin_validator(Accept.as_asgi()), "/ws/live-options/NIFTY", headers=headers
    )
    communicator.scope.update(scope)
    accepted, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return accepted


@pytest.fixture
def https_site(settings):
    settings.PUBLIC_BASE_URL = SITE
    settings.CSRF_TRUSTED_ORIGINS = ["https://www.opt.example.test", "https://*.apps.example.test"]
    return settings


HOST = (b"host", b"opt.example.test")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "origin",
    [
        b"http://opt.example.test",  # the same host over plain http
        b"https://opt.example.test:8443",  # another port
        b"http://opt.example.test:443",
        b"wss://opt.example.test",
        b"https://evil.example",
        b"https://opt.example.test.evil.example",
        b"https://evilopt.example.test",
        b"null",
        b"https://opt.example.test:notaport",
    ],
)
async def test_other_origins_of_the_host_are_refused(https_site, origin):
    assert not await handshake([(b"origin", origin), HOST], scheme="wss")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "origin",
    [
        b"https://opt.example.test",
        b"https://OPT.example.test:443",  # default port and case are the same origin
        b"https://www.opt.example.test",  # DJANGO_CSRF_TRUSTED_ORIGINS
        b"https://a.apps.example.test",  # its wildcard entry
    ],
)
async def test_public_origins_are_accepted(https_site, origin):
    assert await handshake([(b"origin", origin), HOST], scheme="wss")


@pytest.mark.asyncio
async def test_missing_origin_is_refused(https_site):
    assert not await handshake([HOST], scheme="wss")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host", "origin", "scheme", "accepted"),
    [
        (b"127.0.0.1:8000", b"http://127.0.0.1:8000", "ws", True),
        (b"localhost:41234", b"http://localhost:41234", "ws", True),
        (b"[::1]:8000", b"http://[::1]:8000", "ws", True),
        (b"localhost", b"http://localhost", "ws", True),
        (b"127.0.0.1:8443", b"https://127.0.0.1:8443", "wss", True),
        # another port of the machine is another site (another local server's page)
        (b"127.0.0.1:8000", b"http://127.0.0.1:9000", "ws", False),
        (b"localhost:8000", b"http://127.0.0.1:8000", "ws", False),
        (b"127.0.0.1:8443", b"http://127.0.0.1:8443", "wss", False),
        # a public host does not count as its own origin: only the configured ones do
        (b"opt.example.test", b"http://opt.example.test", "ws", False),
    ],
)
async def test_a_loopback_site_accepts_only_its_own_origin(https_site, host, origin, scheme,
                                                           accepted):  # fmt: skip
    assert await handshake([(b"origin", origin), (b"host", host)], scheme=scheme) is accepted


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_the_site_application_refuses_another_port_of_an_allowed_host():
    """Through optionsite.asgi: 127.0.0.1 is in ALLOWED_HOSTS, which the check used to be."""
    from optionsite.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/live-options/NIFTY",
        headers=[(b"origin", b"http://127.0.0.1:9999"), (b"host", b"127.0.0.1:8000")],
    )
    accepted, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    assert not accepted


def test_origin_allowed_without_patterns_or_host():
    scope = {"type": "websocket", "headers": [(b"origin", b"http://127.0.0.1:8000")]}
    assert not origin_allowed(scope, [])


def test_a_public_origin_that_is_not_http_names_the_setting():
    with pytest.raises(ValueError, match="DJANGO_CSRF_TRUSTED_ORIGINS"):
        public_origins(public_base_url=SITE, trusted_origins=["ftp://x.example"])


# --- the client address login throttling counts ------------------------------------------------


def request(remote: str, forwarded: str | None = None):
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().post("/accounts/login/", **meta)


def test_without_a_proxy_x_forwarded_for_is_ignored(settings):
    settings.CLIENT_IP_PROXY_COUNT = 0
    assert client_ip(request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_behind_one_proxy_the_address_it_appended_counts(settings):
    settings.CLIENT_IP_PROXY_COUNT = 1
    # The client sent "198.51.100.1" itself; the proxy appended the address it saw.
    assert client_ip(request("10.0.0.2", "198.51.100.1, 203.0.113.7")) == "203.0.113.7"
    assert client_ip(request("10.0.0.2")) == "10.0.0.2"  # did not come through the proxy


def test_behind_two_proxies_the_outer_ones_address_counts(settings):
    settings.CLIENT_IP_PROXY_COUNT = 2
    assert client_ip(request("10.0.0.3", "1.2.3.4, 203.0.113.7, 10.0.0.2")) == "203.0.113.7"


def test_a_websockets_address_follows_the_same_rule(settings):
    """The per-address socket cap (chains.socket_limits) counts the address login throttling
    counts: a client cannot escape it by sending its own X-Forwarded-For."""
    scope = {
        "client": ("10.0.0.2", 50000),
        "headers": [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.7")],
    }
    settings.CLIENT_IP_PROXY_COUNT = 0
    assert scope_client_ip(scope) == "10.0.0.2"
    settings.CLIENT_IP_PROXY_COUNT = 1
    assert scope_client_ip(scope) == "203.0.113.7"
    assert scope_client_ip({"client": None, "headers": []}) is None
