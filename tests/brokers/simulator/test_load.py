"""What the simulator offers load tests: packed Dhan packets, a replayed tape, the rate on
command, and per-connection counters of events sent and congestion."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from brokers.dhan.codec import decode_frame as dhan_decode
from brokers.simulator.dhan_feed import _encoded, packets
from brokers.simulator.market import Market
from brokers.simulator.tape import Tape
from brokers.simulator.universe import INDEX, IST, Universe
from brokers.ticks import Tick

from .feedclient import dhan_subscribe, feed_connect, recv

NOW = datetime(2026, 1, 7, 10, 0, tzinfo=IST)


def _market(seed: int = 5) -> Market:
    return Market(Universe(NOW, strikes=10), seed=seed, start=NOW.timestamp(), step_seconds=0.001)


@pytest.mark.parametrize("mode", ["ticker", "quote", "full"])
def test_packed_packets_are_the_checked_encoders_bytes(mode):
    ticks = _market().run(3000)
    assert {t.instrument.kind for t in ticks} == {INDEX, "option"}
    for tick in ticks:
        assert packets(tick, mode) == _encoded(tick, mode)


def test_a_value_the_wire_cannot_carry_is_named_by_the_checked_encoder():
    tick = next(t for t in _market().run(200) if t.instrument.kind != INDEX)
    too_big = tick._replace(ltq=70_000)  # Dhan's LTQ is a uint16
    with pytest.raises(ValueError, match="ltq=70000 does not fit uint16"):
        packets(too_big, "full")


def test_tape_replays_the_models_events_with_fresh_times():
    live, taped = _market(), _market()
    expected = live.run(100)
    tape = Tape(taped, 100)
    assert (taped.steps, taped.now()) == (0, NOW.timestamp())  # recording is not happening
    first = taped.skip(250)
    replayed = tape.take(250, first, taped.step_seconds)
    assert taped.steps == 250 and tape.loops == 2 and tape.position == 50
    assert [t.at for t in replayed] == pytest.approx(
        [NOW.timestamp() + (n + 1) * 0.001 for n in range(250)]
    )
    for n, tick in enumerate(replayed):
        original = expected[n % 100]
        assert tick.instrument.index == original.instrument.index and tick[2:] == original[2:]


def test_step_seconds_change_keeps_the_clock():
    market = _market()
    market.run(10)
    before = market.now()
    market.set_step_seconds(0.5)
    assert market.now() == before
    market.run(2)
    assert market.now() == pytest.approx(before + 1.0)
    with pytest.raises(ValueError, match="step_seconds must be > 0"):
        market.set_step_seconds(0)


# --- over the control API and a real feed connection -----------------------------------------


def _post(sim, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{sim.url}{path}", json=body, timeout=30)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/sim/rate", {"ticks_per_second": -1}), ("/sim/rate", {"ticks_per_second": True}),
     ("/sim/rate", []), ("/sim/tape", {"steps": "many"}), ("/sim/tape", {})],
)  # fmt: skip
@pytest.mark.integration
def test_rate_and_tape_refuse_bad_bodies(sim, path, body):
    response = _post(sim, path, body)
    assert response.status_code == 400 and "send" in response.json()["error"]


@pytest.mark.integration
def test_rate_changes_while_running(sim):
    assert _post(sim, "/sim/rate", {"ticks_per_second": 4000}).status_code == 200
    before = sim.state(instruments=False)
    time.sleep(2.0)
    after = sim.state(instruments=False)
    assert after["ticks_per_second"] == 4000
    assert 2.0 * 3000 < after["steps"] - before["steps"] < 3.0 * 4000


@pytest.mark.integration
@pytest.mark.asyncio
async def test_taped_market_reaches_a_client_with_moving_times_and_counters(sim):
    # 6,000 steps: the NIFTY index is ~0.1 % of the steps among the legs of seven indices
    assert _post(sim, "/sim/tape", {"steps": 6000}).json() == {"ok": True, "steps": 6000}
    nifty = [("IDX_I", 13)]
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "ticker", nifty)
        seen: list[Tick] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len({t.exchange_time for t in seen}) < 3:
            frame = dhan_decode(await recv(ws))
            seen += [e for e in frame if isinstance(e, Tick) and e.exchange_time is not None]
        await asyncio.sleep(0.2)
        state = sim.state(instruments=False)
    times = [t.exchange_time for t in seen]
    assert len(set(times)) >= 3 and times == sorted(times)
    assert abs(times[-1] - datetime.now(UTC)) < timedelta(seconds=30)  # re-stamped: now
    assert state["tape"]["steps"] == 6000
    (conn,) = state["connections"]["dhan"]
    assert conn["events_sent"] >= len(seen) and conn["congested"] == 0


def test_depth_on_the_grid_is_the_rounded_depth():
    from brokers.simulator.market import _depth_rounded

    ticks = _market().run(5000)
    cheap = next(t for t in ticks if t.instrument.kind != INDEX)._replace(bid=0.1, ask=0.2)
    off_grid = cheap._replace(bid=0.123, ask=0.257)
    for tick in [*ticks, cheap, off_grid]:
        lot = tick.instrument.spec.lot_size if tick.instrument.kind != INDEX else 1
        assert Market.depth(tick) == _depth_rounded(tick, lot)
    levels = Market.depth(cheap)
    assert [level[4] for level in levels] == [0.1, 0.05, 0.0, 0.0, 0.0]  # below a tick: empty
    assert levels[2][0] == 0 and levels[2][5] == 0.3
