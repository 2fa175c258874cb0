"""The simulated exchange clock: the time every market event, session change and exchange
timestamp of the simulator follows. Pure Python, no I/O.

Simulated time runs ``speed`` times as fast as real time from ``start``: with speed 60 a
simulated minute passes every real second. When the market cannot keep up (a slow machine, a
paused process) the clock is held back to where the market is (``hold``): the market's events
stay a function of simulated time, and the time lost is counted instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClock:
    """Simulated epoch seconds: ``start`` + ``speed`` × real seconds elapsed − time held back.

    Raises ValueError for a non-positive ``speed``.
    """

    def __init__(
        self, start: float, *, speed: float = 1.0, real: Callable[[], float] = time.monotonic
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.start = start
        self.speed = speed
        self._real = real
        self._origin = real()
        self.held = 0.0  # simulated seconds the clock was held back

    def now(self) -> float:
        """The simulated time now (epoch seconds)."""
        return self.start + (self._real() - self._origin) * self.speed - self.held

    def utc(self) -> datetime:
        """The simulated time now as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def hold(self, at: float) -> None:
        """Set the clock back to ``at`` when it is ahead of it (the market fell behind)."""
        ahead = self.now() - at
        if ahead > 0:
            self.held += ahead
