"""The simulated Upstox feed: its frames in-process and over real sockets.

Frames are decoded with ``brokers.upstox.codec`` (the product's view) and, for wire fidelity,
with the generated protobuf classes directly (what the official SDK reads, where an absent
scalar reads as 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from google.protobuf.message import Message
from websockets.exceptions import ConnectionClosed, InvalidStatus

from brokers.simulator.market import Market
from brokers.simulator.universe import INDEX, IST, Universe
from brokers.simulator.upstox_feed import encode_mode, fields, live_frame
from brokers.ticks import MarketStatus
from brokers.upstox import MarketDataFeedV3_pb2 as pb
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

# --- wire fidelity: every sub-message that is present is whole --------------------------------

SESSION = datetime(2026, 1, 7, 10, 0, tzinfo=IST)  # a Wednesday morning
FRAME_BUDGET = 2000  # frames a socket test reads at most while waiting for a condition
WHOLE = {  # sub-message -> the fields a present one always carries (docs/protocols/upstox.md §2)
    "ltpc": ("ltp", "ltt", "ltq", "cp"),
    "quote": ("bidQ", "bidP", "askQ", "askP"),
    "optionGreeks": ("delta", "theta", "gamma", "vega"),  # Upstox publishes no rho
    "ohlc": ("open", "high", "low", "close"),
}


def sub_messages(feed: pb.Feed) -> Iterator[tuple[str, Message]]:
    """(kind, message) of every sub-message present in one feed entry."""
    which = feed.WhichOneof("FeedUnion")
    if which == "ltpc":
        yield "ltpc", feed.ltpc
        return
    if which == "firstLevelWithGreeks":
        payload = feed.firstLevelWithGreeks
        parts = (("ltpc", "ltpc"), ("quote", "firstDepth"), ("optionGreeks", "optionGreeks"))
    else:
        full = feed.fullFeed
        payload = getattr(full, full.WhichOneof("FullFeedUnion"))
        parts = (("ltpc", "ltpc"), ("optionGreeks", "optionGreeks"))
        if payload.DESCRIPTOR.name == "MarketFullFeed":
            for quote in payload.marketLevel.bidAskQuote:
                yield "quote", quote
        for bar in payload.marketOHLC.ohlc:
            yield "ohlc", bar
    for kind, name in parts:
        if name in payload.DESCRIPTOR.fields_by_name and payload.HasField(name):
            yield kind, getattr(payload, name)


def partial_sub_messages(frame: bytes) -> list[str]:
    """What the official SDK would misread in ``frame``: every present sub-message that lacks a
    field (proto3 reads it as 0), and every LTPC whose ltp is not a price (the SDK's LTP)."""
    problems = []
    for key, feed in pb.FeedResponse.FromString(frame).feeds.items():
        for kind, message in sub_messages(feed):
            wanted = WHOLE[kind]
            if kind == "ltpc" and key.split("|")[0].endswith("_INDEX"):
                wanted = tuple(f for f in wanted if f != "ltq")  # an index has no trades
            missing = [f for f in wanted if not message.HasField(f)]
            if missing:
                problems.append(f"{key}: {kind} without {missing}: {message}".strip())
            elif kind == "ltpc" and not message.ltp > 0:
                problems.append(f"{key}: ltpc with ltp {message.ltp}")
    return problems


def payload_kinds(frame: bytes) -> set[str]:
    """The payload kinds of a frame's feed entries (ltpc, firstLevelWithGreeks, marketFF, ...)."""
    kinds = set()
    for feed in pb.FeedResponse.FromString(frame).feeds.values():
        which = feed.WhichOneof("FeedUnion")
        kinds.add(feed.fullFeed.WhichOneof("FullFeedUnion") if which == "fullFeed" else which)
    return kinds


def test_every_present_sub_message_of_a_market_stretch_is_whole():
    universe = Universe(SESSION, strikes=5)
    market = Market(universe, seed=11, start=SESSION.timestamp(), step_seconds=0.01)
    connections = []  # one per subscription mode: (subs, sent)
    for mode in ("ltpc", "option_greeks", "full"):
        subs = dict.fromkeys(universe.instruments, mode)
        sent = {i: fields(market.snapshot(i), encode_mode(i, mode)) for i in subs}
        connections.append((subs, sent))
    problems, kinds, unchanged_price_trades, frames = [], set(), 0, 0
    for _ in range(150):
        pending = {tick.instrument: tick for tick in market.run(20)}
        unchanged_price_trades += sum(
            1
            for i, tick in pending.items()
            if i.kind != INDEX and connections[0][1][i]["ltp"] == tick.ltp
        )
        for subs, sent in connections:
            frame, _ = live_frame(pending, subs=subs, sent=sent, now=datetime.now(UTC))
            assert frame is not None
            frames += 1
            kinds |= payload_kinds(frame)
            problems += partial_sub_messages(frame)
    assert unchanged_price_trades > 0 and frames == 450  # the stretch has what it must cover
    assert kinds == {"ltpc", "firstLevelWithGreeks", "marketFF", "indexFF"}
    assert problems == []


@pytest.mark.integration
@pytest.mark.asyncio
async def test_live_feed_over_the_socket_sends_whole_sub_messages(sim):
    nifty = [r["upstox_key"] for r in option_keys(sim.state(), "NIFTY")]
    mid = len(nifty) // 2  # at the money: the options that trade most
    requests = {
        "ltpc": nifty[mid - 4 : mid],
        "full": [*nifty[mid : mid + 4], "NSE_INDEX|Nifty 50"],
        "option_greeks": [*nifty[: mid - 4], *nifty[mid + 4 :], "NSE_INDEX|Nifty Bank"],
    }
    last_ltp: dict[str, float] = {}
    unchanged_price_trades, live_kinds = 0, set()
    everything = {"ltpc", "firstLevelWithGreeks", "marketFF", "indexFF"}
    async with await upstox_connect(sim) as ws:
        await upstox_frame(ws)
        for mode, keys in requests.items():
            await upstox_sub(ws, keys, mode)
        for _ in range(FRAME_BUDGET):  # until the stretch has what it must cover
            if unchanged_price_trades and live_kinds == everything:
                break
            data = await recv(ws)
            assert isinstance(data, bytes)
            assert partial_sub_messages(data) == []
            response = pb.FeedResponse.FromString(data)
            if response.type == pb.live_feed:
                live_kinds |= payload_kinds(data)
            for key, feed in response.feeds.items():
                for kind, message in sub_messages(feed):
                    if kind == "ltpc":
                        if response.type == pb.live_feed and last_ltp.get(key) == message.ltp:
                            unchanged_price_trades += 1
                        last_ltp[key] = message.ltp
    assert unchanged_price_trades and live_kinds == everything, (unchanged_price_trades, live_kinds)


@pytest.mark.integration
@pytest.mark.asyncio
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
        # Incremental: a scalar that did not change (OI moves on a third of trades) is left
        # out, while a present LTPC is whole, unchanged previous close included.
        for _ in range(FRAME_BUDGET):
            if any(t.oi is None for t in live):
                break
            live = await upstox_frame(ws)
    assert any(t.oi is None for t in live), f"every entry of {FRAME_BUDGET} frames had OI"
    assert all(t.prev_close is not None for t in live if t.ltp is not None)


@pytest.mark.integration
@pytest.mark.asyncio
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


@pytest.mark.integration
@pytest.mark.asyncio
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


@pytest.mark.integration
@pytest.mark.asyncio
async def test_feed_uri_is_single_use(sim):
    uri = await upstox_uri(sim)
    async with feed_connect(uri) as ws:
        await upstox_frame(ws)
    with pytest.raises(InvalidStatus) as refused:
        await feed_connect(uri)
    assert refused.value.response.status_code == 401


@pytest.mark.integration
@pytest.mark.asyncio
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


@pytest.mark.integration
@pytest.mark.asyncio
async def test_authorize_with_a_bad_token_is_refused(sim):
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await upstox_uri(sim, token="SIM-WRONG")
    assert refused.value.response.json()["errors"][0]["errorCode"] == "UDAPI100050"


@pytest.mark.integration
@pytest.mark.asyncio
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


@pytest.mark.integration
@pytest.mark.asyncio
async def test_third_connection_is_refused(sim):
    first, second = await upstox_connect(sim), await upstox_connect(sim)
    try:
        with pytest.raises(InvalidStatus) as refused:
            await upstox_connect(sim)
        assert refused.value.response.status_code == 429
    finally:
        await first.close()
        await second.close()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_logout_closes_the_feed_and_kills_the_token(sim):
    async with await upstox_connect(sim) as ws:
        await upstox_frame(ws)
        async with sim.upstox_rest as client:
            await client.logout()
        with pytest.raises(ConnectionClosed):
            while True:
                await recv(ws)
    assert ws.close_code == 1008
