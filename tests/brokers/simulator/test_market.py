"""The market model and universe (determinism, contract specs, prices on the grid) and the
session: when the simulated exchange trades, pure and over the real simulator's feeds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from brokers.dhan.codec import decode_frame as dhan_decode
from brokers.exchange import OPEN, Phase
from brokers.simulator.market import Market
from brokers.simulator.pricing import grid
from brokers.simulator.session import Session
from brokers.simulator.universe import IST, UNDERLYINGS_BY_SYMBOL, Universe, expiries_for
from brokers.ticks import MarketStatus
from brokers.upstox.codec import FrameKind
from brokers.upstox.codec import decode_frame as upstox_decode
from tests.sim_process import RunningSimulator, start_simulator

from .feedclient import dhan_subscribe, feed_connect, recv, upstox_sub, upstox_uri

NOW = datetime(2026, 1, 7, 10, 0, tzinfo=IST)  # a Wednesday


def _market(seed: int = 3, *, strikes: int = 10) -> Market:
    return Market(
        Universe(NOW, strikes=strikes), seed=seed, start=NOW.timestamp(), step_seconds=0.01
    )


def test_same_seed_gives_the_same_first_ticks_and_another_seed_does_not():
    def key(tick):
        return (tick.instrument.security_id, *tick[1:])

    first, again, other = _market(3).run(2000), _market(3).run(2000), _market(4).run(2000)
    assert [key(t) for t in first] == [key(t) for t in again]
    assert [key(t) for t in first] != [key(t) for t in other]


def test_batching_does_not_change_the_sequence():
    one, two = _market(), _market()
    batched = one.run(300) + one.run(700)
    single = [two.step() for _ in range(1000)]
    assert [(t.instrument.index, t.ltp, t.at) for t in batched] == [
        (t.instrument.index, t.ltp, t.at) for t in single
    ]


def test_expiry_rules_follow_current_contract_specs():
    nifty = expiries_for(UNDERLYINGS_BY_SYMBOL["NIFTY"], NOW)
    assert [d for d, _ in nifty][:4] == [date(2026, 1, 13), date(2026, 1, 20), date(2026, 1, 27),
                                         date(2026, 2, 3)]  # fmt: skip
    assert dict(nifty)[date(2026, 1, 27)] is False  # last Tuesday: the monthly
    banknifty = expiries_for(UNDERLYINGS_BY_SYMBOL["BANKNIFTY"], NOW)
    assert [d for d, _ in banknifty] == [date(2026, 1, 27), date(2026, 2, 24), date(2026, 3, 31)]
    sensex = expiries_for(UNDERLYINGS_BY_SYMBOL["SENSEX"], NOW)
    assert all(d.weekday() == 3 for d, _ in sensex)


def test_todays_expiry_is_listed_until_1530_ist():
    tuesday = datetime(2026, 1, 13, 15, 29, tzinfo=IST)
    spec = UNDERLYINGS_BY_SYMBOL["NIFTY"]
    assert expiries_for(spec, tuesday)[0][0] == date(2026, 1, 13)
    assert expiries_for(spec, tuesday.replace(minute=31))[0][0] == date(2026, 1, 20)


def test_universe_ids_are_unique_and_shared_by_both_brokers():
    universe = Universe(NOW, strikes=5)
    ids = [i.security_id for i in universe.instruments]
    assert len(ids) == len(set(ids))
    for instrument in universe.instruments:
        if instrument.kind == "option":
            assert instrument.upstox_key.split("|")[1] == str(instrument.security_id)
    assert len(universe.chains[("NIFTY", date(2026, 1, 13))]) == 11
    assert universe.indices["SENSEX"].upstox_key == "BSE_INDEX|SENSEX"


def test_ticks_are_on_the_grid_and_books_straddle_the_trade():
    market = _market(strikes=40)
    volumes: dict[int, int] = {}
    for tick in market.run(5000):
        assert tick.ltp == grid(tick.ltp)
        if tick.instrument.kind == "option":
            assert 0.05 <= tick.bid < tick.ask and tick.bid <= tick.ltp <= tick.ask
            assert tick.volume > volumes.get(tick.instrument.index, 0)
            volumes[tick.instrument.index] = tick.volume
            assert 0.02 < tick.iv < 1.5 and tick.oi >= 0


def test_true_price_follows_put_call_parity_on_the_forward():
    market = _market(strikes=5)
    chain = market.universe.chains[("NIFTY", date(2026, 1, 13))]
    strike = sorted(chain)[5]
    call, put = chain[strike]["CE"], chain[strike]["PE"]
    forward, _, _ = market.pricing(call)
    parity = market.true_price(call) - market.true_price(put)
    assert parity == pytest.approx(forward - strike, abs=1e-6)


def test_day_change_is_consistent_with_previous_close():
    market = _market()
    index = market.universe.indices["NIFTY"]
    assert abs(index.ltp / index.prev_close - 1) < 0.05
    assert index.low <= index.ltp <= index.high


def test_step_seconds_must_be_positive():
    with pytest.raises(ValueError, match="step_seconds"):
        Market(Universe(NOW, strikes=1), seed=1, start=NOW.timestamp(), step_seconds=0)


def test_virtual_clock_advances_per_step_and_jumps_forward_only():
    market = _market()
    market.run(100)
    assert market.now() == pytest.approx(NOW.timestamp() + 1.0)
    market.advance_to(NOW.timestamp())
    assert market.now() == pytest.approx(NOW.timestamp() + 1.0)
    market.advance_to(NOW.timestamp() + 60)
    assert datetime.fromtimestamp(market.step().at, UTC) > NOW


# --- the session: when the simulated exchange trades ---------------------------------------

MONDAY_OPEN = datetime(2026, 3, 2, 10, 0, tzinfo=IST)
SATURDAY_NIGHT = datetime(2026, 3, 7, 23, 0, tzinfo=IST)


def test_by_default_the_simulated_market_is_open_at_any_hour():
    session = Session()
    for moment in (MONDAY_OPEN, SATURDAY_NIGHT, MONDAY_OPEN.replace(hour=3)):
        assert session.state(moment.timestamp()) == OPEN
        assert session.upstox_status(moment.timestamp()) == "NORMAL_OPEN"


def test_a_simulated_holiday_closes_its_whole_ist_day():
    session = Session(holidays={date(2026, 3, 2): "Test holiday"})
    midnight = datetime(2026, 3, 2, 0, 0, tzinfo=IST).timestamp()
    assert session.state(midnight).reason == "holiday: Test holiday"
    assert session.state(midnight + 86399.9).phase is Phase.CLOSED
    assert session.state(midnight - 0.1) == OPEN  # Sunday 23:59:59.9 IST: open around the clock
    assert session.state(midnight + 86400) == OPEN
    assert session.upstox_status(midnight) == "NORMAL_CLOSE"


@pytest.mark.parametrize(
    ("moment", "status", "reason"),
    [
        (MONDAY_OPEN.replace(hour=8), "NORMAL_CLOSE", "before open"),
        (MONDAY_OPEN.replace(hour=9, minute=5), "PRE_OPEN_START", "pre-open"),
        (MONDAY_OPEN, "NORMAL_OPEN", ""),
        (MONDAY_OPEN.replace(hour=15, minute=30), "NORMAL_CLOSE", "after close"),
        (SATURDAY_NIGHT.replace(hour=11), "NORMAL_CLOSE", "weekend"),
    ],
)
def test_exchange_hours_follow_the_product_calendar(moment, status, reason):
    session = Session(exchange_hours=True)
    assert session.upstox_status(moment.timestamp()) == status
    assert session.state(moment.timestamp()).reason == reason


def test_the_session_describes_itself_for_sim_state():
    session = Session(exchange_hours=True, holidays={date(2026, 3, 3): "Holi"})
    holi = datetime(2026, 3, 3, 11, 0, tzinfo=IST).timestamp()
    assert session.describe(holi) == {
        "hours": "exchange",
        "phase": "closed",
        "reason": "holiday: Holi",
        "holidays": {"2026-03-03": "Holi"},
    }


# --- the session over the real simulator ---------------------------------------------------

TRANSITION_TIMEOUT = 30.0  # the session changes a few seconds after the start; slack for load


async def _until_state(sim: RunningSimulator, done: Callable[[dict[str, Any]], bool]) -> dict:
    """Poll /sim/state until ``done(state)``; TimeoutError after TRANSITION_TIMEOUT."""

    async def poll() -> dict:
        while not done(state := sim.state(instruments=False)):
            await asyncio.sleep(0.05)
        return state

    return await asyncio.wait_for(poll(), TRANSITION_TIMEOUT)


async def _next_market_info(ws: ClientConnection) -> set[str]:
    """The statuses of the next Upstox market_info frame (other frames are skipped)."""

    async def read() -> set[str]:
        while (frame := upstox_decode(await ws.recv())).kind is not FrameKind.MARKET_INFO:
            pass
        return {e.status for e in frame if isinstance(e, MarketStatus)}

    return await asyncio.wait_for(read(), TRANSITION_TIMEOUT)


async def _next_dhan_status(ws: ClientConnection) -> MarketStatus:
    """The next Dhan market-status packet (other packets are skipped)."""

    async def read() -> MarketStatus:
        while True:
            for event in dhan_decode(await ws.recv()):
                if isinstance(event, MarketStatus):
                    return event

    return await asyncio.wait_for(read(), TRANSITION_TIMEOUT)


@contextmanager
def _simulator(*args: str) -> Iterator[RunningSimulator]:
    sim = start_simulator(*args)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_on_a_simulated_holiday_the_feeds_say_closed_and_nothing_ticks():
    with _simulator("--holiday", "Test Holi") as sim:
        state = sim.state(instruments=False)
        assert state["market"]["status"] == "NORMAL_CLOSE" and state["ticks_per_second"] > 0
        assert state["market"]["session"]["reason"] == "holiday: Test Holi"
        async with feed_connect(await upstox_uri(sim)) as upstox:
            assert await _next_market_info(upstox) == {"NORMAL_CLOSE"}
            await upstox_sub(upstox, ["NSE_INDEX|Nifty 50"], "ltpc")
            snapshot = upstox_decode(await recv(upstox))  # the last known value, as on a holiday
            assert snapshot.kind is FrameKind.SNAPSHOT and len(snapshot) == 1
            # Twenty scheduler beats later — a second of an open market's ticks — nothing moved.
            after = await _until_state(sim, lambda s: s["beats"] >= state["beats"] + 20)
        assert after["steps"] == 0 and after["market"]["status"] == "NORMAL_CLOSE"
        # Clearing the faults goes back to what the session says: still a holiday, not open.
        sim.fault(action="clear")
        assert sim.state(instruments=False)["market"]["status"] == "NORMAL_CLOSE"


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_session_opens_at_0915_ist_on_both_feeds_and_the_market_starts_ticking():
    with _simulator("--exchange-hours", "--start", "2026-03-02T09:14:55+05:30") as sim:
        async with feed_connect(sim.dhan_feed_url()) as dhan:
            await dhan_subscribe(dhan, "ticker", [("IDX_I", 13)])
            async with feed_connect(await upstox_uri(sim)) as upstox:
                if await _next_market_info(upstox) != {"PRE_OPEN_START"}:
                    pytest.skip("09:15 on the simulator's clock passed before the test connected")
                assert sim.state(instruments=False)["steps"] == 0  # pre-open: options wait
                assert await _next_market_info(upstox) == {"NORMAL_OPEN"}
            assert (await _next_dhan_status(dhan)).segment == "IDX_I"
        opened = await _until_state(sim, lambda s: s["steps"] > 0)
        assert opened["market"]["session"] == {
            "hours": "exchange", "phase": "open", "reason": "", "holidays": {}
        }  # fmt: skip


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_session_closes_at_1530_ist_on_both_feeds_and_the_market_stops():
    with _simulator("--exchange-hours", "--start", "2026-03-02T15:29:55+05:30") as sim:
        async with feed_connect(sim.dhan_feed_url()) as dhan:
            await dhan_subscribe(dhan, "ticker", [("IDX_I", 13)])
            async with feed_connect(await upstox_uri(sim)) as upstox:
                if await _next_market_info(upstox) != {"NORMAL_OPEN"}:
                    pytest.skip("15:30 on the simulator's clock passed before the test connected")
                assert await _next_market_info(upstox) == {"NORMAL_CLOSE"}
            assert (await _next_dhan_status(dhan)).segment == "IDX_I"
        closed = sim.state(instruments=False)
        assert closed["market"]["session"]["reason"] == "after close"
        later = await _until_state(sim, lambda s: s["beats"] >= closed["beats"] + 20)
        assert later["steps"] == closed["steps"] > 0
