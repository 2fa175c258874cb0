"""The simulated Upstox feed over real sockets, decoded with brokers.upstox.codec."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from brokers.ticks import MarketStatus
from brokers.upstox.codec import FrameKind
from brokers.upstox.messages import change_mode, unsub
from tests.sim_process import DEMO

from .feedclient import (
    feed_connect,
    option_keys,
    recv,
    upstox_connect,
    upstox_frame,
    upstox_sub,
    upstox_uri,
)

pytestmark = pytest.mark.asyncio


async def test_market_info_first_then_snapshot_then_incremental_live_feed(sim):
    rows = option_keys(sim.state(), "NIFTY")
    keys = [r["upstox_key"] for r in rows]
    async with await upstox_connect(sim) as ws:
        info = await upstox_frame(ws)
        assert info.kind is FrameKind.MARKET_INFO
        assert {e.segment: e.status for e in info if isinstance(e, MarketStatus)}["NSE_FO"] == (
            "NORMAL_OPEN"
        )
        await upstox_sub(ws, keys, "option_greeks")
        snapshot = await upstox_frame(ws)
        assert snapshot.kind is FrameKind.SNAPSHOT and len(snapshot) == len(keys)
        tick = snapshot[0]
        assert tick.ltp and tick.prev_close and tick.oi is not None and tick.bid_price
        assert 0.01 < tick.iv < 2.0  # a fraction in the feed
        assert tick.delta is not None and tick.exchange_time is not None
        live = await upstox_frame(ws)
    assert live.kind is FrameKind.LIVE_FEED and len(live) >= 1
    # Incremental: prev close never changes, so live frames never repeat it.
    assert all(t.prev_close is None for t in live)


async def test_index_in_option_greeks_mode_gets_ltpc_and_full_mode_gets_depth(sim):
    option = option_keys(sim.state(), "NIFTY")[80]["upstox_key"]
    async with await upstox_connect(sim) as ws:
        await upstox_frame(ws)
        await upstox_sub(ws, ["NSE_INDEX|Nifty 50"], "option_greeks")
        index = (await upstox_frame(ws))[0]
        await upstox_sub(ws, [option], "full")
        full = next(t for t in await upstox_frame(ws) if t.instrument == option)
    assert index.ltp and index.iv is None
    assert full.depth is not None and len(full.depth) == 5 and full.open is not None


async def test_change_mode_and_unsub(sim):
    key = option_keys(sim.state(), "NIFTY")[80]["upstox_key"]
    async with await upstox_connect(sim) as ws:
        await upstox_frame(ws)
        await upstox_sub(ws, [key], "ltpc")
        assert (await upstox_frame(ws))[0].delta is None
        for request in change_mode([key], mode="option_greeks"):
            await ws.send(request)
        frame = await upstox_frame(ws)
        while frame.kind is not FrameKind.SNAPSHOT:
            frame = await upstox_frame(ws)
        assert frame[0].delta is not None
        for request in unsub([key]):
            await ws.send(request)
    assert sim.state(instruments=False)["subscriptions"]["upstox"] == 0


async def test_feed_uri_is_single_use(sim):
    uri = await upstox_uri(sim)
    async with feed_connect(uri) as ws:
        await upstox_frame(ws)
    with pytest.raises(InvalidStatus) as refused:
        await feed_connect(uri)
    assert refused.value.response.status_code == 401


async def test_direct_feed_url_redirects_to_an_authorized_uri(sim):
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{sim.url}/upstox/v3/feed/market-data-feed",
            headers={"Authorization": f"Bearer {DEMO.upstox_token}"},
        )
        refused = await client.get(f"{sim.url}/upstox/v3/feed/market-data-feed")
    assert response.status_code == 307
    assert (
        "/market-data-feeder/v3/upstox-developer-api/feeds?requestId="
        in response.headers["location"]
    )
    assert refused.status_code == 401


async def test_authorize_with_a_bad_token_is_refused(sim):
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await upstox_uri(sim, token="SIM-WRONG")
    assert refused.value.response.json()["errors"][0]["errorCode"] == "UDAPI100050"


async def test_text_frames_and_unknown_keys_are_ignored(sim):
    async with await upstox_connect(sim) as ws:
        await upstox_frame(ws)
        text = {"guid": "g", "method": "sub", "data": {"mode": "ltpc", "instrumentKeys": []}}
        await ws.send(json.dumps(text))  # a text frame: Upstox reads binary frames only
        await upstox_sub(ws, ["NSE_FO|1", "NSE_INDEX|Nifty 50"], "ltpc")
        snapshot = await upstox_frame(ws)
        conns = sim.state(instruments=False)["connections"]["upstox"]
    assert [t.instrument for t in snapshot] == ["NSE_INDEX|Nifty 50"]
    assert conns[0]["ignored_text_frames"] == 1 and conns[0]["unknown_instruments"] == 1


async def test_third_connection_is_refused(sim):
    first, second = await upstox_connect(sim), await upstox_connect(sim)
    try:
        with pytest.raises(InvalidStatus) as refused:
            await upstox_connect(sim)
        assert refused.value.response.status_code == 429
    finally:
        await first.close()
        await second.close()


async def test_logout_closes_the_feed_and_kills_the_token(sim):
    async with await upstox_connect(sim) as ws:
        await upstox_frame(ws)
        async with sim.upstox_rest as client:
            await client.logout()
        with pytest.raises(ConnectionClosed):
            while True:
                await recv(ws)
    assert ws.close_code == 1008
