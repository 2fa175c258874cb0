"""Which minutes the history recorder records: the regular session by the exchange calendar
(``brokers.exchange`` with the holidays of ``brokers.calendar``), every M:00 from 09:15 to the
15:30 close on a trading day, judged at M on the exchange's clock (``chains.feed.history``).

The holiday table is read off the event loop (``SessionCalendar.refresh``, in a thread) and
kept for the flush path (``SessionCalendar.records``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from brokers import calendar
from brokers.exchange import Exchange, Holidays, exchange_for, market_state

from ..history.bars import minute_of

HolidayLoader = Callable[[Exchange, list[int]], Holidays]

ONE_MINUTE = timedelta(minutes=1)


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

    def wants(self, year: int) -> bool:
        """True when the holidays of ``year`` are not the ones held (read them)."""
        return year not in self._years

    def records(self, underlying: str, minute: datetime) -> bool:
        """True when ``minute`` (IST, second 0) of ``underlying``'s exchange is recorded: the
        session is open at it, or it is the close (open a minute before). False while the
        holidays of its year are not known (never read, or the database failed): no bar is
        taken on a day that might be a holiday."""
        if self._holidays is None or minute.year not in self._years:
            return False  # the recorder reads them again (history.CALENDAR_REFRESH_SECONDS)
        holidays = self._holidays[exchange_for(underlying)]
        return (
            market_state(minute, holidays).is_open
            or market_state(minute - ONE_MINUTE, holidays).is_open
        )


def holidays_of(days: Mapping[Exchange, Holidays]) -> HolidayLoader:
    """A holiday loader answering from ``days`` (the calendar of a test or a simulation)."""
    return lambda exchange, _years: days.get(exchange, {})
