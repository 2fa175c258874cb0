"""The brokers' rate limits, as windows of "at most N starts in any P seconds" per endpoint
class (the class names are part of the Redis keys). Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` request starts in any ``period`` seconds (limit 1: starts spaced by
    ``period``). Raises ``ValueError`` for a limit below 1 or a period that is not positive."""

    limit: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"limit must be an integer ≥ 1, got {self.limit!r}")
        if not self.period > 0:
            raise ValueError(f"period must be > 0 seconds, got {self.period!r}")


def spaced(rate: int, period: float = 1.0) -> Window:
    """``rate`` starts per ``period`` seconds, evenly spaced (stricter than a burst window, so
    safe however the broker counts its second)."""
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
        raise ValueError(f"rate must be an integer ≥ 1, got {rate!r}")
    if not period > 0:
        raise ValueError(f"period must be > 0 seconds, got {period!r}")
    return Window(1, period / rate)


# DhanHQ documents 1 unique option chain per 3 s; a field report (2026) saw 805 at 3.2 s.
DHAN_CHAIN_INTERVAL = 3.5

# Endpoint class → its windows. Class names are part of the Redis keys.
DHAN: dict[str, tuple[Window, ...]] = {
    "data": (spaced(5),),
    "quotes": (spaced(1),),
    "option-chain": (Window(1, DHAN_CHAIN_INTERVAL),),
    "non-trading": (spaced(20),),
}
UPSTOX: dict[str, tuple[Window, ...]] = {
    "standard": (spaced(50), Window(500, 60.0), Window(2000, 1800.0)),
}
