"""Recording intraday history from the feed's flushes (``chains.feed.history``), with a clock,
a writer and holidays of the test's own: minute boundaries, session hours and holidays, gaps,
the lock, writer failures, and a slow writer that never holds up a flush."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pytest
from channels.layers import get_channel_layer
from django.db import OperationalError

from brokers.exchange import IST, Exchange
from chains import store
from chains.book import ChainBook, FeedBook
from chains.feed.history import HistoryRecorder, SessionCalendar, holidays_of
from chains.feed.publisher import LockLost, Publisher
from chains.feed.status import BACKOFF, LIVE, QUIET, Counters, Health
from chains.feed.worker import FeedWorker
from chains.history.bars import MinuteBar
from chains.leg import LegSpec
from chains.ownership import FeedLock

DAY = date(2026, 12, 7)  # a Monday
EXPIRY = date(2026, 12, 29)
HOLIDAY = date(2026, 12, 8)  # an NSE holiday of the test's calendar (BSE trades)


def at(hh: int, mm: int, ss: float = 0.0, day: date = DAY) -> datetime:
    whole = int(ss)
    return datetime(day.year, day.month, day.day, hh, mm, whole, int((ss - whole) * 1e6), IST)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def __call__(self) -> datetime:
        return self.at


class Writer:
    """Stores batches in memory; fails while ``failing``; waits for ``gate`` when given."""

    def __init__(self, *, failing: bool = False, gate: threading.Event | None = None) -> None:
        self.batches: list[list[MinuteBar]] = []
        self.failing = failing
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, bars: Sequence[MinuteBar]) -> int:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        if self.failing:
            raise OperationalError("connection to server on socket failed: Connection refused")
        self.batches.append(list(bars))
        return len(bars)

    def minutes(self) -> list[tuple[str, str]]:
        return [(b.underlying, f"{b.minute:%H:%M}") for batch in self.batches for b in batch]


def make_chain(underlying: str) -> ChainBook:
    specs = [
        LegSpec(instrument=f"{underlying}{k}{side}", strike=float(k), option_type=side)
        for k in (25_900, 26_000, 26_100)
        for side in ("CE", "PE")
    ]
    return ChainBook(
        underlying=underlying, expiry=EXPIRY, index_instrument=underlying, legs=specs, lot_size=65
    )


def news(book: FeedBook, n: int) -> None:
    """A change on every chain of ``book`` (a tick's worth), observed at ``n``."""
    for chain in book.chains.values():
        chain.apply_spot_value(26_000.0 + n, float(n))
        for i, leg in enumerate(chain.legs.values()):
            chain.apply_fields(
                leg.instrument,
                {"ltp": 100.0 + n + i, "oi": 1_000 * (i + 1) + n, "bid_price": 99.0 + n},
                float(n),
            )


def calendar(nse_holiday: bool = True) -> SessionCalendar:
    days = {Exchange.NSE: {HOLIDAY: "Test holiday"}} if nse_holiday else {}
    session = SessionCalendar(load=holidays_of(days))
    session.refresh(at(10, 0))
    return session


async def held_lock(redis_client, account: str = "main") -> FeedLock:
    lock = FeedLock(redis_client, account)
    assert await lock.acquire()
    return lock


def recorder(lock: FeedLock, clock: Clock, writer: Writer, **kwargs) -> HistoryRecorder:
    health = kwargs.pop("health", None) or Health(state=LIVE)
    return HistoryRecorder(
        account="main",
        lock=lock,
        health=health,
        counters=kwargs.pop("counters", None) or Counters(),
        writer=writer,
        now=clock,
        session=kwargs.pop("session", None) or calendar(),
        **kwargs,
    )


def flush_at(book: FeedBook, rec: HistoryRecorder, clock: Clock, when: datetime, n: int) -> int:
    """Ticks (``n``), then a flush at ``when`` as the publisher does it: book, then recorder."""
    clock.at = when
    news(book, n)
    book.flush(when)
    return rec.record(book)


@pytest.fixture
def book() -> FeedBook:
    return FeedBook([make_chain("NIFTY"), make_chain("SENSEX")])


# --- which minutes, which chains ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_bar_per_chain_at_the_first_flush_of_each_minute(redis_client, book):
    clock, writer = Clock(at(10, 0, 30)), Writer()
    rec = recorder(await held_lock(redis_client), clock, writer)
    assert flush_at(book, rec, clock, at(10, 0, 30), 1) == 0  # 30 s late for 10:00: a gap
    assert flush_at(book, rec, clock, at(10, 0, 59.9), 2) == 0
    assert flush_at(book, rec, clock, at(10, 1, 0.2), 3) == 2  # the first flush of 10:01
    assert flush_at(book, rec, clock, at(10, 1, 0.4), 4) == 0  # not twice
    assert flush_at(book, rec, clock, at(10, 1, 30), 5) == 0
    assert flush_at(book, rec, clock, at(10, 2, 1), 6) == 2
    clock.at = at(10, 1, 59)  # a clock stepping back never records a minute again
    assert rec.record(book) == 0
    assert await rec.write_queued() == 4
    assert writer.minutes() == [
        ("NIFTY", "10:01"), ("SENSEX", "10:01"), ("NIFTY", "10:02"), ("SENSEX", "10:02"),
    ]  # fmt: skip
    bar = writer.batches[0][0]
    assert bar.minute == at(10, 1) and bar.minute.utcoffset() == timedelta(hours=5, minutes=30)
    assert rec.counters.history_bars == 4
    assert rec.counters.history_last_minute == at(10, 2)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("minute", "recorded"),
    [
        (at(9, 14), set()),  # pre-open
        (at(9, 15), {"NIFTY", "SENSEX"}),  # the open
        (at(15, 29), {"NIFTY", "SENSEX"}),
        (at(15, 30), {"NIFTY", "SENSEX"}),  # the close
        (at(15, 31), set()),
        (at(10, 0, day=date(2026, 12, 12)), set()),  # a Saturday
        (at(10, 0, day=HOLIDAY), {"SENSEX"}),  # NSE's holiday: BSE trades
    ],
)
async def test_bars_only_in_the_session_of_each_chains_exchange(
    redis_client, book, minute, recorded
):
    clock, writer = Clock(minute - timedelta(minutes=1)), Writer()
    rec = recorder(await held_lock(redis_client), clock, writer)
    flush_at(book, rec, clock, minute - timedelta(seconds=30), 1)
    flush_at(book, rec, clock, minute + timedelta(seconds=0.25), 2)
    await rec.write_queued()
    assert {u for u, _ in writer.minutes()} == recorded


@pytest.mark.asyncio
async def test_no_bar_while_the_holidays_are_not_known(redis_client, book):
    clock, writer = Clock(at(10, 0, 30)), Writer()
    session = SessionCalendar(load=holidays_of({}))  # never read
    rec = recorder(await held_lock(redis_client), clock, writer, session=session)
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    assert flush_at(book, rec, clock, at(10, 1, 0.1), 2) == 0
    session.refresh(clock.at)
    assert flush_at(book, rec, clock, at(10, 2, 0.1), 3) == 2


@pytest.mark.asyncio
async def test_a_chain_with_no_news_since_the_last_minute_is_a_gap(redis_client, book):
    clock, writer = Clock(at(10, 0, 30)), Writer()
    rec = recorder(await held_lock(redis_client), clock, writer)
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    _nifty, sensex = book.chains.values()
    sensex.apply_spot_value(27_000.0, 2.0)  # only SENSEX hears something
    book.flush(at(10, 0, 50))
    clock.at = at(10, 1, 0.1)
    book.flush(clock.at)
    assert rec.record(book) == 1
    await rec.write_queued()
    assert writer.minutes() == [("SENSEX", "10:01")]


@pytest.mark.asyncio
@pytest.mark.parametrize("state", [BACKOFF, "connecting", "token_wait", "stopping"])
async def test_no_bar_while_the_feed_is_not_connected(redis_client, book, state):
    clock, writer, health = Clock(at(10, 0, 30)), Writer(), Health(state=LIVE)
    rec = recorder(await held_lock(redis_client), clock, writer, health=health)
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    health.set(state)  # REST updates may still reach the book: not the feed's minute
    assert flush_at(book, rec, clock, at(10, 1, 0.1), 2) == 0
    health.set(QUIET)  # connected, a quiet market: recorded when the chain changed
    assert flush_at(book, rec, clock, at(10, 2, 0.1), 3) == 2


@pytest.mark.asyncio
async def test_a_chain_that_is_not_ready_is_a_gap(redis_client):
    book = FeedBook([make_chain("NIFTY")])
    clock, writer = Clock(at(10, 0, 30)), Writer()
    rec = recorder(await held_lock(redis_client), clock, writer)
    chain = book.chains[("NIFTY", EXPIRY)]
    chain.apply_spot_value(26_000.0, 1.0)  # the spot, but no leg priced
    book.flush(at(10, 0, 30))
    chain.apply_spot_value(26_001.0, 2.0)
    clock.at = at(10, 1, 0.1)
    book.flush(clock.at)
    assert rec.record(book) == 0


@pytest.mark.asyncio
async def test_recording_off_records_nothing(redis_client, book):
    clock, writer = Clock(at(10, 0, 30)), Writer()
    rec = recorder(await held_lock(redis_client), clock, writer, enabled=False)
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    assert flush_at(book, rec, clock, at(10, 1, 0.1), 2) == 0
    assert rec.queued == 0


# --- the lock ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_bar_without_the_lock(redis_client, book):
    """The publisher refuses to flush without the lock, so nothing is recorded; and bars
    queued while it was held are not written once it is gone."""
    clock, writer = Clock(at(10, 0, 30)), Writer()
    lock = FeedLock(redis_client, "main")  # not acquired
    rec = recorder(lock, clock, writer)
    publisher = Publisher(
        account="main", redis=redis_client, layer=get_channel_layer(), lock=lock,
        counters=Counters(), history=rec,
    )  # fmt: skip
    clock.at = at(10, 1, 0.1)
    news(book, 1)
    with pytest.raises(LockLost):
        await publisher.flush(book, clock.at)
    assert rec.minute is None and rec.queued == 0

    assert await lock.acquire()
    await publisher.flush(book, clock.at)  # the first flush of 10:01 while held
    news(book, 2)
    clock.at = at(10, 2, 0.1)
    await publisher.flush(book, clock.at)
    assert rec.queued == 2
    await lock.release()
    assert await rec.write_queued() == 0
    assert writer.batches == [] and rec.queued == 0


@pytest.mark.asyncio
class TickingLayer:
    """The channel layer, while ticks keep arriving: each publish of a delta lets the event
    loop apply one more (``news``) before the flush writes its next chain."""

    def __init__(self, book: FeedBook) -> None:
        self.layer, self.book, self.ticks = get_channel_layer(), book, 100

    async def group_send(self, group: str, message: dict) -> None:
        await self.layer.group_send(group, message)
        self.ticks += 1
        news(self.book, self.ticks)


@pytest.mark.asyncio
async def test_the_bars_equal_the_snapshots_the_flush_published(redis_client, book):
    """Ticks applied while a flush writes its chains belong to the next flush: neither the
    snapshots nor the bars of this one hold them."""
    clock, writer = Clock(at(10, 0, 30)), Writer()
    lock = await held_lock(redis_client)
    rec = recorder(lock, clock, writer)
    publisher = Publisher(
        account="main", redis=redis_client, layer=TickingLayer(book), lock=lock,
        counters=Counters(), history=rec,
    )  # fmt: skip
    news(book, 1)
    await publisher.flush(book, clock.at)
    news(book, 2)
    clock.at = at(10, 1, 0.1)
    await publisher.flush(book, clock.at)
    await rec.write_queued()
    assert len(writer.batches[0]) == 2
    for bar in writer.batches[0]:
        snapshot = await store.aread_snapshot(redis_client, bar.underlying, bar.expiry)
        assert snapshot is not None
        assert bar.spot == snapshot["spot"]
        for i, strike in enumerate(bar.legs.strikes):
            for side in ("CE", "PE"):
                leg = snapshot["strikes"][f"{strike:g}"][side]
                columns = bar.legs.side(side)
                got = {name: getattr(columns, name)[i] for name in ("ltp", "oi", "bid", "iv")}
                assert got == {name: leg[name] for name in got}


# --- the writer --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_write_is_counted_shown_and_its_minutes_stay_gaps(
    redis_client, book, caplog
):
    clock, writer, counters = Clock(at(10, 0, 30)), Writer(failing=True), Counters()
    rec = recorder(await held_lock(redis_client), clock, writer, counters=counters)
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    flush_at(book, rec, clock, at(10, 1, 0.1), 2)
    assert await rec.write_queued() == 0
    assert counters.history_errors == 1
    assert "10:01 minute bars failed (OperationalError" in counters.history_last_error
    assert "DATABASE_URL" in counters.history_last_error
    assert any(r.exc_info for r in caplog.records if "History of main" in r.getMessage())

    writer.failing = False  # the database is back: the failed minute is not written later
    flush_at(book, rec, clock, at(10, 2, 0.1), 3)
    assert await rec.write_queued() == 2
    assert writer.minutes() == [("NIFTY", "10:02"), ("SENSEX", "10:02")]
    assert counters.history_last_minute == at(10, 2) and counters.history_bars == 2

    worker = FeedWorker("main", channel_layer=get_channel_layer(), redis=redis_client)
    worker.counters = worker.history.counters = counters
    status = worker.status()
    assert status["history_recording"] is True
    assert (status["history_bars"], status["history_errors"]) == (2, 1)
    assert status["history_last_error"] == counters.history_last_error
    assert status["history_last_minute"] == at(10, 2).isoformat()


@pytest.mark.asyncio
async def test_a_slow_writer_never_holds_up_a_flush(redis_client, book):
    """The writer task stores in a thread: while it is stuck, flushes go on, minutes queue up
    to the limit, the next is dropped and counted, and once it is unstuck the queued minutes
    are written together."""
    gate = threading.Event()
    clock, writer, counters = Clock(at(10, 0, 30)), Writer(gate=gate), Counters()
    rec = recorder(await held_lock(redis_client), clock, writer, counters=counters,
                   queue_minutes=2)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(rec.run(stop))
    try:
        flush_at(book, rec, clock, at(10, 0, 30), 0)
        flush_at(book, rec, clock, at(10, 1, 0.1), 1)
        await asyncio.to_thread(writer.entered.wait, 30)  # 10:01 is being written: stuck
        flushes = 0
        for minute in range(2, 5):  # 10:02, 10:03 queue; 10:04 finds the queue full
            for second in range(0, 60, 5):
                flush_at(book, rec, clock, at(10, minute, second + 0.1), minute * 100 + second)
                flushes += 1
                await asyncio.sleep(0)  # the event loop runs on: other tasks take turns
        assert flushes == 36 and rec.queued == 2 and writer.batches == []
        assert counters.history_errors == 1
        assert "10:04 bars were dropped" in counters.history_last_error
        gate.set()
        async with asyncio.timeout(30):
            while counters.history_bars < 6:
                await asyncio.sleep(0.01)
    finally:
        gate.set()
        stop.set()
        await task
    assert [len(b) for b in writer.batches] == [2, 4]  # 10:01, then 10:02 and 10:03 together
    assert [("NIFTY", "10:04"), ("SENSEX", "10:04")] not in writer.minutes()
    assert counters.history_last_minute == at(10, 3)


@pytest.mark.asyncio
async def test_the_writer_task_writes_what_is_queued_when_stopped(redis_client, book):
    clock, writer = Clock(at(10, 0, 30)), Writer()
    rec = recorder(await held_lock(redis_client), clock, writer)
    stop = asyncio.Event()
    stop.set()
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    flush_at(book, rec, clock, at(10, 1, 0.1), 2)
    await rec.run(stop)
    assert writer.minutes() == [("NIFTY", "10:01"), ("SENSEX", "10:01")]


@pytest.mark.asyncio
async def test_a_holiday_table_that_cannot_be_read_is_counted_and_records_nothing(
    redis_client, book
):
    def broken(exchange, years):
        raise OperationalError("the database is down")

    clock, writer, counters = Clock(at(10, 0, 30)), Writer(), Counters()
    session = SessionCalendar(load=broken)
    rec = recorder(await held_lock(redis_client), clock, writer, counters=counters,
                   session=session)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(rec.run(stop))  # its first turn reads the holidays
    try:
        async with asyncio.timeout(30):
            while not counters.history_errors:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
    assert counters.history_errors == 1
    assert "Reading the exchange holidays failed" in counters.history_last_error
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    assert flush_at(book, rec, clock, at(10, 1, 0.1), 2) == 0
