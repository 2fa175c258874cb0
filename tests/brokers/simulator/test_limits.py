"""Every broker limit the simulator enforces: feed sizes, connections, REST rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from brokers.exceptions import BrokerError
from tests.sim_process import DEMO, RunningSimulator, start_simulator

from .feedclient import (
    closed_with,
    dhan_subscribe,
    disconnect_codes,
    feed_connect,
    recv,
    upstox_connect,
    upstox_frame,
    upstox_sub,
)

DHAN_HEADERS = {"access-token": DEMO.dhan_token, "client-id": DEMO.dhan_client_id}


@pytest.fixture(scope="module")
def big_sim() -> Iterator[RunningSimulator]:
    """A quiet simulator with ±100 strikes: more instruments than one connection may hold."""
    sim = start_simulator("--strikes", "100", "--ticks-per-second", "0")
    yield sim
    sim.stop()


def _all(sim: RunningSimulator) -> list[dict]:
    return [i for i in sim.state()["instruments"] if i["kind"] == "option"]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_dhan_more_than_5000_instruments_per_connection_gets_804(big_sim):
    options = _all(big_sim)
    assert len(options) > 5000
    pairs = [(i["dhan_segment"], i["security_id"]) for i in options[:5001]]
    async with feed_connect(big_sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "ticker", pairs)
        events, _ = await closed_with(ws)
    assert disconnect_codes(events)[-1] == 804


@pytest.mark.integration
@pytest.mark.asyncio
async def test_dhan_5000_instruments_per_connection_are_accepted(big_sim):
    pairs = [(i["dhan_segment"], i["security_id"]) for i in _all(big_sim)[:5000]]
    async with feed_connect(big_sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "ticker", pairs)
        for _ in range(10000):  # prev close + ticker per instrument
            await recv(ws)
        assert big_sim.state(instruments=False)["subscriptions"]["dhan"] == 5000


@pytest.mark.integration
@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "limit"), [("option_greeks", 3000), ("full", 2000)])
async def test_upstox_key_limit_per_mode_closes_with_1008(big_sim, mode, limit):
    keys = [i["upstox_key"] for i in _all(big_sim)]
    async with await upstox_connect(big_sim) as ws:
        await upstox_frame(ws)
        await upstox_sub(ws, keys[:limit], mode)
        received = 0
        while received < limit:  # one snapshot per request of 1000 keys: exactly the limit is fine
            received += len(await upstox_frame(ws))
        await upstox_sub(ws, keys[limit : limit + 1], mode)
        with pytest.raises(Exception, match="key limit"):
            while True:
                await recv(ws)
    assert ws.close_code == 1008


@pytest.mark.integration
@pytest.mark.asyncio
async def test_upstox_mixed_modes_use_the_lower_limits(big_sim):
    keys = [i["upstox_key"] for i in _all(big_sim)]
    async with await upstox_connect(big_sim) as ws:
        await upstox_frame(ws)
        await upstox_sub(ws, keys[:2000], "ltpc")
        await upstox_frame(ws)
        await upstox_frame(ws)
        await upstox_sub(ws, keys[2000:2001], "option_greeks")  # ltpc 2000 ok, mixed: 2000 max
        await upstox_frame(ws)
        await upstox_sub(ws, keys[2001:2002], "ltpc")  # 2001 ltpc keys while mixed: refused
        with pytest.raises(Exception, match="mixed-mode"):
            while True:
                await recv(ws)


@pytest.mark.integration
@pytest.mark.asyncio
async def test_dhan_option_chain_repeated_within_3s_gets_429_dh904(sim):
    expiry = sim.state(instruments=False)["market"]["expiries"]["NIFTY"][0]
    body = {"UnderlyingScrip": 13, "UnderlyingSeg": "IDX_I", "Expiry": expiry}
    banknifty = sim.state(instruments=False)["market"]["expiries"]["BANKNIFTY"][0]
    other = {**body, "UnderlyingScrip": 25, "Expiry": banknifty}
    async with httpx.AsyncClient(base_url=f"{sim.url}/dhan", headers=DHAN_HEADERS) as client:
        first = await client.post("/v2/optionchain", json=body)
        again = await client.post("/v2/optionchain", json=body)
        different = await client.post("/v2/optionchain", json=other)
    assert first.status_code == 200 and different.status_code == 200
    assert again.status_code == 429 and again.json()["errorCode"] == "DH-904"
    async with sim.dhan_rest as client:  # our client maps it to a transient error
        with pytest.raises(BrokerError) as error:
            await client.option_chain(13, "IDX_I", date.fromisoformat(expiry))
    assert error.value.code == "DH-904" and not error.value.permanent


@pytest.mark.integration
@pytest.mark.asyncio
async def test_dhan_quotes_more_than_one_per_second_get_429(sim):
    async with httpx.AsyncClient(base_url=f"{sim.url}/dhan", headers=DHAN_HEADERS) as client:
        first = await client.post("/v2/marketfeed/ltp", json={"IDX_I": [13]})
        second = await client.post("/v2/marketfeed/ltp", json={"IDX_I": [13]})
        too_many = await client.post("/v2/marketfeed/ltp", json={"NSE_FNO": list(range(1001))})
    assert first.status_code == 200 and second.status_code == 429
    assert too_many.status_code == 400 and too_many.json()["errorCode"] == "DH-905"


@pytest.mark.integration
@pytest.mark.asyncio
async def test_upstox_more_than_50_requests_per_second_get_429(sim):
    headers = {"Authorization": f"Bearer {DEMO.upstox_token}"}
    async with httpx.AsyncClient(base_url=f"{sim.url}/upstox", headers=headers) as client:
        answers = await asyncio.gather(*(client.get("/v2/user/profile") for _ in range(60)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 50 and statuses.count(429) == 10
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["errors"][0]["errorCode"] == "UDAPI10005"
