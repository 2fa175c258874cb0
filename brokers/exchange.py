"""Exchange time and the exchange calendar: IST, the regular session, trading days.

Pure (no Django): the broker codecs, the instrument masters, the chain analytics, the Celery
tasks and the simulator all read the exchange's clock from here. Trading holidays are *data*
(``brokers.models.ExchangeHoliday``, read by ``brokers.calendar``) passed in as a mapping
``date → name`` of one exchange; nothing here knows a holiday by itself.

The equity-derivatives session of NSE and BSE: pre-open 09:00–09:15 IST (order entry until
09:08, then matching and a buffer; options do not trade in it), the regular session
09:15–15:30 IST, Monday to Friday except the exchange's trading holidays. Special sessions on
a weekend or holiday (Muhurat trading, a Sunday budget session) are not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from enum import StrEnum

IST = timezone(timedelta(hours=5, minutes=30), "IST")
EXPIRY_CUTOFF = time(15, 30)  # options expire at the close, 15:30 IST

PRE_OPEN = time(9, 0)
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = EXPIRY_CUTOFF
MAX_CLOSED_DAYS = 60  # no exchange closes this long: a longer run of closed days is bad data

Holidays = Mapping[date, str]  # one exchange's trading holidays: day → name


class Exchange(StrEnum):
    """An exchange whose index options the product shows."""

    NSE = "NSE"
    BSE = "BSE"


# Index options listed on BSE; every other underlying the product knows is an NSE index.
BSE_UNDERLYINGS = frozenset({"SENSEX", "BANKEX", "SENSEX50"})


def exchange_for(underlying: str) -> Exchange:
    """The exchange an index underlying (e.g. "NIFTY", "SENSEX") trades on."""
    return Exchange.BSE if underlying.strip().upper() in BSE_UNDERLYINGS else Exchange.NSE


class Phase(StrEnum):
    OPEN = "open"
    PRE_OPEN = "pre_open"
    CLOSED = "closed"


# The reasons of a CLOSED state (a holiday's reason is HOLIDAY_PREFIX + its name).
WEEKEND = "weekend"
BEFORE_OPEN = "before open"
AFTER_CLOSE = "after close"
HOLIDAY_PREFIX = "holiday: "
PRE_OPEN_REASON = "pre-open"


@dataclass(frozen=True, slots=True)
class MarketState:
    """The market at one instant: ``phase`` and, unless open, why (``reason``).

    ``reason`` is "" when open, "pre-open" in the pre-open session, and for a closed market
    one of "weekend", "holiday: <name>", "before open", "after close".
    """

    phase: Phase
    reason: str = ""

    @property
    def is_open(self) -> bool:
        """True only in the regular session (pre-open is not open: options do not trade)."""
        return self.phase is Phase.OPEN

    def __str__(self) -> str:
        return "open" if self.is_open else f"{self.phase.value.replace('_', '-')} ({self.reason})"


OPEN = MarketState(Phase.OPEN)


def ist(now: datetime) -> datetime:
    """``now`` (aware) in IST. Raises ValueError for a naive datetime: its zone is unknown."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"an aware datetime is needed (with a UTC offset), got {now!r}")
    return now.astimezone(IST)


def closed_day_reason(day: date, holidays: Holidays) -> str | None:
    """Why the exchange does not trade on ``day`` ("weekend" or "holiday: <name>"), or None
    when ``day`` is a trading day. A holiday on a weekend reads "weekend"."""
    if day.weekday() >= 5:
        return WEEKEND
    name = holidays.get(day)
    return None if name is None else HOLIDAY_PREFIX + name


def is_trading_day(day: date, holidays: Holidays) -> bool:
    """True when ``day`` is a weekday that is not one of ``holidays``."""
    return closed_day_reason(day, holidays) is None


def session_bounds(day: date) -> tuple[datetime, datetime]:
    """(open, close) of the regular session on ``day``: 09:15 and 15:30 IST, aware, in IST.
    Says nothing about whether ``day`` trades (see ``is_trading_day``)."""
    return (
        datetime.combine(day, SESSION_OPEN, tzinfo=IST),
        datetime.combine(day, SESSION_CLOSE, tzinfo=IST),
    )


def market_state(now: datetime, holidays: Holidays) -> MarketState:
    """The market at ``now`` (aware) given the exchange's ``holidays``.

    Open from 09:15:00 up to (not including) 15:30:00 IST on a trading day; pre-open from
    09:00 to 09:15; otherwise closed with the reason. Raises ValueError for a naive ``now``.
    """
    local = ist(now)
    reason = closed_day_reason(local.date(), holidays)
    if reason is not None:
        return MarketState(Phase.CLOSED, reason)
    clock = local.time()
    if clock < PRE_OPEN:
        return MarketState(Phase.CLOSED, BEFORE_OPEN)
    if clock < SESSION_OPEN:
        return MarketState(Phase.PRE_OPEN, PRE_OPEN_REASON)
    if clock < SESSION_CLOSE:
        return OPEN
    return MarketState(Phase.CLOSED, AFTER_CLOSE)


def next_trading_day(day: date, holidays: Holidays) -> date:
    """The first trading day strictly after ``day``.

    Raises ValueError when none comes within MAX_CLOSED_DAYS (the holiday data is wrong).
    """
    for offset in range(1, MAX_CLOSED_DAYS + 1):
        candidate = day + timedelta(days=offset)
        if is_trading_day(candidate, holidays):
            return candidate
    raise ValueError(
        f"no trading day within {MAX_CLOSED_DAYS} days after {day}: check the exchange "
        "holidays in admin → Exchange holidays"
    )


def next_open(now: datetime, holidays: Holidays) -> datetime:
    """The next moment the regular session opens, strictly after ``now``: today's 09:15 IST
    when today trades and it is earlier, else 09:15 on the next trading day (so during a
    session it is the next day's open). Aware, in IST.

    Raises ValueError for a naive ``now`` or when no trading day comes within
    MAX_CLOSED_DAYS.
    """
    local = ist(now)
    today = local.date()
    opens, _ = session_bounds(today)
    if local < opens and is_trading_day(today, holidays):
        return opens
    return session_bounds(next_trading_day(today, holidays))[0]


def expiry_moment(expiry: date) -> datetime:
    """The instant an expiry ends: 15:30 IST on the day, as an aware UTC datetime."""
    return datetime.combine(expiry, EXPIRY_CUTOFF, tzinfo=IST).astimezone(UTC)
