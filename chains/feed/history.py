"""Recording intraday history: a minute bar per chain per minute, taken from the feed's flushes.

The rule, for minute M (exchange time, IST):

- **When.** M's bar is the chain as the worker publishes it at the first flush at or after
  M:00 — within ``max_lag`` seconds of M:00 (a worker that starts, or an event loop that was
  held up, in the middle of a minute does not pass a later state off as M:00's).
- **Which minutes.** The regular session by the exchange calendar (``brokers.exchange`` with
  the holidays of ``brokers.calendar``, as the repopulate task and the freshness state judge
  it): every M:00 from 09:15 to 15:30 IST on a trading day, 15:30 being the close.
- **Which chains.** Only by the holder of the account's lock (the publisher refuses to flush
  without it), only while the feed is connected (``live`` or ``quiet``), and only for a chain
  that is ready (spot known, half its legs priced) and changed since the previous minute (a
  tick or a REST update reached it). Anything else makes M a gap for that chain: no row.
- **Never blocking the flush.** Bars are built on the event loop at the flush (once a minute,
  from the book as that flush publishes it) and queued (at most ``queue_minutes`` minutes); the
  writer task stores them in batches in a thread. A failed batch is dropped — its minutes are
  gaps, never written later or from other data — and counted with its error
  (``history_errors``, ``history_last_error`` in the feed status), as is a minute dropped by a
  full queue.

The clock (``now``), the writer and the bar builder are parameters: tests drive minute
boundaries with a clock of their own, and the same recorder could follow a simulated exchange
clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from django.db import DatabaseError, close_old_connections

from brokers import calendar
from brokers.exchange import Exchange, Holidays, exchange_for, market_state

from ..book import ChainBook, FeedBook
from ..history.bars import MinuteBar, bar_from_book, minute_of
from ..history.store import history_write
from ..ownership import FeedLock
from .status import LIVE, QUIET, Counters, Health
from .tokens import running, wait_any

logger = logging.getLogger(__name__)

Writer = Callable[[Sequence[MinuteBar]], int]
Builder = Callable[[ChainBook, datetime], MinuteBar]
HolidayLoader = Callable[[Exchange, list[int]], Holidays]

MAX_LAG_SECONDS = 10.0  # a minute's bar is taken no later than this after its M:00
CALENDAR_REFRESH_SECONDS = 60.0  # the holiday table is read again this often (brokers.calendar)
ONE_MINUTE = timedelta(minutes=1)
CONNECTED = frozenset({LIVE, QUIET})


def wall_clock() -> datetime:
    return datetime.now(UTC)


class SessionCalendar:
    """Which minutes are recorded, by the exchange calendar: the holiday table is read off the
    event loop (``refresh``, in a thread) and kept here for the flush path (``records``)."""

    def __init__(self, load: HolidayLoader = calendar.holidays) -> None:
        self._load = load
        self._holidays: dict[Exchange, Holidays] | None = None
        self._years: frozenset[int] = frozenset()

    def refresh(self, now: datetime) -> None:
        """Read the holidays of ``now``'s year (IST) for every exchange. Blocking (database):
        call it in a thread. Raises what the database raises (the old holidays stay)."""
        year = minute_of(now).year
        holidays = {exchange: self._load(exchange, [year]) for exchange in Exchange}
        self._holidays, self._years = holidays, frozenset({year})

    def records(self, underlying: str, minute: datetime) -> bool:
        """True when ``minute`` (IST, second 0) of ``underlying``'s exchange is recorded: the
        session is open at it, or it is the close (open a minute before). False while the
        holidays of its year are not known (never read, or the database failed): no bar is
        taken on a day that might be a holiday."""
        if self._holidays is None or minute.year not in self._years:
            return False  # read again within CALENDAR_REFRESH_SECONDS
        holidays = self._holidays[exchange_for(underlying)]
        return (
            market_state(minute, holidays).is_open
            or market_state(minute - ONE_MINUTE, holidays).is_open
        )


class HistoryRecorder:
    """The minute bars of one feed worker's chains (see the module's docstring).

    ``record`` runs in the flush path (sync, never blocks); ``run`` is the writer task of a
    holding. ``counters`` receives ``history_bars``/``history_errors``/``history_last_error``/
    ``history_last_minute``. ``now`` returns the current time (aware); ``writer`` stores a
    batch in one transaction and returns the rows written (``history.store.history_write``);
    ``build`` takes a chain's bar (``history.bars.bar_from_book``).
    """

    def __init__(
        self,
        *,
        account: str,
        lock: FeedLock,
        health: Health,
        counters: Counters,
        enabled: bool = True,
        writer: Writer = history_write,
        build: Builder = bar_from_book,
        now: Callable[[], datetime] = wall_clock,
        session: SessionCalendar | None = None,
        queue_minutes: int = 30,
        max_lag: float = MAX_LAG_SECONDS,
    ) -> None:
        if queue_minutes < 1:
            raise ValueError(f"queue_minutes must be at least 1, got {queue_minutes}")
        self.account = account
        self.lock = lock
        self.health = health
        self.counters = counters
        self.enabled = enabled
        self.writer = writer
        self.build = build
        self.now = now
        self.session = session or SessionCalendar()
        self.queue_minutes = queue_minutes
        self.max_lag = max_lag
        self.minute: datetime | None = None  # the latest minute boundary judged
        self._seen: dict[tuple[str, date], tuple[str, int]] = {}  # (run, seq) at that boundary
        self._queue: deque[list[MinuteBar]] = deque()
        self._wake = asyncio.Event()
        self._calendar_due = 0.0  # time.monotonic() of the next holiday read
        self._failing = False

    @property
    def queued(self) -> int:
        """Minutes waiting for the writer."""
        return len(self._queue)

    # --- the flush path ------------------------------------------------------------------------

    def record(self, book: FeedBook) -> int:
        """Take the bars of the minute that started, at its first flush. Called by the
        publisher right after each flush of ``book`` while the lock is held, before anything
        awaits: the chains as that flush publishes them. Returns the number of bars queued
        (0 at every other flush). Never blocks and never raises for history's sake."""
        if not self.enabled:
            return 0
        now = self.now()
        minute = minute_of(now)
        if self.minute is not None and minute <= self.minute:
            return 0
        self.minute = minute
        on_time = (now - minute).total_seconds() <= self.max_lag
        connected = self.health.state in CONNECTED
        bars: list[MinuteBar] = []
        for chain in book.chains.values():
            changed = self._changed(chain)
            if not (on_time and connected and changed and chain.readiness()[0]):
                continue
            if not self.session.records(chain.underlying, minute):
                continue
            try:
                bars.append(self.build(chain, minute))
            except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
                # History must never take the live feed down: a bar that cannot be built (a
                # chain the bar code does not expect) is a gap, counted and shown on the status
                # page with its traceback in the log.
                self._failed(
                    f"Taking the {minute:%H:%M} bar of {chain.underlying} {chain.expiry} failed "
                    f"({type(exc).__name__}: {exc}): that minute is a gap; send the runfeed log "
                    "to the developers",
                    exc,
                )
        if bars:
            self._enqueue(bars, minute)
        return len(bars)

    def _changed(self, chain: ChainBook) -> bool:
        """True when ``chain`` was published anew since the previous minute boundary (its
        seq advanced; a new book of a new holding counts from its first flush)."""
        now = (chain.run, chain.seq)
        before = self._seen.get(chain.key)
        self._seen[chain.key] = now
        if before is None or before[0] != chain.run:
            return chain.seq > 0
        return chain.seq > before[1]

    def _enqueue(self, bars: list[MinuteBar], minute: datetime) -> None:
        if len(self._queue) >= self.queue_minutes:
            self._failed(
                f"The {minute:%H:%M} bars were dropped: {len(self._queue)} minutes already wait "
                "for the database, which is slow or down (check DATABASE_URL and the database)",
                None,
            )
            return
        self._queue.append(bars)
        self._wake.set()

    # --- the writer task -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """The writer of a holding: store queued bars in batches in a thread, read the holiday
        table every ``CALENDAR_REFRESH_SECONDS``, until ``stop``; then store what is still
        queued. Database failures are counted, never raised."""
        if not self.enabled:
            await stop.wait()
            return
        while running(stop):
            if time.monotonic() >= self._calendar_due:
                await self._refresh_calendar()
            self._wake.clear()
            if self._queue:
                await self.write_queued()
                continue
            await wait_any(stop, self._wake, max(0.05, self._calendar_due - time.monotonic()))
        if self._queue:
            await self.write_queued()

    async def write_queued(self) -> int:
        """Store every queued minute in one batch; the rows written (0 when the batch failed:
        its minutes are gaps, or when the lock is no longer this worker's: nothing is
        written)."""
        batch = [bar for bars in self._queue for bar in bars]
        self._queue.clear()
        if not batch:
            return 0
        if not self.lock.held():
            logger.warning(
                "%d minute bars of %s not written: the feed lock is no longer this worker's",
                len(batch),
                self.account,
            )
            return 0
        try:
            written = await asyncio.to_thread(self._write_in_thread, batch)
        except (DatabaseError, ValueError) as exc:  # ValueError: a bar the store refuses
            minutes = sorted({bar.minute for bar in batch})
            span = f"{minutes[0]:%H:%M}" + (f"–{minutes[-1]:%H:%M}" if len(minutes) > 1 else "")
            self._failed(
                f"Writing the {span} minute bars failed ({type(exc).__name__}: {exc}): those "
                "minutes are gaps; check that the database answers (DATABASE_URL)",
                exc,
            )
            return 0
        counters = self.counters
        counters.history_bars += written
        latest = max(bar.minute for bar in batch)
        if counters.history_last_minute is None or latest > counters.history_last_minute:
            counters.history_last_minute = latest
        if self._failing:
            self._failing = False
            logger.warning("History of %s is written again", self.account)
        return written

    def _write_in_thread(self, batch: Sequence[MinuteBar]) -> int:
        # As around a request: a connection an outage broke is replaced, not reused.
        close_old_connections()
        try:
            return self.writer(batch)
        finally:
            close_old_connections()

    async def _refresh_calendar(self) -> None:
        self._calendar_due = time.monotonic() + CALENDAR_REFRESH_SECONDS
        try:
            await asyncio.to_thread(self._refresh_in_thread, self.now())
        except DatabaseError as exc:
            self._failed(
                f"Reading the exchange holidays failed ({type(exc).__name__}: {exc}): no minute "
                "is recorded until they are read; check that the database answers (DATABASE_URL)",
                exc,
            )

    def _refresh_in_thread(self, now: datetime) -> None:
        close_old_connections()
        try:
            self.session.refresh(now)
        finally:
            close_old_connections()

    def _failed(self, message: str, exc: BaseException | None) -> None:
        """Count a failure and show it; log the first of a run of failures with its traceback
        (the others as warnings, until a write succeeds)."""
        self.counters.history_errors += 1
        self.counters.history_last_error = message
        if self._failing:
            logger.warning("History of %s: %s", self.account, message)
        else:
            self._failing = True
            logger.error("History of %s: %s", self.account, message, exc_info=exc)


def holidays_of(days: Mapping[Exchange, Holidays]) -> HolidayLoader:
    """A holiday loader answering from ``days`` (the calendar of a test or a simulation)."""
    return lambda exchange, _years: days.get(exchange, {})
