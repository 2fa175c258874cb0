"""The simulated exchange clock: the time every market event, session change and exchange
timestamp of the simulator follows. Pure Python, no I/O.

Simulated time runs ``speed`` times as fast as real time from ``start``: with speed 60 a
simulated minute passes every real second. With ``catch_up_to`` the clock runs at ``speed``
only until it reaches that simulated time and at real time (speed 1) from then on: a demo
starts its day at 09:15, runs through the morning in minutes, then goes on as a real market
does. A clock made ``waiting`` stands at ``start`` until ``begin`` (the demo's simulator waits
for its feed worker to subscribe, so that no simulated minute passes unrecorded while the demo
is still being set up). When the market cannot keep up (a slow machine, a paused process)
the clock is held back to where the market is (``hold``): the market's events stay a function
of simulated time, and the time lost is counted instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClock:
    """Simulated epoch seconds: ``start`` + ``speed`` × real seconds elapsed − time held back,
    up to ``catch_up_to`` (None: never); past it, ``catch_up_to`` + real seconds elapsed since
    the clock reached it − time held back since. Real time counts from ``begin`` when the
    clock is made ``waiting`` (it stands at ``start`` until then), else from construction.

    Raises ValueError for a non-positive ``speed`` or a ``catch_up_to`` before ``start``.
    """

    def __init__(
        self,
        start: float,
        *,
        speed: float = 1.0,
        catch_up_to: float | None = None,
        waiting: bool = False,
        real: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        if catch_up_to is not None and catch_up_to < start:
            raise ValueError(f"catch_up_to ({catch_up_to!r}) is before start ({start!r})")
        self.start = start
        self.catch_up_to = catch_up_to
        self.held = 0.0  # simulated seconds the clock was held back, in all
        self._real = real
        # The current stretch: from ``_base`` (simulated) at ``_origin`` (real) at ``speed``,
        # less ``_held`` (held back during the stretch). A catch-up ends the first stretch.
        self.speed = speed
        self._base = start
        self._origin = real()
        self._held = 0.0
        self._until = catch_up_to
        self.waiting = waiting

    def begin(self) -> None:
        """Start a ``waiting`` clock: simulated time runs on from ``start`` from now on (no
        effect on a running clock)."""
        if self.waiting:
            self.waiting = False
            self._origin = self._real()

    def now(self) -> float:
        """The simulated time now (epoch seconds)."""
        if self.waiting:
            return self._base
        real = self._real()
        now = self._base + (real - self._origin) * self.speed - self._held
        until = self._until
        if until is not None and now >= until:
            # The real instant the clock reached ``until``: real time runs on from there.
            reached = self._origin + (until - self._base + self._held) / self.speed
            self._base, self._origin, self._held, self._until = until, reached, 0.0, None
            self.speed = 1.0
            now = until + (real - reached)
        return now

    @property
    def catching_up(self) -> bool:
        """True until the clock has reached ``catch_up_to`` (False without one)."""
        return self._until is not None and self.now() < self._until

    def utc(self) -> datetime:
        """The simulated time now as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def hold(self, at: float) -> None:
        """Set the clock back to ``at`` when it is ahead of it (the market fell behind)."""
        ahead = self.now() - at
        if ahead > 0:
            self.held += ahead
            self._held += ahead
