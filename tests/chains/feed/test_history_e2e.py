"""Recording against the simulator: the real feed worker, a clock of the test's own crossing
minute boundaries, the real history store. Each recorded minute holds what the worker published
at that minute; a minute the feed brought nothing new is a gap."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from brokers.exchange import IST
from chains import store
from chains.feed.worker import FeedWorker
from chains.history.bars import COLUMNS, unpack_legs
from chains.models import HistoryBar
from tests.sim_process import RunningSimulator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

DAY = date(2026, 12, 7)  # a Monday the test calendar trades


def at(hh: int, mm: int, ss: float = 0.0) -> datetime:
    whole = int(ss)
    return datetime(DAY.year, DAY.month, DAY.day, hh, mm, whole, int((ss - whole) * 1e6), IST)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def __call__(self) -> datetime:
        return self.at


async def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Wait (on the event loop) until ``check()`` is truthy; its value. AssertionError naming
    ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not (value := check()):
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None
    return value


def test_recorded_minutes_hold_what_the_feed_published_and_quiet_minutes_are_gaps(
    wired: RunningSimulator,
):
    httpx.post(f"{wired.url}/sim/rate", json={"ticks_per_second": 0}, timeout=10)
    clock = Clock(at(10, 0, 30))
    published: dict[str, dict[str, Any]] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        redis = store.async_client()
        worker = FeedWorker("sim-dhan", channel_layer=get_channel_layer(), redis=redis)
        worker.history.now = clock
        running = asyncio.create_task(worker.run(stop))

        def chain() -> Any:
            return next(iter(worker.book.chains.values())) if worker.book else None

        async def settled() -> None:
            """Every frame the simulator sent has been handled and flushed."""
            async with asyncio.timeout(30):
                while True:
                    state = await asyncio.to_thread(wired.state, instruments=False)
                    (conn,) = state["connections"]["dhan"]
                    if (
                        conn["queued"] == 0
                        and conn["frames_sent"] == worker.counters.frames
                        and not chain().pending
                    ):
                        return
                    assert not running.done(), running
                    await asyncio.sleep(0.05)

        async def minute(mm: int, *, steps: int) -> None:
            before = chain().seq
            for _ in range(20 if steps else 0):  # until a step ticked one of the chain's own
                await asyncio.to_thread(wired.step, steps)
                await settled()
                if chain().seq > before:
                    break
            assert (chain().seq > before) == bool(steps)
            await settled()
            written = worker.counters.history_bars
            clock.at = at(10, mm, 0.3)
            await until(lambda: worker.history.minute == at(10, mm), f"10:{mm:02d} judged")
            if steps:
                await until(lambda: worker.counters.history_bars > written, f"10:{mm:02d} written")
                snap = await store.aread_snapshot(redis, chain().underlying, chain().expiry)
                published[f"10:{mm:02d}"] = snap
            else:
                await until(lambda: worker.history.queued == 0, "nothing queued")

        try:
            await until(lambda: chain() and chain().readiness()[0], "the chain ready", 60)
            await until(lambda: worker.history.minute == at(10, 0), "10:00 judged (too late)")
            await minute(1, steps=30)
            await minute(2, steps=0)  # no tick since 10:01: a gap
            await minute(3, steps=30)
            assert worker.counters.history_errors == 0, worker.counters.history_last_error
            status = worker.status()
            assert status["history_last_minute"] == at(10, 3).isoformat()
        finally:
            stop.set()
            await running
            await redis.aclose()

    async_to_sync(asyncio.wait_for)(scenario(), 120)

    rows = list(HistoryBar.objects.order_by("minute"))
    assert [f"{r.minute.astimezone(IST):%H:%M}" for r in rows] == ["10:01", "10:03"]
    for row in rows:
        snapshot = published[f"{row.minute.astimezone(IST):%H:%M}"]
        assert (row.underlying, row.expiry.isoformat()) == (
            snapshot["underlying"],
            snapshot["expiry"],
        )
        assert row.spot == snapshot["spot"]
        legs = unpack_legs(bytes(row.legs))
        assert len(legs.strikes) == len(snapshot["strikes"])
        for i, strike in enumerate(legs.strikes):
            for side in ("CE", "PE"):
                leg = snapshot["strikes"][f"{strike:g}"][side]
                stored = {name: getattr(legs.side(side), name)[i] for name in COLUMNS}
                assert stored == {name: leg[name] for name in COLUMNS}, (strike, side)
    assert published["10:01"]["seq"] < published["10:03"]["seq"]  # two states of the chain
