"""When the simulated exchange trades.

``Session`` uses the product's own calendar (``brokers.exchange``): around the clock (the demo and
tests run at any hour) or in the exchange's hours, closed on the simulated holidays either way.
Pure Python, no Django, no I/O: the time is passed in (the market's virtual clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from brokers.exchange import (
    HOLIDAY_PREFIX,
    IST,
    OPEN,
    PRE_OPEN,
    SESSION_CLOSE,
    SESSION_OPEN,
    MarketState,
    Phase,
    market_state,
)

# The Upstox feed's MarketStatus name of each phase (Dhan's status packet carries none).
UPSTOX_STATUS = {
    Phase.OPEN: "NORMAL_OPEN",
    Phase.PRE_OPEN: "PRE_OPEN_START",
    Phase.CLOSED: "NORMAL_CLOSE",
}

# Where the phase can change: midnight (a holiday or weekend starts or ends), pre-open, open
# and close (brokers.exchange), IST.
_BOUNDARIES = (time(0, 0), PRE_OPEN, SESSION_OPEN, SESSION_CLOSE)


@dataclass(frozen=True)
class Session:
    """When the simulated exchange trades.

    ``exchange_hours`` False: open around the clock except on ``holidays``; True: the
    exchange's calendar (09:15–15:30 IST on weekdays that are not ``holidays``, pre-open
    from 09:00). ``holidays`` maps a day (IST) to its name.
    """

    exchange_hours: bool = False
    holidays: Mapping[date, str] = field(default_factory=dict)

    def state(self, at: float) -> MarketState:
        """The market at virtual time ``at`` (epoch seconds)."""
        moment = datetime.fromtimestamp(at, UTC)
        if self.exchange_hours:
            return market_state(moment, self.holidays)
        name = self.holidays.get(moment.astimezone(IST).date())
        return OPEN if name is None else MarketState(Phase.CLOSED, HOLIDAY_PREFIX + name)

    def next_change(self, at: float) -> float | None:
        """The first time after ``at`` (epoch seconds) at which the phase differs from the
        phase at ``at``, within two days; None when it does not change that soon."""
        phase = self.state(at).phase
        local = datetime.fromtimestamp(at, UTC).astimezone(IST)
        for offset in range(3):
            day = local.date() + timedelta(days=offset)
            for moment in _BOUNDARIES:
                candidate = datetime.combine(day, moment, tzinfo=IST).timestamp()
                if candidate > at and self.state(candidate).phase != phase:
                    return candidate
        return None

    def upstox_status(self, at: float) -> str:
        """The Upstox MarketStatus name of the market at ``at`` (what the feeds announce)."""
        return UPSTOX_STATUS[self.state(at).phase]

    def describe(self, at: float) -> dict[str, object]:
        """The session at ``at`` for ``GET /sim/state``."""
        state = self.state(at)
        return {
            "hours": "exchange" if self.exchange_hours else "always",
            "phase": state.phase.value,
            "reason": state.reason,
            "holidays": {day.isoformat(): name for day, name in self.holidays.items()},
        }
