"""What makes the simulated day move: the index's trend and mean reversion, the selling
pressure that lifts an expiry's IV, and which strikes draw more open interest. Pure Python.

Everything here is advanced by the simulated time elapsed and by numbers the caller draws
from the market's seeded RNG, so the same seed and the same simulated times give the same day.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

SESSION_SECONDS = 22500.0  # 6 h 15 min
TRADING_SECONDS_PER_YEAR = 252 * SESSION_SECONDS
REVERSION_HALF_LIFE = 900.0  # the deviation from the trend line halves in 15 simulated minutes
DEVIATION = 0.0025  # its stationary standard deviation (fraction of the level) at 12 % vol
TREND_RANGE = (0.005, 0.012)  # the day's move of the trend line, fraction per session
LEVEL_NOISE = 0.0015  # the trend line's own noise, standard deviation per session
MAX_MOVE_SECONDS = 60.0  # a longer gap (the market was closed) counts as a minute
PRESSURE_SECONDS = 1800.0  # selling pressure fades with this time constant
PRESSURE_PER_LOT = 1e-6  # IV lift (fraction) per lot written, before fading
MAX_PRESSURE = 0.5  # the smile is lifted or lowered by at most half


@dataclass(slots=True)
class Drift:
    """An index level: ``exp(trend line + deviation)``. The trend line moves by ``trend`` per
    second plus a little noise; the deviation is an Ornstein–Uhlenbeck process around 0."""

    line: float  # log level of the trend line
    deviation: float  # log deviation from it
    trend: float  # per second
    line_sigma: float  # per √second
    theta: float  # reversion rate per second
    deviation_sd: float  # stationary standard deviation of the deviation

    @classmethod
    def draw(cls, rng: random.Random, *, spot: float, vol: float) -> Drift:
        """The day of an index starting at ``spot`` with annual volatility ``vol``: its trend
        direction and size come from ``rng``."""
        scale = vol / 0.12
        move = rng.uniform(*TREND_RANGE) * scale * (1.0 if rng.random() < 0.5 else -1.0)
        return cls(
            line=math.log(spot),
            deviation=0.0,
            trend=move / SESSION_SECONDS,
            line_sigma=LEVEL_NOISE * scale / math.sqrt(SESSION_SECONDS),
            theta=math.log(2.0) / REVERSION_HALF_LIFE,
            deviation_sd=DEVIATION * scale,
        )

    def level(self) -> float:
        """The trend line (what the index reverts to)."""
        return math.exp(self.line)

    def move(self, elapsed: float, z_line: float, z_deviation: float) -> float:
        """Advance by ``elapsed`` simulated seconds with two standard normal draws; returns
        the new index level. The deviation's update is the exact OU transition."""
        elapsed = min(max(elapsed, 0.0), MAX_MOVE_SECONDS)
        self.line += self.trend * elapsed + self.line_sigma * math.sqrt(elapsed) * z_line
        decay = math.exp(-self.theta * elapsed)
        spread = self.deviation_sd * math.sqrt(1.0 - decay * decay)
        self.deviation = self.deviation * decay + spread * z_deviation
        return math.exp(self.line + self.deviation)


@dataclass(slots=True)
class Pressure:
    """The selling pressure of one expiry: lots written minus lots bought to open, fading
    with ``PRESSURE_SECONDS``; ``at`` gives the IV lift it causes (a fraction)."""

    last: float  # simulated time of ``value``
    value: float = 0.0

    def at(self, when: float) -> float:
        """The lift at simulated time ``when`` (not before the last change)."""
        elapsed = max(when - self.last, 0.0)
        return self.value * math.exp(-elapsed / PRESSURE_SECONDS)

    def add(self, when: float, lots: float) -> None:
        """Record ``lots`` written (negative: bought) to open at ``when``."""
        lifted = self.at(when) + lots * PRESSURE_PER_LOT
        self.value = min(max(lifted, -MAX_PRESSURE), MAX_PRESSURE)
        self.last = max(when, self.last)


def roundness(strike: int | None) -> float:
    """How much more open interest a strike draws: 1, 2 at multiples of 100, 4 at multiples of
    500, 5 at multiples of 1000 (traders write the round strikes)."""
    if strike is None:
        return 1.0
    return 1.0 + (strike % 100 == 0) + 2.0 * (strike % 500 == 0) + (strike % 1000 == 0)
