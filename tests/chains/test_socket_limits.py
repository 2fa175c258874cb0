"""Limits on the live WebSocket, through the real ASGI stack, the Redis channel layer and real
sessions: resyncs per socket, sockets per user (counted in Redis, across processes) or per
address, and the session re-checked while a socket is open."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from chains import socket_guard, socket_limits
from tests.redis_server import RedisServer, use_in_process

from .fixtures import EXPIRY, build_book, publish, tracked
from .test_consumers import connected, live_feed, socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.integration]
PATH = "/ws/live-options/NIFTY"


@pytest.fixture(autouse=True)
def redis_server() -> Iterator[RedisServer]:
    """This test's own Redis, which REDIS_URL, the channel layer and the clients point at."""
    with RedisServer() as server, use_in_process(server):
        yield server


@pytest.fixture
def chain(tmp_path):
    account = tracked(tmp_path, "dhan")
    book = build_book(account, EXPIRY)
    publish(account, book, feed_state=None)
    live_feed(account.name)
    return book


def log_in(name: str = "trader") -> tuple[Client, bytes, Any]:
    """A real login (a session in the database): the client, its cookie and the user."""
    user = get_user_model().objects.create_user(name, password="pw-test-only")
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}".encode(), user


async def closed(ws: Any, timeout: float = 10) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The last ``error`` message sent before the socket closed, and the close."""
    error = None
    while (output := await ws.receive_output(timeout=timeout))["type"] == "websocket.send":
        message = json.loads(output["text"])
        if message["type"] == "error":
            error = message
    assert output["type"] == "websocket.close", output
    return error, output


async def opened(path: str, cookie: bytes | None, client: tuple[str, int] | None = None) -> Any:
    ws = socket(path, cookie)
    if client is not None:
        ws.scope["client"] = list(client)  # what daphne puts there: the peer's address
    ok, _ = await ws.connect()
    assert ok
    return ws


# --- resyncs ---------------------------------------------------------------------------------


async def test_a_flood_of_resyncs_gets_at_most_one_snapshot_a_second(chain):
    _, cookie, _ = await sync_to_async(log_in)()
    ws, _, _ = await connected(cookie)
    started = time.monotonic()
    for _ in range(3000):
        await ws.send_json_to({"type": "resync"})
    await ws.send_to(text_data="end")  # answered bad_request once every resync was handled
    snapshots, received = 0, 0
    while (message := await ws.receive_json_from(timeout=60))["type"] != "error":
        snapshots += message["type"] == "snapshot"
    # One resync may still be scheduled: it comes within a second, then nothing more.
    while not await ws.receive_nothing(timeout=2 * socket_limits.RESYNC_SECONDS):
        message = await ws.receive_json_from()
        snapshots += message["type"] == "snapshot"
        received += 1
    elapsed = time.monotonic() - started
    assert 1 <= snapshots <= elapsed + 1, (snapshots, elapsed)
    assert received <= 2  # the scheduled snapshot (and a status, should the state change)
    await ws.send_json_to({"type": "resync"})  # still open and served
    assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
    await ws.disconnect()


async def test_a_resync_asked_right_after_a_snapshot_is_answered_when_the_second_is_over(chain):
    _, cookie, _ = await sync_to_async(log_in)()
    ws, snapshot, _ = await connected(cookie)
    await ws.send_json_to({"type": "resync"})
    await ws.send_json_to({"type": "resync"})
    again = await ws.receive_json_from(timeout=5)
    assert (again["type"], again["seq"]) == ("snapshot", snapshot["seq"])
    assert await ws.receive_nothing(timeout=2 * socket_limits.RESYNC_SECONDS)  # one, not two
    await ws.disconnect()


# --- sockets per user, per address ---------------------------------------------------------


async def test_a_user_beyond_the_socket_cap_is_closed_4429_and_a_freed_place_is_reused(
    chain, settings
):
    settings.WS_MAX_SOCKETS_PER_USER = 2
    _, cookie, _ = await sync_to_async(log_in)()
    first, _, _ = await connected(cookie)
    second, _, _ = await connected(cookie, f"{PATH}?expiry={EXPIRY}")
    third = await opened(PATH, cookie)
    error, close = await closed(third)
    assert error is not None and error["code"] == "too_many_sockets"
    assert "WS_MAX_SOCKETS_PER_USER" in error["message"] and "close other tabs" in error["message"]
    assert close["code"] == socket_guard.CLOSE_TOO_MANY_SOCKETS == 4429
    assert close["reason"] == error["message"][:120]
    await third.disconnect()
    await first.disconnect()  # frees a place
    fourth, snapshot, _ = await connected(cookie)
    assert snapshot["type"] == "snapshot"
    for ws in (second, fourth):
        await ws.disconnect()


async def test_the_cap_counts_the_sockets_of_every_web_process_and_forgets_crashed_ones(
    chain, settings, redis_server
):
    """Two sockets held through another web process (as that process counts them in Redis)
    leave no place for a third here; once that process died without saying so, its entries
    age out and the place is free again."""
    settings.WS_MAX_SOCKETS_PER_USER = 2
    _, cookie, user = await sync_to_async(log_in)()
    key = socket_limits.holder({"user": user}).key
    other = redis_server.client()
    now = time.time()
    other.zadd(key, {"specific.other-process!a": now, "specific.other-process!b": now})
    refused = await opened(PATH, cookie)
    error, close = await closed(refused)
    assert (error is not None and error["code"], close["code"]) == ("too_many_sockets", 4429)
    await refused.disconnect()
    crashed = now - socket_limits.SOCKET_TTL_SECONDS - 1  # their last refresh, long ago
    other.zadd(key, {"specific.other-process!a": crashed, "specific.other-process!b": crashed})
    ws, snapshot, _ = await connected(cookie)
    assert snapshot["type"] == "snapshot"
    assert other.zcard(key) == 1  # this socket only: the dead ones were dropped
    await ws.disconnect()
    assert other.zcard(key) == 0
    other.close()


async def test_sockets_without_a_login_are_capped_per_address(chain, settings):
    settings.CHAINS_PUBLIC = True
    settings.WS_MAX_SOCKETS_PER_IP = 1
    first = await opened(PATH, None, client=("198.51.100.7", 50_001))
    assert (await first.receive_json_from(timeout=5))["type"] == "snapshot"
    second = await opened(PATH, None, client=("198.51.100.7", 50_002))
    error, close = await closed(second)
    assert error is not None and "WS_MAX_SOCKETS_PER_IP" in error["message"]
    assert close["code"] == 4429
    elsewhere = await opened(PATH, None, client=("203.0.113.9", 50_003))
    assert (await elsewhere.receive_json_from(timeout=5))["type"] == "snapshot"
    for ws in (first, second, elsewhere):
        await ws.disconnect()


# --- the session behind a socket -------------------------------------------------------------


async def test_a_socket_is_closed_4401_soon_after_its_session_logs_out(chain, settings):
    settings.WS_SESSION_CHECK_SECONDS = 0.2
    client, cookie, _ = await sync_to_async(log_in)()
    ws, _, _ = await connected(cookie)
    assert await ws.receive_nothing(timeout=1)  # a live session passes its checks
    await sync_to_async(client.logout)()  # the session is deleted, as the logout page does
    error, close = await closed(ws)
    assert close["code"] == socket_guard.CLOSE_UNAUTHENTICATED == 4401
    assert error is not None and error["code"] == "session_ended"
    assert "log in again" in error["message"]


async def test_a_socket_of_a_deactivated_user_is_closed_4401(chain, settings):
    settings.WS_SESSION_CHECK_SECONDS = 0.2
    _, cookie, user = await sync_to_async(log_in)()
    ws, _, _ = await connected(cookie)
    user.is_active = False
    await sync_to_async(user.save)()
    _, close = await closed(ws)
    assert close["code"] == 4401


async def test_a_socket_of_a_user_whose_password_changed_is_closed_4401(chain, settings):
    settings.WS_SESSION_CHECK_SECONDS = 0.2
    _, cookie, user = await sync_to_async(log_in)()
    ws, _, _ = await connected(cookie)
    user.set_password("another-pw-test-only")
    await sync_to_async(user.save)()
    _, close = await closed(ws)
    assert close["code"] == 4401


async def test_the_session_is_checked_at_every_resync(chain):
    """With the periodic check far away (the default 30 s), a resync after a logout is not
    answered with the chain but with the close."""
    client, cookie, _ = await sync_to_async(log_in)()
    ws, _, _ = await connected(cookie)
    await sync_to_async(client.logout)()
    await ws.send_json_to({"type": "resync"})
    error, close = await closed(ws, timeout=5)
    assert close["code"] == 4401 and error is not None and error["code"] == "session_ended"


async def test_a_public_chain_keeps_its_socket_after_a_logout(chain, settings):
    settings.CHAINS_PUBLIC = True
    settings.WS_SESSION_CHECK_SECONDS = 0.2
    client, cookie, _ = await sync_to_async(log_in)()
    ws, _, _ = await connected(cookie)
    await sync_to_async(client.logout)()
    assert await ws.receive_nothing(timeout=1)  # anyone may watch: nothing to end
    await ws.disconnect()
