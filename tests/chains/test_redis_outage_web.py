"""The web process through a Redis outage: viewers and the status API say ``store_unavailable``
while Redis is down and recover by themselves when it is back; a viewer connecting meanwhile
gets a snapshot or a named close, never a socket left hanging; a quiet chain is not an error.

Each test runs its own ``redis-server`` (tests.redis_server) and stops it; the shared Redis is
never touched. The consumer's logic is tested in-process (WebsocketCommunicator); the whole
story once more through daphne's real sockets, as a browser sees it (``integration``).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chains import consumers, store
from tests.processes import daphne, eventually, free_port
from tests.redis_server import RedisServer, use_in_process

from .fixtures import EXPIRY, build_book, delta_event, publish, tracked
from .test_consumers import connected, session_cookie
from .test_consumers import socket as communicator

pytestmark = [pytest.mark.django_db(transaction=True)]
GROUP = store.group_name("NIFTY", EXPIRY)
RECOVERY_SECONDS = 20.0  # an upper bound for "by itself, within seconds": polls are 2 s apart


@pytest.fixture
def outage_world(tmp_path) -> Iterator[tuple[Any, Any, bytes, RedisServer]]:
    """A NIFTY chain published on a private Redis (no feed worker status: only the snapshot),
    a logged-in staff user's session cookie (the status API is staff-only), and the server to
    stop."""
    with RedisServer() as server, use_in_process(server):
        account = tracked(tmp_path, "dhan")
        chain = build_book(account, EXPIRY)
        publish(account, chain, feed_state=None)
        yield account, chain, session_cookie(staff=True), server


def delta(chain: Any, seq: int) -> dict[str, Any]:
    return dict(delta_event(chain, seq))


# --- in-process: the consumer's side --------------------------------------------------------


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_viewer_hears_store_unavailable_then_is_resynced_and_rejoined(outage_world):
    account, chain, cookie, server = outage_world
    ws, snapshot, _ = await connected(cookie)
    await sync_to_async(server.stop)()
    down = await ws.receive_json_from(timeout=RECOVERY_SECONDS)
    assert (down["type"], down["code"]) == ("status", "store_unavailable")
    assert down["source"] == "last_known" and "REDIS_URL" in down["message"]
    assert down["freshness"]["state"] == "stale"  # the browser shows its stale banner
    assert down["freshness"]["words"].startswith("Last known as of ")
    assert await ws.receive_nothing(timeout=3 * consumers.STATUS_POLL_SECONDS)  # said once
    assert not ws.future.done()  # still open: no 1011

    await sync_to_async(server.start)()  # back, and empty: the group and the snapshot are gone
    resync = await ws.receive_json_from(timeout=RECOVERY_SECONDS)
    assert (resync["type"], resync["data"]) == ("snapshot", None)
    status = await ws.receive_json_from(timeout=5)
    assert status["type"] == "status" and status["code"] != "store_unavailable"
    # The feed worker writes its snapshot again and flushes: the consumer is in the group again.
    await sync_to_async(publish)(account, chain, feed_state=None)
    await get_channel_layer().group_send(GROUP, delta(chain, snapshot["seq"] + 1))
    back = await ws.receive_json_from(timeout=RECOVERY_SECONDS)
    assert (back["type"], back["seq"]) == ("snapshot", snapshot["seq"])  # no base yet: snapshot
    assert back["data"]["strikes"]
    await ws.disconnect()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_viewer_connecting_while_redis_is_down_is_closed_4503(outage_world):
    _, _, cookie, server = outage_world
    await sync_to_async(server.stop)()
    ws = communicator("/ws/live-options/NIFTY", cookie)
    ok, _ = await ws.connect()
    assert ok
    error = await ws.receive_json_from(timeout=RECOVERY_SECONDS)
    assert (error["type"], error["code"]) == ("error", "store_unavailable")
    closed = await ws.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4503)
    assert closed["reason"] and closed["reason"] == error["message"][:120]


# --- through daphne: what a browser sees ----------------------------------------------------


def open_socket(port: int, cookie: bytes) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{port}/ws/live-options/NIFTY",
        additional_headers={"Cookie": cookie.decode(), "Origin": f"http://127.0.0.1:{port}"},
        open_timeout=10,
    )


def message(ws: ClientConnection, timeout: float = RECOVERY_SECONDS) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def wait_for(
    ws: ClientConnection, wanted: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The first message ``wanted`` accepts within ``RECOVERY_SECONDS`` (others are skipped)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        try:
            got = message(ws, timeout=left)
        except TimeoutError:
            break
        if wanted(got):
            return got
    raise AssertionError(f"no {what} within {RECOVERY_SECONDS:g}s")


def status_api(port: int, cookie: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/status", headers={"Cookie": cookie.decode()}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as answer:  # 4xx/5xx: the body is the answer under test
        return answer.code, json.loads(answer.read())


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def web(outage_world) -> Iterator[tuple[int, Any, Any, bytes, RedisServer]]:
    """daphne on a free port, on the private Redis."""
    account, chain, cookie, server = outage_world
    port = free_port()
    with daphne(port, REDIS_URL=server.url()) as process:
        eventually(lambda: listening(port), timeout=30, what=f"daphne on port {port}")
        yield port, account, chain, cookie, server
        if process.process.poll() is not None:
            raise AssertionError(f"daphne exited:\n{process.output()}")


@pytest.mark.integration
def test_through_a_redis_restart_viewers_and_the_status_api_recover_by_themselves(web):
    port, account, chain, cookie, server = web
    with ExitStack() as sockets:
        viewer = sockets.enter_context(open_socket(port, cookie))
        first = message(viewer)
        assert first["type"] == "snapshot" and first["seq"] == chain.seq
        assert message(viewer)["type"] == "status"
        assert status_api(port, cookie)[0] == 200

        server.stop()
        down = wait_for(viewer, lambda m: m["type"] == "status", "status message")
        assert down["code"] == "store_unavailable"
        code, body = status_api(port, cookie)
        assert (code, body["status"], body["code"]) == (503, "error", "store_unavailable")
        late = sockets.enter_context(open_socket(port, cookie))
        assert message(late)["code"] == "store_unavailable"
        with pytest.raises(ConnectionClosed) as closed:
            message(late)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503

        server.start()
        # A viewer connecting just as Redis is back: a snapshot, or a named close to retry.
        just_after = sockets.enter_context(open_socket(port, cookie))
        try:
            hello = message(just_after)
            assert hello["type"] == "snapshot" or hello["code"] == "store_unavailable", hello
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 4503, exc
        resync = wait_for(viewer, lambda m: m["type"] == "snapshot", "resync snapshot")
        assert resync["data"] is None  # the restarted Redis is empty until the feed writes
        publish(account, chain, feed_state=None)
        async_to_sync(get_channel_layer().group_send)(GROUP, delta(chain, chain.seq + 1))
        back = wait_for(viewer, lambda m: m["type"] != "status", "the chain again")
        assert (back["type"], back["seq"]) == ("snapshot", chain.seq)
        assert eventually(lambda: status_api(port, cookie)[0] == 200, what="status API 200")
        viewer.send(json.dumps({"type": "resync"}))  # still the same, open socket
        assert wait_for(viewer, lambda m: m["type"] == "snapshot", "snapshot")["seq"] == chain.seq


@pytest.mark.integration
def test_a_quiet_chain_keeps_every_viewer_connected_for_30_seconds(web):
    """Evenings, weekends, a quiet expiry: no delta for 30 s. No viewer is closed (1011) or
    resent a snapshot (which would hide the browser's stale banner); the next delta reaches all.
    """
    port, _, chain, cookie, _ = web
    with ExitStack() as sockets:
        viewers = [sockets.enter_context(open_socket(port, cookie)) for _ in range(4)]
        for viewer in viewers:
            assert message(viewer)["type"] == "snapshot"
            assert message(viewer)["type"] == "status"
        deadline = time.monotonic() + 30
        heard: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            for viewer in viewers:
                try:
                    heard.append(message(viewer, timeout=0.25))
                except TimeoutError:
                    continue  # silence is what a quiet chain sounds like
        assert [m for m in heard if m["type"] != "status"] == []
        async_to_sync(get_channel_layer().group_send)(GROUP, delta(chain, chain.seq + 1))
        for viewer in viewers:
            got = wait_for(viewer, lambda m: m["type"] != "status", "the delta")
            assert (got["type"], got["seq"]) == ("delta", chain.seq + 1)


@pytest.mark.integration
def test_pages_say_store_unavailable_while_redis_is_down_and_recover(outage_world, client):
    account, chain, _cookie, server = outage_world
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_user("pages-trader", password="x" * 12))
    page = f"/chains/NIFTY/{EXPIRY.isoformat()}/"
    # (stale: no feed runs; the page's script carries every state's words, so the code itself
    # is on every page: the reason shown is what must not be Redis's)
    assert b"redis-server" not in client.get(page).content
    server.stop()
    for path in ("/", page):
        answer = client.get(path)
        assert answer.status_code == 503, path
        assert b"store_unavailable" in answer.content and b"redis-server" in answer.content
    server.start()
    publish(account, chain, feed_state="live")  # the worker writes again
    answer = client.get(page)
    assert answer.status_code == 200 and b"redis-server" not in answer.content
