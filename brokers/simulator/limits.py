"""Server-side rate limits of the simulated brokers (what a client that ignores them hits).

Pure Python; time from an injectable monotonic clock. Only accepted requests count.

* Dhan, per client id: option chain and expiry list — an identical request (same endpoint and
  body) is refused within 3 s of the last accepted one ("1 unique request per 3 s"); market
  quotes 1 request/s; data APIs (chain + quotes) 5/s; other APIs 20/s.
* Upstox, per access token: 50/s, 500/min, 2000/30 min.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

DHAN_CHAIN_INTERVAL = 3.0
_DHAN_WINDOWS = {"quote": (1, 1.0), "data": (5, 1.0), "non_trading": (20, 1.0)}
_UPSTOX_WINDOWS = ((50, 1.0), (500, 60.0), (2000, 1800.0))


class Window:
    """At most ``limit`` accepted events in any ``period`` seconds."""

    __slots__ = ("limit", "period", "times")

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self.times: deque[float] = deque()

    def full(self, now: float) -> bool:
        while self.times and self.times[0] <= now - self.period:
            self.times.popleft()
        return len(self.times) >= self.limit

    def add(self, now: float) -> None:
        self.times.append(now)


class ServerLimits:
    """The simulator's rate-limit book. ``allow_*`` return True and count the request, or
    False (the caller answers 429) without counting it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[Hashable, Window] = {}
        self._unique: dict[Hashable, float] = {}
        self.refused = 0

    def _window(self, key: Hashable, limit: int, period: float) -> Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = Window(limit, period)
        return window

    def _allow(self, windows: list[Window]) -> bool:
        now = self.clock()
        if any(w.full(now) for w in windows):
            self.refused += 1
            return False
        for window in windows:
            window.add(now)
        return True

    def allow_dhan(self, client_id: str, family: str, unique: Hashable | None = None) -> bool:
        """``family`` is "chain" (give ``unique``, the request's identity), "quote" or
        "non_trading"."""
        windows = []
        if family in ("chain", "quote"):
            windows.append(self._window((client_id, "data"), *_DHAN_WINDOWS["data"]))
        if family != "chain":
            windows.append(self._window((client_id, family), *_DHAN_WINDOWS[family]))
        now = self.clock()
        key = (client_id, "chain", unique)
        if family == "chain":
            last = self._unique.get(key)
            if last is not None and now - last < DHAN_CHAIN_INTERVAL:
                self.refused += 1
                return False
        if not self._allow(windows):
            return False
        if family == "chain":
            self._unique[key] = now
        return True

    def allow_upstox(self, token: str) -> bool:
        return self._allow([self._window((token, p), n, p) for n, p in _UPSTOX_WINDOWS])
