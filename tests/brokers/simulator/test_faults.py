"""Every fault of POST /sim/faults, observed with our clients and codecs over real sockets."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from brokers.dhan.codec import decode_frame as dhan_decode
from brokers.dhan.rest import DhanRestClient
from brokers.exceptions import BrokerError, CodecError
from brokers.http import NO_RETRY
from brokers.ticks import MarketStatus
from brokers.upstox.codec import FrameKind
from brokers.upstox.codec import decode_frame as upstox_decode
from brokers.upstox.rest import UpstoxRestClient
from tests.sim_process import DEMO

from .feedclient import (
    closed_with,
    dhan_events,
    dhan_subscribe,
    disconnect_codes,
    feed_connect,
    recv,
    upstox_connect,
    upstox_frame,
    upstox_sub,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def _dhan_live(sim):
    ws = await feed_connect(sim.dhan_feed_url())
    await dhan_subscribe(ws, "ticker", [("IDX_I", 13)])
    await dhan_events(ws, lambda ev: len(ev) >= 2)
    return ws


async def _upstox_live(sim):
    ws = await upstox_connect(sim)
    await upstox_frame(ws)
    await upstox_sub(ws, ["NSE_INDEX|Nifty 50"], "ltpc")
    await upstox_frame(ws)
    return ws


@pytest.mark.parametrize("close_frame", [True, False])
async def test_drop_closes_every_feed_with_or_without_a_close_frame(sim, close_frame):
    dhan, upstox = await _dhan_live(sim), await _upstox_live(sim)
    assert sim.fault(action="drop", close_frame=close_frame)["affected"] == 2
    for ws, broker in ((dhan, "dhan"), (upstox, "upstox")):
        _, closed = await closed_with(ws, broker=broker)
        assert (closed.rcvd is not None) is close_frame


async def test_dhan_disconnect_packet_with_a_given_reason(sim):
    ws = await _dhan_live(sim)
    sim.fault(action="dhan_disconnect", reason=806)
    events, _ = await closed_with(ws)
    assert disconnect_codes(events) == [806]


@pytest.mark.parametrize(("action", "reason"), [("expire_token", 807), ("revoke_token", 809)])
async def test_token_faults_cut_live_feeds(sim, action, reason):
    dhan, upstox = await _dhan_live(sim), await _upstox_live(sim)
    sim.fault(action=action, broker="dhan")
    sim.fault(action=action, broker="upstox")
    events, _ = await closed_with(dhan)
    assert disconnect_codes(events) == [reason]
    await closed_with(upstox, broker="upstox")
    assert upstox.close_code == 1008


@pytest.mark.parametrize("kind", ["truncated", "unknown_code", "garbage"])
async def test_malformed_frames_are_rejected_by_our_codecs(sim, kind):
    dhan, upstox = await _dhan_live(sim), await _upstox_live(sim)
    sim.fault(action="malformed", kind=kind, count=2)
    for ws, decode in ((dhan, dhan_decode), (upstox, upstox_decode)):
        bad = 0
        while bad < 2:
            try:
                decode(await recv(ws))
            except CodecError:
                bad += 1
        await ws.close()


async def test_stall_keeps_pings_but_sends_no_ticks_until_resume(sim):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(sim.dhan_feed_url(), autoping=False)
        await ws.send_str(
            '{"RequestCode": 15, "InstrumentCount": 1, '
            '"InstrumentList": [{"ExchangeSegment": "IDX_I", "SecurityId": "13"}]}'
        )
        await asyncio.sleep(0.2)
        sim.fault(action="stall")
        await asyncio.sleep(0.2)
        kinds = []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            try:
                message = await ws.receive(timeout=0.5)
            except TimeoutError:
                continue
            kinds.append(message.type)
            if message.type is aiohttp.WSMsgType.PING:
                await ws.pong(message.data)  # a silent client would be closed by the heartbeat
        after_stall = kinds[kinds.index(aiohttp.WSMsgType.PING) :]  # what came before may lag
        assert set(after_stall) == {aiohttp.WSMsgType.PING}
        sim.fault(action="resume")
        while (message := await ws.receive(timeout=5)).type is not aiohttp.WSMsgType.BINARY:
            await ws.pong(message.data)
        await ws.close()


@pytest.mark.parametrize(("status", "dhan_code", "upstox_code"), [
    (503, "DH-908", "UDAPI100500"), (429, "DH-904", "UDAPI10005"),
])  # fmt: skip
async def test_rest_errors_for_n_seconds(sim, status, dhan_code, upstox_code):
    sim.fault(action="rest_error", status=status, seconds=0.5)
    async with sim.dhan_rest as dhan, sim.upstox_rest as upstox:
        with pytest.raises(BrokerError) as dhan_error:
            await dhan.profile()
        with pytest.raises(BrokerError) as upstox_error:
            await upstox.profile()
        assert dhan_error.value.code == dhan_code and not dhan_error.value.permanent
        assert upstox_error.value.code == upstox_code and upstox_error.value.http_status == status
        await asyncio.sleep(0.6)
        await dhan.profile()
        await upstox.profile()


async def test_market_close_sends_market_info_and_quiets_dhan(sim):
    dhan, upstox = await _dhan_live(sim), await _upstox_live(sim)
    sim.fault(action="market", status="closed", dhan_status_packet=True)
    frame = await upstox_frame(upstox)
    while frame.kind is not FrameKind.MARKET_INFO:
        frame = await upstox_frame(upstox)
    assert {e.status for e in frame if isinstance(e, MarketStatus)} == {"NORMAL_CLOSE"}
    events = await dhan_events(dhan, lambda ev: any(isinstance(e, MarketStatus) for e in ev))
    steps = sim.state(instruments=False)["steps"]
    await asyncio.sleep(0.3)
    assert sim.state(instruments=False)["steps"] == steps  # the market does not move
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(dhan.recv(), 0.5)
    sim.fault(action="market", status="open")
    await dhan_events(dhan, lambda ev: len(ev) >= 1)
    assert events
    await dhan.close()
    await upstox.close()


async def test_bad_fault_requests_say_what_to_send(sim):
    async with httpx.AsyncClient(base_url=sim.url) as client:
        unknown = await client.post("/sim/faults", json={"action": "explode"})
        bad = await client.post("/sim/faults", json={"action": "rest_error", "status": 404})
    assert unknown.status_code == 400 and "known:" in unknown.json()["error"]
    assert bad.status_code == 400 and "status must be" in bad.json()["error"]


async def test_state_reports_connections_subscriptions_and_prices(sim):
    ws = await _dhan_live(sim)
    state = sim.state()
    await ws.close()
    assert state["subscriptions"]["dhan"] == 1 and len(state["connections"]["dhan"]) == 1
    nifty = next(i for i in state["instruments"] if i["security_id"] == 13)
    assert nifty["true_price"] == pytest.approx(state["market"]["spots"]["NIFTY"], abs=0.01)
    option = next(i for i in state["instruments"] if i["kind"] == "option")
    assert option["true_price"] > 0 and option["bid"] < option["ask"]


async def test_reset_closes_feeds_and_restores_tokens(sim):
    ws = await _dhan_live(sim)
    sim.fault(action="revoke_token", broker="dhan")
    sim.reset()
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(ws)
    async with sim.dhan_rest as client:
        await client.profile()


@pytest.mark.parametrize("broker", ["dhan", "upstox"])
async def test_issued_tokens_work_after_the_old_one_expired(sim, broker):
    sim.fault(action="expire_token", broker=broker)
    token = sim.issue_token(broker)
    if broker == "dhan":
        client = DhanRestClient(f"{sim.url}/dhan", DEMO.dhan_client_id, token, retry=NO_RETRY)
    else:
        client = UpstoxRestClient(f"{sim.url}/upstox", access_token=token, retry=NO_RETRY)
    async with client:
        await client.profile()
