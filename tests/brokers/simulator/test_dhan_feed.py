"""The simulated Dhan feed over real sockets, decoded with brokers.dhan.codec."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from brokers.dhan.messages import disconnect_message, unsubscribe_messages
from tests.sim_process import DEMO

from .feedclient import (
    closed_with,
    dhan_events,
    dhan_subscribe,
    disconnect_codes,
    feed_connect,
    option_keys,
    recv,
    ticks,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


def _atm_pair(sim):
    rows = option_keys(sim.state(), "NIFTY")
    strikes = sorted({r["strike"] for r in rows})
    atm = strikes[len(strikes) // 2]
    return [r for r in rows if r["strike"] == atm]


async def test_quote_subscription_gets_prev_close_then_quote_and_oi(sim):
    call, _put = _atm_pair(sim)
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "quote", [("NSE_FNO", call["security_id"]), ("IDX_I", 13)])
        events = await dhan_events(ws, lambda ev: len(ev) >= 5)
    first = ticks(events)[:5]
    sid = str(call["security_id"])
    assert first[0].instrument == sid and first[0].prev_close == pytest.approx(call["prev_close"])
    assert first[0].prev_oi == call["prev_oi"]
    assert first[1].instrument == sid and first[1].ltp is not None and first[1].volume > 0
    assert first[2].instrument == sid and first[2].oi is not None
    assert first[3].instrument == "13" and first[3].prev_close is not None
    assert first[4].instrument == "13" and first[4].ltp == pytest.approx(
        sim.state(instruments=False)["market"]["spots"]["NIFTY"], rel=0.01
    )


async def test_ticker_and_full_modes_send_their_packets(sim):
    call, put = _atm_pair(sim)
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "ticker", [("NSE_FNO", call["security_id"])])
        await dhan_subscribe(ws, "full", [("NSE_FNO", put["security_id"])])
        events = await dhan_events(ws, lambda ev: len(ticks(ev)) >= 4)
    ticker, full = ticks(events)[1], ticks(events)[3]
    assert ticker.ltp is not None and ticker.volume is None  # Ticker: LTP and LTT only
    assert full.depth is not None and len(full.depth) == 5 and full.oi is not None
    assert full.bid_price is not None and full.bid_price < full.ask_price


async def test_live_ticks_match_the_simulators_last_traded_price(sim):
    rows = option_keys(sim.state(), "NIFTY")
    pairs = [("NSE_FNO", r["security_id"]) for r in rows]
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "quote", pairs)
        events = await dhan_events(ws, lambda ev: len(ticks(ev)) >= 3 * len(pairs) + 30)
        state = {str(r["security_id"]): r for r in sim.state()["instruments"]}
    quotes = [t for t in ticks(events) if t.ltp is not None]
    last = {t.instrument: t for t in quotes}
    # The newest quote of an instrument equals the state, or the state has moved on since.
    assert any(t.ltp == pytest.approx(state[sid]["ltp"], abs=0.01) for sid, t in last.items())
    for tick in quotes:
        assert round(tick.ltp * 20) == pytest.approx(tick.ltp * 20, abs=1e-3)  # 0.05 grid


async def test_unsubscribe_stops_ticks(sim):
    rows = option_keys(sim.state(), "NIFTY")[:40]
    pairs = [("NSE_FNO", r["security_id"]) for r in rows]
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "ticker", pairs)
        await dhan_events(ws, lambda ev: len(ev) >= 2 * len(pairs))
        for message in unsubscribe_messages("ticker", pairs):
            await ws.send(message)
        await asyncio.sleep(0.3)  # let frames already in flight arrive
        while True:
            try:
                await asyncio.wait_for(ws.recv(), 0.1)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.6)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"token": "SIM-WRONG-TOKEN"}, 809),
        ({"client_id": "9999999999"}, 810),
    ],
)
async def test_bad_credentials_get_a_disconnect_packet(sim, query, reason):
    async with feed_connect(sim.dhan_feed_url(**query)) as ws:
        events, _ = await closed_with(ws)
    assert disconnect_codes(events) == [reason]


async def test_expired_token_gets_807_and_a_token_of_another_client_808(sim):
    sim.fault(action="expire_token", broker="dhan")
    async with feed_connect(sim.dhan_feed_url()) as ws:
        events, _ = await closed_with(ws)
    assert disconnect_codes(events) == [807]
    sim.reset()
    async with sim.dhan_rest as client:
        renewed = await client.renew_token()
    async with feed_connect(sim.dhan_feed_url(token=renewed.access_token)) as ws:  # works
        await dhan_subscribe(ws, "ticker", [("IDX_I", 13)])
        await dhan_events(ws, lambda ev: len(ev) >= 2)


async def test_missing_version_gets_814(sim):
    url = f"{sim.ws_url}/dhan/feed?token={DEMO.dhan_token}&clientId={DEMO.dhan_client_id}"
    async with feed_connect(url) as ws:
        events, _ = await closed_with(ws)
    assert disconnect_codes(events) == [814]


async def test_refusal_can_drop_the_socket_without_a_close_frame(sim):
    sim.fault(action="dhan_auth_failure", style="drop")
    async with feed_connect(sim.dhan_feed_url(token="SIM-WRONG-TOKEN")) as ws:
        events, closed = await closed_with(ws)
    assert events == [] and closed.rcvd is None  # no close frame


async def test_more_than_100_instruments_in_one_message_gets_804(sim):
    items = [{"ExchangeSegment": "NSE_FNO", "SecurityId": str(40000 + i)} for i in range(101)]
    body = {"RequestCode": 15, "InstrumentCount": 101, "InstrumentList": items}
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await ws.send(json.dumps(body))
        events, _ = await closed_with(ws)
    assert disconnect_codes(events)[-1] == 804


async def test_malformed_request_gets_814(sim):
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await ws.send('{"RequestCode": 99}')
        events, _ = await closed_with(ws)
    assert disconnect_codes(events) == [814]


async def test_sixth_connection_drops_the_oldest_with_805(sim):
    sockets = [await feed_connect(sim.dhan_feed_url()) for _ in range(5)]
    try:
        sixth = await feed_connect(sim.dhan_feed_url())
        events, _ = await closed_with(sockets[0])
        assert disconnect_codes(events) == [805]
        await dhan_subscribe(sixth, "ticker", [("IDX_I", 13)])
        await dhan_events(sixth, lambda ev: len(ev) >= 2)
        assert len(sim.state(instruments=False)["connections"]["dhan"]) == 5
        await sixth.close()
    finally:
        for ws in sockets:
            await ws.close()


async def test_binary_client_frames_are_tolerated(sim):
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await ws.send(b"\x00" * 83)  # what the official SDK sends after its disconnect
        await dhan_subscribe(ws, "ticker", [("IDX_I", 13)])
        events = await dhan_events(ws, lambda ev: len(ev) >= 2)
    assert ticks(events)[0].instrument == "13"


async def test_disconnect_request_closes_the_feed(sim):
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await ws.send(disconnect_message())
        with pytest.raises(ConnectionClosed):
            await recv(ws)


async def test_server_pings_the_client(sim):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(sim.dhan_feed_url(), autoping=False)
        message = await ws.receive(timeout=5)  # the session simulator pings every second
        assert message.type is aiohttp.WSMsgType.PING
        await ws.close()
