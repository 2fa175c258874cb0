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
from brokers.simulator.management.commands.runsim import _start
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
    with an exchange time at or before minute M equal /sim/truth at M."""
    minutes = [START.timestamp() + 60 * n for n in (1, 2, 3)]
    with _simulator("--seed", "51", *FAST) as sim:
        keys = [leg["upstox_key"] for leg in _truth(sim)["legs"]]
        held: dict[str, dict[str, Any]] = {}
        seen: dict[float, dict[str, dict[str, Any]]] = {}
        async with feed_connect(await upstox_uri(sim)) as ws:
            await upstox_sub(ws, keys, "full")

            def frame(data: bytes) -> list[Any]:
                entries = [e for e in upstox_decode(data) if isinstance(e, Tick)]
                latest = max((e.exchange_time for e in entries if e.exchange_time), default=None)
                for minute in minutes:  # a frame past M: what was held before it stood at M
                    if latest is not None and latest.timestamp() > minute and minute not in seen:
                        seen[minute] = {k: dict(v) for k, v in held.items()}
                for e in entries:
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
