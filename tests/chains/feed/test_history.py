"""Recording intraday history at exchange time (``chains.feed.history``), with ticks stamped
by the test, a writer and holidays of the test's own: minute boundaries crossed by exchange
timestamps, session hours and holidays, gaps (a new connection, a silent feed, no news), the
quiet-market judgement at a flush, the lock, writer failures, and a slow writer that never
holds up the feed."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
from channels.layers import get_channel_layer
from django.db import OperationalError

from brokers.exchange import IST, Exchange
from brokers.ticks import Tick
from chains import black76
from chains.analytics import years_to_expiry
from chains.book import ChainBook, FeedBook
from chains.feed.history import HistoryRecorder, SessionCalendar, holidays_of
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


def news(book: FeedBook, n: int, when: datetime | None = None) -> None:
    """A change on every chain of ``book`` (a tick's worth), observed at ``n`` and stamped
    ``when`` (exchange time; None: unstamped)."""
    stamp = None if when is None else when.astimezone(UTC)
    for chain in book.chains.values():
        book.apply(Tick("test", "IDX", chain.index_instrument, stamp, ltp=26_000.0 + n), float(n))
        for i, leg in enumerate(chain.legs.values()):
            tick = Tick(
                "test", "FNO", leg.instrument, stamp, ltp=100.0 + n + i,
                oi=1_000 * (i + 1) + n, bid_price=99.0 + n,
            )  # fmt: skip
            book.apply(tick, float(n))


def cross(book: FeedBook, rec: HistoryRecorder, when: datetime, only: str | None = None) -> int:
    """A tick of each chain's index (or of ``only``'s) stamped ``when``, through the exchange
    clocks as the worker passes it (before applying it). Returns the bars queued."""
    queued = 0
    for chain in book.chains.values():
        if only is None or chain.underlying == only:
            clock = rec.passes(chain.index_instrument, when.astimezone(UTC))
            if clock is not None:
                queued += rec.cross(clock, when.astimezone(UTC))
    return queued


STARTED: weakref.WeakSet[HistoryRecorder] = weakref.WeakSet()


def start(book: FeedBook, rec: HistoryRecorder, when: datetime) -> None:
    """Follow ``book`` as a worker does, with the feed running since well before ``when``:
    the clocks set and the first boundary after the connection opened (a gap) passed."""
    STARTED.add(rec)
    rec.follow(book)
    cross(book, rec, minute_start(when) - timedelta(seconds=40))
    cross(book, rec, minute_start(when) + timedelta(seconds=0.01))


def minute_start(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


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
    counters = kwargs.pop("counters", None) or Counters()
    counters.connected_since = 1.0  # one connection throughout
    return HistoryRecorder(
        account="main",
        lock=lock,
        health=health,
        counters=counters,
        writer=writer,
        now=clock,
        session=kwargs.pop("session", None) or calendar(),
        **kwargs,
    )


def flush_at(
    book: FeedBook, rec: HistoryRecorder, clock: Clock, when: datetime, n: int, *, live=True
) -> int:
    """Ticks (``n``) stamped ``when`` through the exchange clocks as the worker applies them,
    then a flush as the publisher does it: book, then recorder. Returns the bars queued.
    ``live``: the feed also delivered an unchanged index tick a second before ``when`` (it
    was not silent)."""
    if rec not in STARTED:
        start(book, rec, when)
    clock.at = when
    for chain in book.chains.values() if live else ():
        if chain.spot is not None:
            stamp = (when - timedelta(seconds=1)).astimezone(UTC)
            book.apply(Tick("test", "IDX", chain.index_instrument, stamp, ltp=chain.spot), n - 0.5)
    queued = cross(book, rec, when)
    news(book, n, when)
    book.flush(when)
    return queued + rec.at_flush()


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
    # A tick stamped before the boundary judged last never records a minute again.
    assert flush_at(book, rec, clock, at(10, 1, 59), 7) == 0
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
    flush_at(book, rec, clock, at(10, 0, 50), 1)
    assert cross(book, rec, at(10, 1, 0.1)) == 2
    nifty, sensex = book.chains.values()
    stamp = at(10, 1, 50).astimezone(UTC)
    # NIFTY's index ticks again, unchanged (its exchange is not silent); only SENSEX changes.
    book.apply(Tick("test", "IDX", nifty.index_instrument, stamp, ltp=nifty.spot), 3.0)
    book.apply(Tick("test", "IDX", sensex.index_instrument, stamp, ltp=27_000.0), 3.0)
    book.flush(at(10, 1, 50))
    assert cross(book, rec, at(10, 2, 0.1)) == 1
    await rec.write_queued()
    assert writer.minutes() == [("NIFTY", "10:01"), ("SENSEX", "10:01"), ("SENSEX", "10:02")]


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
    start(book, rec, at(10, 0, 30))
    for n, when in enumerate((at(10, 0, 30), at(10, 0, 50)), 1):  # the spot, but no leg priced
        book.apply(Tick("test", "IDX", "NIFTY", when.astimezone(UTC), ltp=26_000.0 + n), n)
        book.flush(when)
    assert cross(book, rec, at(10, 1, 0.1)) == 0
    assert rec.minute == at(10, 1)


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
    """No bar is taken while the lock is not held, and bars queued while it was held are not
    written once it is gone."""
    clock, writer = Clock(at(10, 0, 30)), Writer()
    lock = FeedLock(redis_client, "main")  # not acquired
    rec = recorder(lock, clock, writer)
    assert flush_at(book, rec, clock, at(10, 0, 30), 1) == 0
    assert flush_at(book, rec, clock, at(10, 1, 0.1), 2) == 0
    assert rec.minute == at(10, 1) and rec.queued == 0
    assert await lock.acquire()
    assert flush_at(book, rec, clock, at(10, 2, 0.1), 3) == 2
    await lock.release()
    assert await rec.write_queued() == 0
    assert writer.batches == [] and rec.queued == 0


# --- the bar of a minute -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_bar_of_a_minute_holds_what_was_stamped_before_it_with_analytics_then(
    redis_client, book
):
    """Taken when the first tick stamped at M:00 arrives, before it is applied, whatever was
    flushed: the ticks stamped before M:00, IV and delta computed at M:00 on the chain's
    parity forward, not at the wall clock's time."""
    clock, writer = Clock(at(19, 0)), Writer()  # the wall clock is hours away
    rec = recorder(await held_lock(redis_client), clock, writer)
    flush_at(book, rec, clock, at(10, 0, 30), 1)
    news(book, 2, at(10, 0, 59.9))  # not flushed yet
    assert cross(book, rec, at(10, 1, 0)) == 2  # stamped 10:01:00: applied after the bars
    news(book, 3, at(10, 1, 0))
    await rec.write_queued()
    years = years_to_expiry(EXPIRY, at(10, 1))
    for bar in writer.batches[0]:
        assert bar.minute == at(10, 1) and bar.spot == 26_002.0
        assert bar.forward is not None
        for i, side in enumerate(s for _ in bar.legs.strikes for s in ("CE", "PE")):
            k = i // 2
            column = bar.legs.side(side)
            assert column.ltp[k] == 102.0 + i and column.oi[k] == 1_000 * (i + 1) + 2
            solved = black76.implied_vol_and_greeks(
                call=side == "CE", premium=102.0 + i, forward=bar.forward,
                strike=bar.legs.strikes[k], years=years, rate=0.0, guess=None,
            )  # fmt: skip
            assert solved is not None
            assert column.iv[k] == pytest.approx(solved[0], abs=1e-6)
            assert column.delta[k] == pytest.approx(solved[1][0], abs=1e-4)


@pytest.mark.asyncio
async def test_the_first_boundary_after_a_connection_opens_is_a_gap(redis_client, book):
    clock, writer, counters = Clock(at(10, 0, 30)), Writer(), Counters()
    rec = recorder(await held_lock(redis_client), clock, writer, counters=counters)
    rec.follow(book)
    STARTED.add(rec)
    assert flush_at(book, rec, clock, at(10, 0, 30), 1) == 0  # the first tick sets the clock
    assert flush_at(book, rec, clock, at(10, 1, 0.1), 2) == 0  # the first boundary: a gap
    assert flush_at(book, rec, clock, at(10, 2, 0.1), 3) == 2
    counters.connected_since = 2.0  # the feed reconnected
    assert flush_at(book, rec, clock, at(10, 3, 0.1), 4) == 0
    assert flush_at(book, rec, clock, at(10, 4, 0.1), 5) == 2


@pytest.mark.asyncio
async def test_a_silent_feed_misses_its_minutes_and_a_tick_jumping_minutes_leaves_gaps(
    redis_client, book
):
    clock, writer = Clock(at(10, 0, 30)), Writer()
    rec = recorder(await held_lock(redis_client), clock, writer)
    flush_at(book, rec, clock, at(10, 0, 20), 1, live=False)  # silent 40 s before 10:01
    assert flush_at(book, rec, clock, at(10, 1, 0.1), 2, live=False) == 0
    flush_at(book, rec, clock, at(10, 1, 45), 3)
    assert flush_at(book, rec, clock, at(10, 2, 31), 4, live=False) == 0  # 10:02 crossed 31 s late
    flush_at(book, rec, clock, at(10, 2, 45), 5)
    assert flush_at(book, rec, clock, at(10, 5, 0.1), 6, live=False) == 0  # 10:03–10:05 jumped over
    flush_at(book, rec, clock, at(10, 5, 45), 7)
    assert flush_at(book, rec, clock, at(10, 6, 0.1), 8) == 2
    await rec.write_queued()
    assert {minute for _, minute in writer.minutes()} == {"10:06"}


@pytest.mark.asyncio
async def test_a_boundary_no_tick_crosses_is_judged_at_a_flush_after_the_grace(redis_client, book):
    """A quiet market (the close at 15:30): the exchange clock runs on from its last tick on
    the wall clock, and the boundary is judged at the first flush ``grace`` after it."""
    wall = [1000.0]
    clock, writer = Clock(at(15, 29)), Writer()
    rec = recorder(
        await held_lock(redis_client), clock, writer, monotonic=lambda: wall[0], grace=5.0
    )
    flush_at(book, rec, clock, at(15, 29, 0.5), 1)  # the clock crossed 15:29 at 15:29:00.01
    flush_at(book, rec, clock, at(15, 29, 50), 2)  # the last ticks of the day
    wall[0] += 59.99 + 4.9  # 15:30:04.9 by the clock run on from 15:29:00.01
    assert rec.at_flush() == 0
    wall[0] += 0.2
    assert rec.at_flush() == 2
    assert rec.minute == at(15, 30)
    wall[0] += 3600.0  # no more ticks: a quiet minute has no news, and 15:31 is closed
    assert rec.at_flush() == 0
    await rec.write_queued()
    assert writer.minutes()[-2:] == [("NIFTY", "15:30"), ("SENSEX", "15:30")]


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
        assert counters.history_errors == 1, counters.history_last_error
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
