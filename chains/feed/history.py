"""Recording intraday history: a minute bar per chain per minute, at exchange time.

The rule, for minute M (exchange time, IST):

- **The clock.** Each exchange (NSE, BSE) has a clock of its own, read from the exchange
  timestamps of what the feed decodes (DhanHQ's LTT in whole seconds, Upstox's LTT in
  milliseconds), never from the local wall clock: with a simulator at ``--speed 60`` a
  simulated minute passes every real second and the bars follow it.
- **When.** M's bar is the chain as it stood at M:00 exchange time: every tick stamped before
  M:00, none stamped at M:00 or after. It is taken when the first tick of the chain's exchange
  stamped at or after M:00 is about to be applied (``crossing``; the worker applies the rest
  of that frame stamped before M:00 first), so the book then holds exactly what was stamped
  before M:00. (An event at M:00:00.4 is stamped M:00:00 by DhanHQ: "before M:00" is the only
  rule whole-second stamps can keep.) When no tick crosses M:00 — a quiet market, the close at
  15:30 — M is judged at a flush once ``grace`` seconds have passed on the wall clock beyond
  when the exchange clock, run on from its last tick, reached M:00 (``due``).
- **Which minutes.** The regular session by the exchange calendar (``brokers.exchange`` with
  the holidays of ``brokers.calendar``), judged at M on the exchange clock: every M:00 from
  09:15 to 15:30 IST on a trading day, 15:30 being the close (``session_calendar``).
- **Gaps.** M is a gap (no row) for every chain of the exchange unless the feed demonstrably
  held the market around M:00: connected (``live`` or ``quiet``) on the same connection as at
  the previous boundary of that exchange (the first boundary after a connection opens is a
  gap: its subscription snapshots may still be arriving), with a tick stamped within
  ``silence`` seconds before M:00 and, when a tick crosses M, that tick stamped within
  ``silence`` seconds after it (a feed that delivered nothing for longer — a stall, an outage
  — missed what happened meanwhile). Boundaries a single tick jumps over are gaps. A chain is
  also a gap when it is not ready (spot known, half its legs priced) or did not change since
  the previous boundary (no tick or REST update reached it).
- **Only the holder.** Bars are queued only while this worker holds the account's lock, and
  written only while it still does.
- **Never blocking the feed.** At the crossing only the chain's state is copied (``capture``,
  a tuple per leg); the bar is built from the copy (its analytics computed at M:00) and stored
  in batches by the writer task, in a thread, at most ``queue_minutes`` minutes queued. A
  failed batch is dropped — its minutes are gaps, never written later or from other data —
  and counted with its error (``history_errors``, ``history_last_error`` in the feed status),
  as is a minute dropped by a full queue. A bar the code cannot build is a bug: it fails the
  writer task, which the worker's supervisor shows (state ``error``, traceback in the log)
  and restarts.

The wall clocks (``now``, ``monotonic``), the writer and the bar builder are parameters, for
tests.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

from django.db import DatabaseError, close_old_connections

from brokers.exchange import IST, Exchange, exchange_for

from ..book import ChainBook, FeedBook
from ..history.bars import MinuteBar, minute_of
from ..history.store import history_write
from ..ownership import FeedLock
from .capture import CapturedChain, bar_from_captured, capture
from .session_calendar import SessionCalendar
from .session_calendar import holidays_of as holidays_of
from .status import LIVE, QUIET, Counters, Health
from .tokens import running, wait_any

logger = logging.getLogger(__name__)

Writer = Callable[[Sequence[MinuteBar]], int]
Builder = Callable[[CapturedChain, datetime], MinuteBar]

GRACE_SECONDS = 10.0  # a boundary no tick crossed is judged this long after its M:00 (wall)
SILENCE_SECONDS = 30.0  # a feed silent for longer around M:00 (exchange time) missed M
CALENDAR_REFRESH_SECONDS = 60.0  # the holiday table is read again this often (brokers.calendar)
ONE_MINUTE = timedelta(minutes=1)
CONNECTED = frozenset({LIVE, QUIET})
NEVER = datetime.max.replace(tzinfo=UTC)
AT_ONCE = datetime.min.replace(tzinfo=UTC)


def wall_clock() -> datetime:
    return datetime.now(UTC)


class ExchangeClock:
    """One exchange's time as the feed tells it, and the next boundary to judge."""

    __slots__ = ("boundary", "chains", "connection", "due", "exchange")

    def __init__(self, exchange: Exchange, chains: list[ChainBook]) -> None:
        self.exchange = exchange
        self.chains = chains
        self.boundary: datetime | None = None  # the next M:00 to judge (UTC); None: no tick yet
        self.due = math.inf  # time.monotonic() when ``boundary`` is judged without a crossing
        self.connection: float | None = None  # the connection (its start) at the last boundary

    def latest_stamp(self) -> datetime | None:
        """The latest exchange time any of the clock's chains received (O(legs))."""
        stamps = [c.spot_time for c in self.chains if c.spot_time is not None]
        stamps += [
            leg.exchange_time
            for c in self.chains
            for leg in c.legs.values()
            if leg.exchange_time is not None
        ]
        return max(stamps, default=None)


class HistoryRecorder:
    """The minute bars of one feed worker's chains (see the module's docstring).

    The worker calls ``follow`` with each new book, ``passes``/``cross`` on the frame path
    (sync, never blocks) and the publisher ``at_flush`` after each flush; ``run`` is the
    writer task of a holding. ``counters`` receives ``history_bars``/``history_errors``/
    ``history_last_error``/``history_last_minute`` and gives ``connected_since`` (which
    connection a tick came on). ``writer`` stores a batch in one transaction and returns the
    rows written (``history.store.history_write``); ``build`` makes a bar of a captured chain
    (``capture.bar_from_captured``); ``now`` (aware) and ``monotonic`` are the wall clocks.
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
        build: Builder = bar_from_captured,
        now: Callable[[], datetime] = wall_clock,
        monotonic: Callable[[], float] = time.monotonic,
        session: SessionCalendar | None = None,
        queue_minutes: int = 30,
        grace: float = GRACE_SECONDS,
        silence: float = SILENCE_SECONDS,
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
        self.monotonic = monotonic
        self.session = session or SessionCalendar()
        self.queue_minutes = queue_minutes
        self.grace = grace
        self.silence = timedelta(seconds=silence)
        # The frame path compares each tick's exchange time with ``due``: the earliest
        # boundary of any exchange (AT_ONCE while an exchange has no time yet, NEVER when
        # nothing is followed or recording is off).
        self.due = NEVER
        self.minute: datetime | None = None  # the latest boundary judged (IST)
        self._clocks: list[ExchangeClock] = []
        self._by_instrument: dict[str, ExchangeClock] = {}
        self._seen: dict[tuple[str, date], tuple[str, int]] = {}  # (run, seq) at a boundary
        self._queue: deque[list[tuple[CapturedChain, datetime]]] = deque()
        self._wake = asyncio.Event()
        self._calendar_due = 0.0  # time.monotonic() of the next holiday read
        self._calendar_at: datetime | None = None  # the exchange time whose year to read
        self._dropped: datetime | None = None  # the latest minute a full queue dropped
        self._failing = False

    @property
    def queued(self) -> int:
        """Minutes waiting for the writer."""
        return len(self._queue)

    # --- the exchange clocks -----------------------------------------------------------------

    def follow(self, book: FeedBook) -> None:
        """Follow the chains of ``book`` (a new holding's): every exchange clock starts
        unset, so the first boundary each one crosses is a gap."""
        by_exchange: dict[Exchange, list[ChainBook]] = {}
        for chain in book.chains.values():
            by_exchange.setdefault(exchange_for(chain.underlying), []).append(chain)
        self._clocks = [ExchangeClock(e, chains) for e, chains in by_exchange.items()]
        self._by_instrument = {
            instrument: clock
            for clock in self._clocks
            for chain in clock.chains
            for instrument in (chain.index_instrument, *chain.legs)
        }
        self._seen.clear()
        self._update_due()

    def clock_of(self, instrument: str) -> ExchangeClock | None:
        return self._by_instrument.get(instrument)

    def passes(self, instrument: str, stamp: datetime) -> ExchangeClock | None:
        """For a tick of ``instrument`` stamped ``stamp`` (≥ ``due``), about to be applied:
        its exchange's clock when the tick crosses that clock's boundary (call ``cross`` once
        the ticks stamped before it are applied), else None (a first tick sets the clock)."""
        clock = self._by_instrument.get(instrument)
        if clock is None:
            return None
        if clock.boundary is None:
            self._advance(clock, stamp)
            return None
        return clock if stamp >= clock.boundary else None

    def cross(self, clock: ExchangeClock, stamp: datetime) -> int:
        """Judge ``clock``'s boundary at a tick stamped ``stamp`` after it (the book holds
        what was stamped before it); the boundaries the tick jumped over are gaps. Returns
        the number of bars queued."""
        boundary = clock.boundary
        assert boundary is not None, "passes() returned the clock"
        queued = self._judge(clock, boundary, crossing=stamp)
        self._advance(clock, stamp)
        return queued

    def at_flush(self) -> int:
        """Judge every boundary that no tick crossed within ``grace`` (a quiet market, the
        close); called after each flush. Returns the number of bars queued."""
        queued = 0
        now = self.monotonic()
        for clock in self._clocks:
            while clock.boundary is not None and now >= clock.due:
                queued += self._judge(clock, clock.boundary, crossing=None)
                clock.boundary += ONE_MINUTE
                clock.due += ONE_MINUTE.total_seconds()
                clock.connection = self.counters.connected_since
                self._update_due()
        return queued

    def _advance(self, clock: ExchangeClock, stamp: datetime) -> None:
        """Set ``clock`` to a tick stamped ``stamp``: its next boundary is the first after it."""
        first = clock.boundary is None
        clock.boundary = (minute_of(stamp) + ONE_MINUTE).astimezone(UTC)
        clock.due = self.monotonic() + (clock.boundary - stamp).total_seconds() + self.grace
        clock.connection = None if first else self.counters.connected_since
        self._update_due()

    def _update_due(self) -> None:
        if not self.enabled or not self._clocks:
            self.due = NEVER
            return
        self.due = min(AT_ONCE if c.boundary is None else c.boundary for c in self._clocks)

    # --- judging a boundary --------------------------------------------------------------------

    def _judge(self, clock: ExchangeClock, boundary: datetime, *, crossing: datetime | None) -> int:
        """Queue the bars of ``clock``'s chains at ``boundary`` (UTC), or make it a gap (see
        the module's docstring). Returns the number of bars queued."""
        minute = boundary.astimezone(IST)
        self.minute = minute if self.minute is None or minute > self.minute else self.minute
        if self.session.wants(minute.year):  # the exchange's year, not the wall clock's
            self._calendar_at, self._calendar_due = minute, 0.0
            self._wake.set()
        connection = self.counters.connected_since
        changed = {chain.key: self._changed(chain) for chain in clock.chains}
        if not (
            self.enabled
            and self.lock.held()
            and self.health.state in CONNECTED
            and connection is not None
            and clock.connection == connection
            and (crossing is None or crossing - boundary < self.silence)
        ):
            return 0
        latest = clock.latest_stamp()
        if latest is None or latest < boundary - self.silence:
            return 0
        captured = [
            (capture(chain), minute)
            for chain in clock.chains
            if changed[chain.key]
            and chain.readiness()[0]
            and self.session.records(chain.underlying, minute)
        ]
        if captured:
            self._enqueue(captured, minute)
        return len(captured)

    def _changed(self, chain: ChainBook) -> bool:
        """True when ``chain`` changed since the previous boundary judged: published anew (its
        seq advanced; a new book of a new holding counts from its first flush) or holding
        changes its next flush publishes."""
        now = (chain.run, chain.seq)
        before = self._seen.get(chain.key)
        self._seen[chain.key] = now
        if chain.pending:
            return True
        if before is None or before[0] != chain.run:
            return chain.seq > 0
        return chain.seq > before[1]

    def _enqueue(self, captured: list[tuple[CapturedChain, datetime]], minute: datetime) -> None:
        if len(self._queue) >= self.queue_minutes and self._queue[-1][0][1] != minute:
            if minute == self._dropped:
                return  # another exchange's chains of a minute already dropped and counted
            self._dropped = minute
            self._failed(
                f"The {minute:%H:%M} bars were dropped: {len(self._queue)} minutes already wait "
                "for the database, which is slow or down (check DATABASE_URL and the database)",
                None,
            )
            return
        if self._queue and self._queue[-1][0][1] == minute:
            self._queue[-1].extend(captured)  # another exchange's chains at the same minute
        else:
            self._queue.append(captured)
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
        """Build the bars of every queued minute and store them in one batch, in a thread;
        the rows written (0 when the batch failed: its minutes are gaps, or when the lock is no
        longer this worker's: nothing is written). Raises what building a bar raises (a bug:
        the supervisor restarts the holding)."""
        batch = [item for items in self._queue for item in items]
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
            minutes = sorted({minute for _, minute in batch})
            span = f"{minutes[0]:%H:%M}" + (f"–{minutes[-1]:%H:%M}" if len(minutes) > 1 else "")
            self._failed(
                f"Writing the {span} minute bars failed ({type(exc).__name__}: {exc}): those "
                "minutes are gaps; check that the database answers (DATABASE_URL)",
                exc,
            )
            return 0
        counters = self.counters
        counters.history_bars += written
        latest = max(minute for _, minute in batch)
        if counters.history_last_minute is None or latest > counters.history_last_minute:
            counters.history_last_minute = latest
        if self._failing:
            self._failing = False
            logger.warning("History of %s is written again", self.account)
        return written

    def _write_in_thread(self, batch: Sequence[tuple[CapturedChain, datetime]]) -> int:
        # Built here, off the event loop: each bar's analytics (an IV per leg) are computed.
        bars = [self.build(captured, minute) for captured, minute in batch]
        # As around a request: a connection an outage broke is replaced, not reused.
        close_old_connections()
        try:
            return self.writer(bars)
        finally:
            close_old_connections()

    async def _refresh_calendar(self) -> None:
        self._calendar_due = time.monotonic() + CALENDAR_REFRESH_SECONDS
        try:
            await asyncio.to_thread(self._refresh_in_thread, self._calendar_at or self.now())
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
