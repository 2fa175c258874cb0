"""The simulated exchange clock over the real simulator: ``--start``/``--date``/``--speed``,
the clock in /sim/state, the chain truth of /sim/truth, and the exchange timestamps on both
feeds and the REST answers (decoded with the product's codecs and clients)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command

from brokers.dhan.codec import decode_frame as dhan_decode
from brokers.simulator.app import Simulator
from brokers.simulator.clock import SimClock
from brokers.simulator.config import SimConfig
from brokers.simulator.management.commands.runsim import _catch_up_to, _start
from brokers.simulator.universe import IST
from brokers.ticks import Tick
from brokers.upstox.codec import decode_frame as upstox_decode
from tests.sim_process import RunningSimulator, start_simulator

from .feedclient import dhan_subscribe, feed_connect, upstox_sub, upstox_uri

START = datetime(2026, 3, 2, 10, 0, tzinfo=IST)  # a Monday, in the session
FAST = ("--start", "10:00", "--date", "2026-03-02", "--speed", "60", "--strikes", "5")
FAST = (*FAST, "--exchange-hours")
WAIT = 120.0  # real seconds a condition may take on a loaded machine (5 s unloaded)


@contextmanager
def _simulator(*args: str) -> Iterator[RunningSimulator]:
    sim = start_simulator(*args)
    try:
        yield sim
    finally:
        sim.stop()


def _truth(sim: RunningSimulator, **query: str) -> dict[str, Any]:
    response = httpx.get(f"{sim.url}/sim/truth", params={"underlying": "NIFTY", **query})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _clock(sim: RunningSimulator) -> float:
    return float(sim.state(instruments=False)["clock"]["epoch"])


def _until_clock(sim: RunningSimulator, at: float) -> float:
    """Poll /sim/state until the simulated time is ``at`` or later; returns it."""
    deadline = time.monotonic() + WAIT
    while (now := _clock(sim)) < at:
        assert time.monotonic() < deadline, f"the simulated clock stayed at {now} (< {at})"
        time.sleep(0.05)
    return now


def _legs(truth: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(leg["strike"], leg["side"]): leg for leg in truth["legs"]}


@pytest.mark.integration
def test_at_speed_60_a_simulated_minute_passes_every_second_and_the_market_moves():
    with _simulator("--seed", "21", *FAST) as sim:
        state = sim.state(instruments=False)
        assert state["clock"]["speed"] == 60
        assert datetime.fromisoformat(state["clock"]["start"]) == START
        assert state["market"]["session"]["phase"] == "open"
        began, real = _clock(sim), time.monotonic()
        _until_clock(sim, began + 300)
        elapsed = time.monotonic() - real
        # Never faster than 60× (5 s for five simulated minutes); far faster than real time.
        assert 4.5 <= elapsed < WAIT
        opening, now = _truth(sim, at="10:00"), _truth(sim)
    assert opening["time"] == START.astimezone(UTC).isoformat(timespec="milliseconds")
    assert datetime.fromisoformat(now["time"]) >= START + (began - START.timestamp() + 300) * (
        datetime.fromtimestamp(1, UTC) - datetime.fromtimestamp(0, UTC)
    )
    before, after = _legs(opening), _legs(now)
    assert sum(leg["volume"] for leg in after.values()) > sum(
        leg["volume"] for leg in before.values()
    )
    assert any(after[key]["oi"] != leg["oi"] for key, leg in before.items())
    assert now["spot"] != opening["spot"]


@pytest.mark.integration
def test_two_simulators_with_the_same_seed_and_start_agree_minute_by_minute():
    with (
        _simulator("--seed", "31", *FAST) as one,
        _simulator("--seed", "31", *FAST) as two,
        _simulator("--seed", "32", *FAST) as other,
    ):
        for sim in (one, two, other):
            _until_clock(sim, START.timestamp() + 200)
        for minute in ("10:01", "10:03"):
            a, b, c = (_truth(sim, at=minute) for sim in (one, two, other))
            assert a == b
            assert a["legs"] != c["legs"]
        bad = httpx.get(f"{one.url}/sim/truth", params={"underlying": "NIFTY", "at": "23:59"})
        assert bad.status_code == 404 and "after the simulated time now" in bad.json()["error"]
        far = one.state(instruments=False)["market"]["expiries"]["NIFTY"][-1]
        kept = httpx.get(f"{one.url}/sim/truth", params={"underlying": "NIFTY", "expiry": far})
        assert kept.status_code == 404 and "not kept" in kept.json()["error"]


async def _read_until(ws: Any, decode: Callable[[bytes], list[Any]], done: Callable[[], bool]):
    async def run() -> None:
        while not done():
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            decode(frame)

    await asyncio.wait_for(run(), WAIT)


@pytest.mark.integration
@pytest.mark.asyncio
async def test_exchange_timestamps_on_the_wire_follow_the_simulated_clock():
    later = START.astimezone(UTC).timestamp() + 120  # two simulated minutes: 2 real seconds
    with _simulator("--seed", "41", *FAST) as sim:
        leg = _truth(sim)["legs"][5]
        dhan: list[Tick] = []
        async with feed_connect(sim.dhan_feed_url()) as ws:
            await dhan_subscribe(ws, "quote", [("IDX_I", 13), ("NSE_FNO", leg["security_id"])])

            def dhan_frame(frame: bytes) -> list[Any]:
                dhan.extend(e for e in dhan_decode(frame) if isinstance(e, Tick))
                return dhan

            await _read_until(
                ws,
                dhan_frame,
                lambda: any(t.exchange_time.timestamp() >= later for t in dhan if t.exchange_time),
            )
        upstox: list[Any] = []
        async with feed_connect(await upstox_uri(sim)) as ws:
            await upstox_sub(ws, ["NSE_INDEX|Nifty 50", leg["upstox_key"]], "full")

            def upstox_frame(frame: bytes) -> list[Any]:
                upstox.append(upstox_decode(frame))
                return upstox

            await _read_until(
                ws,
                upstox_frame,
                lambda: bool(upstox) and upstox[-1].current_ts.timestamp() >= later + 60,
            )
        async with sim.dhan_rest as client:
            quotes = await client.market_quote("quote", {"NSE_FNO": [leg["security_id"]]})
        now = _clock(sim)
    times = [t.exchange_time for t in dhan if t.exchange_time is not None]
    times += [e.exchange_time for f in upstox for e in f if isinstance(e, Tick)]
    times = [t for t in times if t is not None]
    stamps = [f.current_ts for f in upstox if f.current_ts is not None]
    assert times and stamps
    for moment in times + stamps:
        assert START.timestamp() - 60 <= moment.timestamp() <= now  # the simulated day
    # The frames' stamps moved on with the simulated clock (they are not the wall clock).
    assert max(stamps) > min(stamps) and max(times) > min(times)
    traded = quotes[("NSE_FNO", leg["security_id"])].fields["last_trade_time"]
    assert datetime.strptime(traded, "%d/%m/%Y %H:%M:%S").date() == START.date()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--date", "2026-03-02"), "--date needs --start HH:MM"),
        (("--start", "9h15"), "give HH:MM"),
        (("--start", "25:00"), "give HH:MM or HH:MM:SS"),
        (("--start", "2026-03-02T10:00:00"), "with its UTC offset"),
        (("--start", "2026-03-02T10:00:00+05:30", "--date", "2026-03-02"), "--date goes with"),
        (("--speed", "0"), "--speed must be above 0"),
        (("--speed", "100000"), "at most 3600"),
    ],
)
def test_runsim_refuses_a_clock_it_cannot_run_and_says_what_it_takes(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("runsim", "--port", "0", *args)


def test_start_hh_mm_is_ist_on_the_given_day():
    assert _start("09:15", date(2026, 3, 2)) == datetime(2026, 3, 2, 9, 15, tzinfo=IST)
    assert _start("15:29:55", date(2026, 3, 2)) == datetime(2026, 3, 2, 15, 29, 55, tzinfo=IST)
    assert _start(None, None) is None


@pytest.mark.integration
@pytest.mark.asyncio
async def test_what_the_upstox_feed_delivered_up_to_a_minute_is_the_truth_at_that_minute():
    """The comparison a history recorder makes: per leg, the last values the feed brought
    with an exchange time before minute M equal /sim/truth at M. A frame may hold entries
    from both sides of M, in no order (as Upstox's do): they are taken in time order."""
    minutes = [START.timestamp() + 60 * n for n in (1, 2, 3)]
    with _simulator("--seed", "51", *FAST) as sim:
        keys = [leg["upstox_key"] for leg in _truth(sim)["legs"]]
        held: dict[str, dict[str, Any]] = {}
        seen: dict[float, dict[str, dict[str, Any]]] = {}
        async with feed_connect(await upstox_uri(sim)) as ws:
            await upstox_sub(ws, keys, "full")

            def frame(data: bytes) -> list[Any]:
                entries = [e for e in upstox_decode(data) if isinstance(e, Tick)]
                for e in sorted(entries, key=lambda e: e.exchange_time or START):
                    stamp = e.exchange_time
                    for minute in minutes:  # the first entry at M or later: what stood at M
                        if stamp is not None and stamp.timestamp() >= minute and minute not in seen:
                            seen[minute] = {k: dict(v) for k, v in held.items()}
                    fields = {"ltp": e.ltp, "volume": e.volume, "oi": e.oi}
                    held.setdefault(e.instrument, {}).update(
                        {k: v for k, v in fields.items() if v is not None}
                    )
                return entries

            await _read_until(ws, frame, lambda: len(seen) == len(minutes))
        truths = {m: _truth(sim, at=datetime.fromtimestamp(m, IST).isoformat()) for m in minutes}
    for minute, truth in truths.items():
        expected = {
            leg["upstox_key"]: {"ltp": leg["ltp"], "volume": leg["volume"], "oi": leg["oi"]}
            for leg in truth["legs"]
        }
        assert seen[minute] == expected, datetime.fromtimestamp(minute, IST)


# --- the catch-up: fast until a simulated time, real time from then on ---------------------


class _Real:
    """A real-time clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


OPEN = datetime(2026, 3, 2, 9, 15, tzinfo=IST)
CAUGHT_UP = datetime(2026, 3, 2, 10, 30, tzinfo=IST)


def test_a_catch_up_runs_at_speed_until_its_time_then_at_real_time():
    real = _Real()
    clock = SimClock(OPEN.timestamp(), speed=60, catch_up_to=CAUGHT_UP.timestamp(), real=real)
    assert clock.catching_up and clock.speed == 60
    real.now += 74  # 74 simulated minutes: 10:29
    assert clock.now() == CAUGHT_UP.timestamp() - 60 and clock.catching_up
    real.now += 1.5  # one more simulated minute at 60x reaches 10:30, then 0.5 s at 1x
    assert clock.now() == CAUGHT_UP.timestamp() + 0.5
    assert not clock.catching_up and clock.speed == 1.0
    real.now += 100
    assert clock.now() == CAUGHT_UP.timestamp() + 100.5
    assert clock.start == OPEN.timestamp()  # where the day began, for /sim/state


def test_a_clock_held_back_while_catching_up_reaches_its_time_later_and_counts_it():
    real = _Real()
    clock = SimClock(OPEN.timestamp(), speed=60, catch_up_to=CAUGHT_UP.timestamp(), real=real)
    real.now += 10
    clock.hold(OPEN.timestamp() + 300)  # the market stood at 09:20 instead of 09:25
    assert clock.held == 300
    real.now += 70  # 70 simulated minutes more: 10:30 exactly, not 10:35
    assert clock.now() == CAUGHT_UP.timestamp() and clock.catching_up is False
    real.now += 2
    assert clock.now() == CAUGHT_UP.timestamp() + 2
    clock.hold(CAUGHT_UP.timestamp() + 1)  # held back after the catch-up: still real time
    real.now += 3
    assert clock.now() == CAUGHT_UP.timestamp() + 4 and clock.held == 301


def test_a_clock_without_catch_up_never_changes_speed():
    real = _Real()
    clock = SimClock(OPEN.timestamp(), speed=60, real=real)
    real.now += 3600
    assert clock.now() == OPEN.timestamp() + 60 * 3600 and clock.speed == 60
    assert not clock.catching_up


def test_a_catch_up_before_the_start_is_refused():
    with pytest.raises(ValueError, match="before start"):
        SimClock(CAUGHT_UP.timestamp(), speed=60, catch_up_to=OPEN.timestamp())


def _scheduler(speed: float, catch_up: datetime | None) -> tuple[Simulator, _Real]:
    config = SimConfig(
        seed=9,
        start=OPEN,
        speed=speed,
        catch_up_to=catch_up,
        strikes=3,
        exchange_hours=True,
        ticks_per_second=200,
    )
    sim = Simulator(config)
    real = _Real()
    sim.clock = SimClock(
        OPEN.timestamp(),
        speed=speed,
        catch_up_to=None if catch_up is None else catch_up.timestamp(),
        real=real,
    )
    return sim, real


def test_the_market_steps_at_real_time_from_the_exact_instant_of_the_catch_up():
    caught = datetime(2026, 3, 2, 9, 20, tzinfo=IST)
    sim, real = _scheduler(60, caught)
    fast = sim.market.step_seconds
    assert fast == pytest.approx(60 / 200)
    for _ in range(99):  # 4.95 real seconds: 09:19:57, still catching up
        real.now += 0.05
        sim.tick_once(real.now)
    assert sim.market.step_seconds == fast and sim.market.now() < caught.timestamp()
    for _ in range(40):  # past 09:20: the rest at real time
        real.now += 0.05
        sim.tick_once(real.now)
    assert sim.market.step_seconds == pytest.approx(1 / 200)
    assert sim.clock.now() == pytest.approx(caught.timestamp() + 1.95)
    assert caught.timestamp() < sim.market.now() <= sim.clock.now()
    state = sim._clock_state()
    assert state["speed"] == 1.0 and state["catching_up"] is False
    assert datetime.fromisoformat(state["catch_up_to"]) == caught


def test_the_market_after_a_catch_up_does_not_depend_on_the_beats():
    caught = datetime(2026, 3, 2, 9, 18, tzinfo=IST)
    one, real_one = _scheduler(60, caught)
    two, real_two = _scheduler(60, caught)
    # 5 real seconds each (beats exact in binary, each within a beat's budget): 3 simulated
    # minutes fast, then 2 s of real time.
    for _ in range(80):
        real_one.now += 0.0625
        one.tick_once(real_one.now)
    for seconds in [0.0625, 0.3125, 0.125, 0.25] * 6 + [0.25, 0.25]:
        real_two.now += seconds
        two.tick_once(real_two.now)
    expiry = one.universe.expiries["NIFTY"][0]
    for minute in (1, 2, 3):
        at = OPEN.timestamp() + 60 * minute
        assert one.truth.chain("NIFTY", expiry, at) == two.truth.chain("NIFTY", expiry, at)
    assert one.market.now() == two.market.now() and one.market.steps == two.market.steps
    assert [i.ltp for i in one.universe.instruments] == [i.ltp for i in two.universe.instruments]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--catch-up-to", "11:00", "--speed", "60"), "--catch-up-to needs --start"),
        (("--start", "09:15", "--catch-up-to", "9h", "--speed", "60"), "give HH:MM"),
        (("--start", "09:15", "--catch-up-to", "11:00+05:30", "--speed", "60"), "give HH:MM"),
        (("--start", "09:15", "--catch-up-to", "09:00", "--speed", "60"), "not after the start"),
        (("--start", "09:15", "--catch-up-to", "09:15", "--speed", "60"), "not after the start"),
        (("--start", "09:15", "--catch-up-to", "11:00"), "needs --speed above 1"),
        (("--start", "09:15", "--catch-up-to", "11:00", "--speed", "0.5"), "--speed above 1"),
    ],
)
def test_runsim_refuses_a_catch_up_it_cannot_run_and_says_what_it_takes(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("runsim", "--port", "0", *args)


def test_catch_up_to_is_ist_on_the_start_day():
    start = datetime(2026, 3, 2, 9, 15, tzinfo=IST)
    assert _catch_up_to("10:30", start, 60) == CAUGHT_UP
    assert _catch_up_to(None, start, 60) is None


def test_a_waiting_clock_stands_at_its_start_until_it_begins():
    real = _Real()
    clock = SimClock(
        OPEN.timestamp(), speed=60, catch_up_to=CAUGHT_UP.timestamp(), waiting=True, real=real
    )
    real.now += 30
    assert clock.now() == OPEN.timestamp() and clock.waiting
    clock.hold(OPEN.timestamp())  # the market stands there too: nothing held
    clock.begin()
    real.now += 2
    assert clock.now() == OPEN.timestamp() + 120 and clock.held == 0
    clock.begin()  # a running clock goes on
    assert clock.now() == OPEN.timestamp() + 120


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_simulator_clock_waiting_for_a_feed_starts_when_one_subscribes():
    start = START.timestamp()
    with _simulator("--seed", "61", *FAST, "--clock-waits-for-feed") as sim:
        leg = _truth(sim)["legs"][0]
        async with sim.dhan_rest as client:  # REST meanwhile: the market at its start
            await client.market_quote("quote", {"NSE_FNO": [leg["security_id"]]})
        state = sim.state(instruments=False)["clock"]
        assert state["waiting"] is True and state["epoch"] == start
        async with feed_connect(sim.dhan_feed_url()) as ws:
            await dhan_subscribe(ws, "quote", [("IDX_I", 13)])
            moved = _until_clock(sim, start + 60)
        state = sim.state(instruments=False)["clock"]
    assert state["waiting"] is False and moved >= start + 60


@pytest.mark.integration
def test_a_simulator_catching_up_says_so_then_runs_at_real_time():
    args = ("--start", "10:00", "--date", "2026-03-02", "--speed", "60", "--strikes", "5")
    with _simulator("--seed", "71", *args, "--catch-up-to", "10:02", "--exchange-hours") as sim:
        state = sim.state(instruments=False)["clock"]
        assert state["catching_up"] is True and state["speed"] == 60
        assert datetime.fromisoformat(state["catch_up_to"]) == START.replace(minute=2)
        _until_clock(sim, START.timestamp() + 120)
        state = sim.state(instruments=False)["clock"]
        minute = _truth(sim, at="10:02")
    assert state["catching_up"] is False and state["speed"] == 1.0
    assert state["epoch"] < START.timestamp() + 120 + WAIT  # real time now, not 60x
    assert minute["time"] == START.replace(minute=2).astimezone(UTC).isoformat(
        timespec="milliseconds"
    )
