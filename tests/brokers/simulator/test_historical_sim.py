"""The simulator's historical endpoints over HTTP: deterministic past trading days, the
brokers' auth and rate limits, bad input refused as the brokers refuse it."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import httpx
import pytest

from brokers.exchange import IST
from brokers.simulator.historical import past_bars
from brokers.simulator.universe import UNDERLYINGS_BY_SYMBOL
from tests.sim_process import DEMO

pytestmark = pytest.mark.integration
NIFTY = UNDERLYINGS_BY_SYMBOL["NIFTY"]


def today() -> date:
    return datetime.now(IST).date()


def rolling_body(**change: object) -> dict[str, object]:
    start = today() - timedelta(days=14)
    return {
        "exchangeSegment": "NSE_FNO",
        "interval": "60",
        "securityId": 13,
        "instrument": "OPTIDX",
        "expiryFlag": "WEEK",
        "expiryCode": 1,
        "strike": "ATM",
        "drvOptionType": "CALL",
        "requiredData": ["close", "iv", "oi", "spot", "strike"],
        "fromDate": start.isoformat(),
        "toDate": today().isoformat(),
        **change,
    }


def dhan_post(sim, body: object, token: str = DEMO.dhan_token) -> httpx.Response:
    return httpx.post(
        f"{sim.url}/dhan/v2/charts/rollingoption",
        json=body,
        headers={"access-token": token, "client-id": DEMO.dhan_client_id},
        timeout=10,
    )


def test_rolling_option_serves_each_past_weekday_s_bars_from_the_seed(sim):
    answer = dhan_post(sim, rolling_body()).json()
    assert answer["data"]["pe"] is None
    ce = answer["data"]["ce"]
    days = sorted({datetime.fromtimestamp(t, IST).date() for t in ce["timestamp"]})
    assert days and all(d.weekday() < 5 and d < today() for d in days)
    expected = [b for d in days for b in past_bars(7, NIFTY, d)]
    assert ce["close"] == [b.ce_close for b in expected]
    assert ce["iv"] == [b.ce_iv for b in expected]
    assert ce["spot"] == [b.spot for b in expected]
    assert ce["strike"] == [float(b.strike) for b in expected]
    assert dhan_post(sim, rolling_body()).json() == answer  # the same past, asked again


def test_rolling_option_refuses_a_bad_token(sim):
    response = dhan_post(sim, rolling_body(), token="SIM-WRONG")
    assert (response.status_code, response.json()["errorCode"]) == (401, "DH-901")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"interval": "2"}, "interval"),
        ({"expiryFlag": "DAY"}, "expiryFlag"),
        ({"strike": "ATM+20"}, "strike"),
        ({"drvOptionType": "BOTH"}, "drvOptionType"),
        ({"requiredData": ["gamma"]}, "requiredData"),
        ({"securityId": 99999}, "securityId"),
        ({"fromDate": "yesterday"}, "YYYY-MM-DD"),
        ({"toDate": "2020-01-01"}, "toDate"),
        ({"securityId": 25}, "no weekly expiries"),  # BANKNIFTY: monthly only
    ],
)
def test_rolling_option_refuses_bad_input_with_dh_905(sim, change, said):
    response = dhan_post(sim, rolling_body(**change))
    assert (response.status_code, response.json()["errorCode"]) == (400, "DH-905")
    assert said in response.json()["errorMessage"]


def test_rolling_option_keeps_the_data_api_rate_limit(sim):
    async def burst() -> list[int]:
        headers = {"access-token": DEMO.dhan_token, "client-id": DEMO.dhan_client_id}
        async with httpx.AsyncClient(base_url=sim.url, headers=headers, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/dhan/v2/charts/rollingoption", json=rolling_body())
                    for _ in range(12)
                )
            )
        return [a.status_code for a in answers]

    statuses = asyncio.run(burst())  # 12 at once: more than DhanHQ's 5 data requests a second
    assert sorted(set(statuses)) == [200, 429]


def test_upstox_candles_are_newest_first_daily_and_need_the_token(sim):
    to, frm = today() - timedelta(days=1), today() - timedelta(days=10)
    path = f"/upstox/v3/historical-candle/NSE_INDEX%7CNifty%2050/days/1/{to}/{frm}"
    headers = {"Authorization": f"Bearer {DEMO.upstox_token}"}
    answer = httpx.get(sim.url + path, headers=headers, timeout=10).json()
    candles = answer["data"]["candles"]
    stamps = [datetime.fromisoformat(c[0]) for c in candles]
    assert stamps == sorted(stamps, reverse=True) and all(s.weekday() < 5 for s in stamps)
    assert candles[0][4] == past_bars(7, NIFTY, stamps[0].date())[-1].spot
    v2 = f"/upstox/v2/historical-candle/NSE_INDEX%7CNifty%2050/day/{to}/{frm}"
    assert httpx.get(sim.url + v2, headers=headers, timeout=10).json() == answer
    refused = httpx.get(sim.url + path, headers={"Authorization": "Bearer x"}, timeout=10)
    assert (refused.status_code, refused.json()["errors"][0]["errorCode"]) == (401, "UDAPI100050")


def test_a_past_holiday_of_the_simulator_has_no_bars(sim):
    body = rolling_body()
    days = {
        datetime.fromtimestamp(t, IST).date()
        for t in dhan_post(sim, body).json()["data"]["ce"]["timestamp"]
    }
    closed = max(days)
    url = f"{sim.url}/sim/history/holidays"
    httpx.post(url, json={closed.isoformat(): "Test"}, timeout=10).raise_for_status()
    try:
        sim.reset()  # fresh rate limits; the history holidays stay
        again = dhan_post(sim, body).json()["data"]["ce"]["timestamp"]
        assert closed not in {datetime.fromtimestamp(t, IST).date() for t in again}
    finally:
        httpx.post(url, json={}, timeout=10).raise_for_status()
    bad = httpx.post(url, json={"not-a-date": "x"}, timeout=10)
    assert bad.status_code == 400
