"""The live WebSocket through the real ASGI stack and the Redis channel layer.

Every test runs on its own ``redis-server``: a flush by another test (of this run or of a
concurrent one) never reaches it, and a test may flush or corrupt it on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from chains import consumers, store
from chains.contracts import chain_delta_event
from optionsite.asgi import application
from tests.redis_server import RedisServer, use_in_process

from .fixtures import EXPIRY, LATER, build_book, delta_event, publish, tracked
from .test_freshness import feed_record, write_feed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.integration]
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def redis_server() -> Iterator[RedisServer]:
    """This test's own Redis, which REDIS_URL, the channel layer and the clients point at."""
    with RedisServer() as server, use_in_process(server):
        yield server


def session_cookie(*, staff: bool = False) -> bytes:
    """The session cookie of a new logged-in user ("trader", or "admin" with ``staff``)."""
    name = "admin" if staff else "trader"
    user = get_user_model().objects.create_user(name, password="pw-test-only", is_staff=staff)
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def live_feed(account: str) -> None:
    """The account's feed worker status: connected, holding its lock, a tick just now."""
    now = timezone.now()
    record = feed_record(now, last_tick_at=now.isoformat(), heartbeat_seconds=60.0,
                         market={"NSE_FNO": "NORMAL_OPEN"})  # fmt: skip
    write_feed(account, record)


@pytest.fixture
def world(tmp_path):
    account = tracked(tmp_path, "dhan")
    chain = build_book(account, EXPIRY)
    publish(account, chain, feed_state=None)
    live_feed(account.name)
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
    assert (status["type"], status["feed_state"], status["source"], status["code"]) == (
        "status", "live", "live", None)  # fmt: skip
    assert (status["freshness"]["state"], status["freshness"]["words"]) == ("live", "Live")
    await ws.disconnect()


async def test_deltas_are_forwarded_in_order(world):
    _, chain, cookie = world
    ws, _snapshot, _ = await connected(cookie)
    layer = get_channel_layer()
    group = store.group_name("NIFTY", EXPIRY)
    leg = chain.snapshot()["strikes"]["26000"]["CE"]
    for seq in (chain.seq + 1, chain.seq + 2):
        legs = {"26000": {"CE": {**leg, "ltp": float(seq)}}}
        await layer.group_send(group, delta_event(chain, seq, legs=legs))
    first = await ws.receive_json_from(timeout=5)
    second = await ws.receive_json_from(timeout=5)
    assert (first["type"], first["seq"], second["seq"]) == ("delta", chain.seq + 1, chain.seq + 2)
    assert second["legs"]["26000"]["CE"]["ltp"] == float(chain.seq + 2)
    await ws.disconnect()


async def test_gap_in_seq_resyncs_with_a_snapshot_and_is_counted(world):
    _, chain, cookie = world
    ws, _, _ = await connected(cookie)
    layer = get_channel_layer()
    await layer.group_send(store.group_name("NIFTY", EXPIRY), delta_event(chain, chain.seq + 5))
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "snapshot"  # not the delta: the client is resynced instead
    assert await sync_to_async(store.channel_gaps)() == 1
    await ws.disconnect()


async def test_old_deltas_are_not_replayed(world):
    _, chain, cookie = world
    ws, _, _ = await connected(cookie)
    await get_channel_layer().group_send(
        store.group_name("NIFTY", EXPIRY), delta_event(chain, chain.seq)
    )
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_a_restarted_feed_worker_resyncs_clients_instead_of_being_ignored(world):
    account, chain, cookie = world
    for _ in range(5):  # the first worker has flushed a while: its seq is ahead
        chain.dirty.add(next(iter(chain.legs)))
        chain.flush(timezone.now())
    await sync_to_async(publish)(account, chain, feed_state=None)
    ws, snapshot, _ = await connected(cookie)
    assert snapshot["seq"] == chain.seq == 6
    # The worker restarts: a new book counts from 1 again, writes its snapshot, then its delta.
    restarted = await sync_to_async(build_book)(account, EXPIRY, forward=26_400.0)
    restarted.dirty.add(next(iter(restarted.legs)))
    delta = restarted.flush(timezone.now())
    await sync_to_async(publish)(account, restarted, feed_state=None)
    assert delta["seq"] == 2 < chain.seq and restarted.run != chain.run
    await get_channel_layer().group_send(
        store.group_name("NIFTY", EXPIRY),
        chain_delta_event(underlying="NIFTY", expiry=EXPIRY.isoformat(), delta=delta),
    )
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "snapshot" and message["seq"] == 2
    assert message["data"]["forward"] == restarted.snapshot()["forward"]
    # …and the new run's next delta is forwarded as a delta.
    restarted.dirty.add(next(iter(restarted.legs)))
    following = restarted.flush(timezone.now())
    await sync_to_async(publish)(account, restarted, feed_state=None)
    await get_channel_layer().group_send(
        store.group_name("NIFTY", EXPIRY),
        chain_delta_event(underlying="NIFTY", expiry=EXPIRY.isoformat(), delta=following),
    )
    message = await ws.receive_json_from(timeout=5)
    assert (message["type"], message["seq"]) == ("delta", 3)
    await ws.disconnect()


async def test_deltas_of_two_runs_with_the_same_seq_are_encoded_apart():
    from chains.consumers import delta_text

    first = {"run": "aaaa", "seq": 1, "as_of": "2026-11-20T04:00:00+00:00", "header": None,
             "legs": {"26000": {"CE": {"ltp": 1.0}}}}  # fmt: skip
    second = {**first, "run": "bbbb", "legs": {"26000": {"CE": {"ltp": 2.0}}}}
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


# --- a quiet chain, bad frames, lost membership, a failing watcher ---------------------------


@pytest.fixture
def quiet(tmp_path, redis_server):
    """A published chain whose feed worker writes nothing more (no status record either): no
    delta comes unless the test sends one."""
    account = tracked(tmp_path, "dhan")
    chain = build_book(account, EXPIRY)
    publish(account, chain, feed_state=None)
    return account, chain, session_cookie(), redis_server


def delta(chain, seq: int) -> dict:
    return delta_event(chain, seq)


async def test_the_channel_layer_reads_wait_longer_than_its_own_blocking_pop():
    """A read that times out before channels-redis' blocking pop answers (BZPOPMIN, 5 s) turns
    every quiet moment into an error; connecting must still fail fast."""
    layer = get_channel_layer()
    kwargs = layer.create_pool(0).connection_kwargs
    assert kwargs["socket_timeout"] >= 2 * RedisChannelLayer.brpop_timeout
    assert 0 < kwargs["socket_connect_timeout"] <= RedisChannelLayer.brpop_timeout
    assert kwargs["health_check_interval"] > 0
    # Consumers re-add their group well within its expiry.
    assert layer.group_expiry >= 10 * consumers.GROUP_REFRESH_SECONDS


async def test_a_quiet_chain_keeps_its_socket_open_past_the_layers_blocking_pop(quiet):
    """No delta for longer than redis-py's default read timeout and channels-redis' blocking
    pop (5 s each): the socket stays open and silent, and the next delta still arrives."""
    _, chain, cookie, _ = quiet
    ws, snapshot, _ = await connected(cookie)
    assert await ws.receive_nothing(timeout=12, interval=0.2)
    assert not ws.future.done()  # the consumer did not end (a 1011 close in a browser)
    await get_channel_layer().group_send(
        store.group_name("NIFTY", EXPIRY), delta(chain, snapshot["seq"] + 1)
    )
    message = await ws.receive_json_from(timeout=5)
    assert (message["type"], message["seq"]) == ("delta", snapshot["seq"] + 1)
    await ws.disconnect()


@pytest.mark.parametrize("frame", [{"text": "resync please"}, {"text": '{"type"'}, {"text": ""},
                                   {"bytes": b"\x00\x01"}])  # fmt: skip
async def test_a_frame_that_is_not_json_text_gets_bad_request_and_the_socket_stays_open(
    quiet, frame
):
    _, _, cookie, _ = quiet
    ws, _, _ = await connected(cookie)
    await ws.send_input({"type": "websocket.receive", **frame})
    error = await ws.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "bad_request")
    assert "JSON" in error["message"]
    await ws.send_json_to({"type": "resync"})  # still open and serving
    assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
    await ws.disconnect()


async def test_a_consumer_whose_group_was_lost_unnoticed_joins_it_again(quiet, monkeypatch):
    """Redis loses its keys without dropping a connection (a flush, a failover to a replica
    that lagged): the consumer re-adds its group by itself and the chain streams again."""
    monkeypatch.setattr(consumers, "GROUP_REFRESH_SECONDS", 1.0, raising=False)
    account, chain, cookie, server = quiet
    ws, snapshot, _ = await connected(cookie)
    flushed = server.client()
    await sync_to_async(flushed.flushdb)()
    flushed.close()
    await sync_to_async(publish)(account, chain, feed_state=None)  # the feed worker rewrites
    group, seq, message = store.group_name("NIFTY", EXPIRY), snapshot["seq"], None
    for _ in range(60):  # a delta per try until one reaches the consumer
        seq += 1
        await get_channel_layer().group_send(group, delta(chain, seq))
        if not await ws.receive_nothing(timeout=0.5):
            message = await ws.receive_json_from()
            if message["type"] != "status":
                break
    assert message is not None and message["type"] in {"delta", "snapshot"}, message
    await ws.disconnect()


async def test_a_watcher_that_fails_closes_the_socket_with_a_named_code(quiet, caplog):
    """The status watcher must not die unseen: a failure it cannot recover from (here a
    corrupt record in Redis) is logged with its traceback and the socket closes 4500, which
    the browser answers by reconnecting."""
    _, _, cookie, server = quiet
    ws, _, _ = await connected(cookie)
    corrupt = server.client()
    await sync_to_async(corrupt.set)(store.meta_key("NIFTY", EXPIRY), b"{not json")
    corrupt.close()
    while (output := await ws.receive_output(timeout=10))["type"] == "websocket.send":
        pass  # a status may come first
    assert (output["type"], output["code"]) == ("websocket.close", consumers.CLOSE_SERVER_ERROR)
    assert "reconnect" in output["reason"]
    assert any(r.exc_info and "watcher" in r.getMessage() for r in caplog.records)


async def test_a_delta_without_a_required_key_closes_the_socket_naming_the_key(quiet, caplog):
    """A renamed key in a group message is not read as "not given" (a client kept open would
    miss updates without anyone knowing): it is logged, naming the key, and the socket closes
    4500 so the browser reconnects."""
    _, chain, cookie, _ = quiet
    ws, _, _ = await connected(cookie)
    renamed = dict(delta(chain, chain.seq + 1))
    renamed["sequence"] = renamed.pop("seq")
    await get_channel_layer().group_send(store.group_name("NIFTY", EXPIRY), renamed)
    while (output := await ws.receive_output(timeout=10))["type"] == "websocket.send":
        pass  # a status may come first
    assert (output["type"], output["code"]) == ("websocket.close", consumers.CLOSE_SERVER_ERROR)
    logged = [r for r in caplog.records if r.exc_info and "chain.delta" in r.getMessage()]
    assert logged and "lacks 'seq' and has 'sequence' instead" in str(logged[0].exc_info[1])


async def test_a_snapshot_with_a_renamed_key_is_refused_on_connect_with_4500(quiet, caplog):
    _, _, cookie, server = quiet
    corrupt = server.client()
    raw = json.loads(await sync_to_async(corrupt.get)(store.chain_key("NIFTY", EXPIRY)))
    raw["sequence"] = raw.pop("seq")
    await sync_to_async(corrupt.set)(store.chain_key("NIFTY", EXPIRY), json.dumps(raw))
    corrupt.close()
    ws = socket("/ws/live-options/NIFTY", cookie)
    await ws.connect()
    error = await ws.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "server_error")
    closed = await ws.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", consumers.CLOSE_SERVER_ERROR)
    assert any("lacks 'seq'" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
