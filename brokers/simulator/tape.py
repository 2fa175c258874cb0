"""Market steps generated ahead of time and replayed: for load tests beyond what the model
generates live on one core. Pure Python."""

from __future__ import annotations

from .events import SimTick
from .market import Market


class Tape:
    """Market steps generated ahead of time, replayed in a loop with fresh times.

    For load tests: the model costs ~8 µs a step, which caps one simulator core well below the
    rates a feed worker is benchmarked at. The events are the model's own (``Market.run``);
    replaying re-stamps each with the virtual time of the step it stands for, so exchange
    times keep moving forward. Prices, volumes and OI jump back when the tape wraps around.
    """

    def __init__(self, market: Market, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"a tape needs at least one step, got {steps}")
        self.ticks = market.record(steps)
        self.position = 0
        self.loops = 0

    def take(self, steps: int, first: float, step_seconds: float) -> list[SimTick]:
        """The next ``steps`` events, the i-th stamped ``first + i·step_seconds``."""
        ticks, size, position = self.ticks, len(self.ticks), self.position
        new = tuple.__new__
        out: list[SimTick] = []
        append = out.append
        for i in range(steps):
            tick = ticks[position]
            append(new(SimTick, (tick[0], first + i * step_seconds, *tick[2:])))
            position += 1
            if position == size:
                position = 0
                self.loops += 1
        self.position = position
        return out
