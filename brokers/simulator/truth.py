"""The simulator's truth: each tracked chain as it stood at every simulated minute boundary,
for tests that compare what a feed recorded at minute M with what the simulator held then.

Pure Python. ``Truth.record`` is the market's ``on_minute`` hook: it is called before the first
step at or after a boundary, so what it copies is the state at the boundary: every event
stamped before that instant, none stamped at it or after (an event on the boundary belongs to
the minute after it, as a feed's whole-second exchange time cannot tell it from one later in
that second). It keeps the nearest ``expiries`` of each underlying and
the last ``minutes`` boundaries (a session is 375); a jump over closed hours records its first
boundary only (nothing changed after it), so a later time finds the latest boundary before it.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import deque
from datetime import UTC, date, datetime
from typing import Any

from .market import Market
from .universe import Instrument

TRUTH_EXPIRIES = 2  # what simaccounts tracks
TRUTH_MINUTES = 480
_FIELDS = ("ltp", "bid", "ask", "iv", "ltt", "volume", "oi")


def iso(at: float) -> str:
    """Epoch seconds as an ISO UTC instant with milliseconds."""
    return datetime.fromtimestamp(round(at, 3), UTC).isoformat(timespec="milliseconds")


class Truth:
    """Per-minute copies of the chains of ``market``'s nearest ``expiries`` expiries."""

    def __init__(
        self, market: Market, *, expiries: int = TRUTH_EXPIRIES, minutes: int = TRUTH_MINUTES
    ) -> None:
        self.market = market
        universe = market.universe
        self.chains: dict[tuple[str, date], list[Instrument]] = {}
        for symbol, days in universe.expiries.items():
            for day in days[:expiries]:
                chain = universe.chains[(symbol, day)]
                legs = [chain[strike][side] for strike in sorted(chain) for side in ("CE", "PE")]
                self.chains[(symbol, day)] = legs
        self._offsets: dict[tuple[str, date], int] = {}
        offset = 0
        for key, legs in self.chains.items():
            self._offsets[key] = offset
            offset += len(legs)
        self._times: deque[float] = deque(maxlen=minutes)
        self._rows: deque[tuple[array[float], dict[str, tuple[float, float]], dict[Any, float]]]
        self._rows = deque(maxlen=minutes)

    def record(self, at: float) -> None:
        """Copy the state at minute boundary ``at`` (the market's ``on_minute`` hook)."""
        if self._times and at <= self._times[-1]:
            return
        market = self.market
        values: array[float] = array("d")
        chain_iv: dict[Any, float] = {}
        for (symbol, day), legs in self.chains.items():
            for leg in legs:
                values.extend(
                    (leg.ltp, leg.bid, leg.ask, leg.iv or 0.0, leg.ltt, leg.volume, leg.oi)
                )
            chain_iv[(symbol, day)] = market.chain_atm_iv(symbol, day, at)
        spots = {
            symbol: (index.ltp, market.level(symbol))
            for symbol, index in market.universe.indices.items()
        }
        self._times.append(at)
        self._rows.append((values, spots, chain_iv))

    def minutes(self) -> tuple[float, float] | None:
        """(first, last) boundary held, or None before the first."""
        return (self._times[0], self._times[-1]) if self._times else None

    def chain(self, symbol: str, day: date, at: float | None = None) -> dict[str, Any]:
        """The chain as it stood at ``at`` (the latest boundary at or before it) or now.

        Raises KeyError for a chain not kept (see ``chains``), LookupError for a time before
        the first boundary held or after the market's time now.
        """
        legs = self.chains[(symbol, day)]
        market = self.market
        if at is None:
            return self._live(symbol, day, legs)
        if at > market.now():
            raise LookupError(f"{iso(at)} is after the simulated time now, {iso(market.now())}")
        position = bisect_right(self._times, at) - 1
        if position < 0:
            held = self.minutes()
            since = iso(held[0]) if held else "none yet"
            raise LookupError(f"no minute held at or before {iso(at)} (held since: {since})")
        values, spots, chain_iv = self._rows[position]
        base = self._offsets[(symbol, day)] * len(_FIELDS)
        rows = []
        for n, leg in enumerate(legs):
            raw = values[base + n * len(_FIELDS) : base + (n + 1) * len(_FIELDS)]
            rows.append(_leg(leg, *raw))
        spot, level = spots[symbol]
        return {
            "time": iso(self._times[position]),
            "underlying": symbol,
            "expiry": day.isoformat(),
            "spot": spot,
            "level": round(level, 4),
            "atm_iv": round(chain_iv[(symbol, day)], 6),
            "legs": rows,
        }

    def _live(self, symbol: str, day: date, legs: list[Instrument]) -> dict[str, Any]:
        market = self.market
        return {
            "time": iso(market.now()),
            "underlying": symbol,
            "expiry": day.isoformat(),
            "spot": market.universe.indices[symbol].ltp,
            "level": round(market.level(symbol), 4),
            "atm_iv": round(market.chain_atm_iv(symbol, day), 6),
            "legs": [
                _leg(leg, leg.ltp, leg.bid, leg.ask, leg.iv or 0.0, leg.ltt, leg.volume, leg.oi)
                for leg in legs
            ],
        }


def _leg(
    leg: Instrument,
    ltp: float,
    bid: float,
    ask: float,
    iv: float,
    ltt: float,
    volume: float,
    oi: float,
) -> dict[str, Any]:
    return {
        "strike": leg.strike,
        "side": leg.option_type,
        "security_id": leg.security_id,
        "upstox_key": leg.upstox_key,
        "ltp": ltp,
        "bid": bid,
        "ask": ask,
        "iv": round(iv, 6),
        "ltt": iso(ltt),
        "volume": int(volume),
        "oi": int(oi),
    }
