"""The live WebSocket through the real ASGI stack and the Redis channel layer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from chains import store
from optionsite.asgi import application

from .fixtures import EXPIRY, LATER, build_book, publish, tracked

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("clean_redis"),
]
ORIGIN = (b"origin", b"http://localhost")


def session_cookie() -> bytes:
    get_user_model().objects.create_user("trader", password="pw-test-only")
    client = Client()
    assert client.login(username="trader", password="pw-test-only")
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def world(tmp_path):
    account = tracked(tmp_path, "dhan")
    chain = build_book(account, EXPIRY)
    publish(account, chain)
    return account, chain, session_cookie()


def socket(path: str, cookie: bytes | None, origin: tuple[bytes, bytes] = ORIGIN):
    headers = [origin, (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def connected(cookie: bytes, path: str = "/ws/live-options/NIFTY"):
    ws = socket(path, cookie)
    ok, _ = await ws.connect()
    assert ok
    snapshot = await ws.receive_json_from(timeout=5)
    status = await ws.receive_json_from(timeout=5)
    return ws, snapshot, status


async def test_connect_sends_snapshot_then_status(world):
    _, chain, cookie = world
    ws, snapshot, status = await connected(cookie)
    assert snapshot["type"] == "snapshot"
    assert snapshot["seq"] == chain.seq
    assert snapshot["data"]["expiry"] == EXPIRY.isoformat()
    assert snapshot["data"]["source"] == "live"
    assert set(snapshot["data"]["strikes"]) == {"25900", "26000", "26100", "26200"}
    assert status == {"type": "status", "feed_state": "live", "source": "live", "code": None,
                      "message": ""}  # fmt: skip
    await ws.disconnect()


async def test_deltas_are_forwarded_in_order(world):
    _, chain, cookie = world
    ws, _snapshot, _ = await connected(cookie)
    layer = get_channel_layer()
    group = store.group_name("NIFTY", EXPIRY)
    for seq in (chain.seq + 1, chain.seq + 2):
        await layer.group_send(group, {"type": "chain.delta", "run": chain.run, "seq": seq,
                                       "as_of": "t",
                                       "legs": {"26000": {"CE": {"ltp": float(seq)}}}})  # fmt: skip
    first = await ws.receive_json_from(timeout=5)
    second = await ws.receive_json_from(timeout=5)
    assert (first["type"], first["seq"], second["seq"]) == ("delta", chain.seq + 1, chain.seq + 2)
    assert second["legs"]["26000"]["CE"]["ltp"] == float(chain.seq + 2)
    await ws.disconnect()


async def test_gap_in_seq_resyncs_with_a_snapshot_and_is_counted(world):
    _, chain, cookie = world
    ws, _, _ = await connected(cookie)
    layer = get_channel_layer()
    await layer.group_send(store.group_name("NIFTY", EXPIRY),
                           {"type": "chain.delta", "run": chain.run, "seq": chain.seq + 5,
                            "legs": {}})  # fmt: skip
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "snapshot"  # not the delta: the client is resynced instead
    assert await sync_to_async(store.channel_gaps)() == 1
    await ws.disconnect()


async def test_old_deltas_are_not_replayed(world):
    _, chain, cookie = world
    ws, _, _ = await connected(cookie)
    await get_channel_layer().group_send(
        store.group_name("NIFTY", EXPIRY),
        {"type": "chain.delta", "run": chain.run, "seq": chain.seq, "legs": {}},
    )
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_a_restarted_feed_worker_resyncs_clients_instead_of_being_ignored(world):
    account, chain, cookie = world
    for _ in range(5):  # the first worker has flushed a while: its seq is ahead
        chain.dirty.add(next(iter(chain.legs)))
        chain.flush(timezone.now())
    await sync_to_async(publish)(account, chain)
    ws, snapshot, _ = await connected(cookie)
    assert snapshot["seq"] == chain.seq == 6
    # The worker restarts: a new book counts from 1 again, writes its snapshot, then its delta.
    restarted = await sync_to_async(build_book)(account, EXPIRY, forward=26_400.0)
    restarted.dirty.add(next(iter(restarted.legs)))
    delta = restarted.flush(timezone.now())
    await sync_to_async(publish)(account, restarted)
    assert delta["seq"] == 2 < chain.seq and restarted.run != chain.run
    await get_channel_layer().group_send(
        store.group_name("NIFTY", EXPIRY), {"type": "chain.delta", **delta}
    )
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "snapshot" and message["seq"] == 2
    assert message["data"]["forward"] == restarted.snapshot()["forward"]
    # …and the new run's next delta is forwarded as a delta.
    restarted.dirty.add(next(iter(restarted.legs)))
    following = restarted.flush(timezone.now())
    await sync_to_async(publish)(account, restarted)
    await get_channel_layer().group_send(
        store.group_name("NIFTY", EXPIRY), {"type": "chain.delta", **following}
    )
    message = await ws.receive_json_from(timeout=5)
    assert (message["type"], message["seq"]) == ("delta", 3)
    await ws.disconnect()


async def test_deltas_of_two_runs_with_the_same_seq_are_encoded_apart():
    from chains.consumers import delta_text

    first = {"run": "aaaa", "seq": 1, "legs": {"26000": {"CE": {"ltp": 1.0}}}}
    second = {"run": "bbbb", "seq": 1, "legs": {"26000": {"CE": {"ltp": 2.0}}}}
    assert delta_text("chain.X.2026-11-26", first) != delta_text("chain.X.2026-11-26", second)


async def test_client_can_ask_for_a_resync(world):
    _, _chain, cookie = world
    ws, _, _ = await connected(cookie)
    await ws.send_json_to({"type": "resync"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
    await ws.send_json_to({"type": "subscribe"})
    assert (await ws.receive_json_from(timeout=5))["code"] == "bad_request"
    await ws.disconnect()


async def test_explicit_expiry(world):
    _, _, cookie = world
    ws, snapshot, _ = await connected(cookie, f"/ws/live-options/NIFTY?expiry={LATER}")
    assert snapshot["data"] is None  # nothing published for that expiry yet
    await ws.disconnect()


async def test_anonymous_is_closed_4401(world):
    ws = socket("/ws/live-options/NIFTY", None)
    ok, _ = await ws.connect()
    assert ok
    assert (await ws.receive_json_from(timeout=5))["code"] == "unauthenticated"
    assert (await ws.receive_output(timeout=5))["code"] == 4401


async def test_foreign_origin_is_refused(world):
    _, _, cookie = world
    ws = socket("/ws/live-options/NIFTY", cookie, origin=(b"origin", b"http://evil.example"))
    ok, _ = await ws.connect()
    assert not ok


@pytest.mark.parametrize(
    ("path", "code", "name"),
    [
        ("/ws/live-options/NIFTY?expiry=tomorrow", 4400, "bad_request"),
        ("/ws/live-options/BANKNIFTY", 4404, "not_tracked"),
        ("/ws/live-options/NIFTY?expiry=2030-01-01", 4404, "not_tracked"),
    ],
)
async def test_bad_parameters_close_with_a_clear_code(world, path, code, name):
    _, _, cookie = world
    ws = socket(path, cookie)
    ok, _ = await ws.connect()
    assert ok
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == name and error["message"]
    closed = await ws.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == code
