"""The chain book: each option chain's legs, kept current from ticks and REST. Pure Python.

Rules (architecture.md, "Ticks that never reached the cache"):
- every tick of a contract updates that contract's own leg; nothing is estimated;
- fields a tick does not carry keep their last known value (carry forward);
- newer wins: an update observed before the leg's last update is ignored, and a trade older
  than the leg's last trade never replaces its price;
- analytics (forward, ATM, IV, greeks, PCR, max pain, build-up) are computed at flush time.

A ``FeedBook`` routes ticks by instrument id to the chains of one feed worker; each
``ChainBook`` owns one (underlying, expiry) chain of legs (``chains.leg``) and produces deltas
and snapshots shaped like the JSON API's ``data``: their types, and the leg's JSON, are in
``chains.contracts``.
"""

from __future__ import annotations

import itertools
import secrets
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import TypedDict

from brokers.ticks import Tick

from . import analytics
from .contracts import Delta, Header, Snapshot, StoredSnapshot, Strikes, leg_json, round_finite
from .leg import MARKET_FIELDS, TICK_FIELDS, TRADE_FIELDS, Leg, LegSpec

FORWARD_PAIRS = 3  # strikes around the money used for the put-call-parity forward
# Every priced leg's IV and greeks are redone at a flush where the forward moved (by a tick or
# more), and once the time to expiry has shrunk by this fraction since they were last all redone:
# IV·√T is about what a price fixes, so an IV left on an older T is off by about half the
# fraction (0.01 % of itself: 0.01 vol points at 100 % IV), well inside what the chain shows.
FULL_RECOMPUTE_AGING = 0.0002


class ChainStats(TypedDict):
    """How populated a chain is (``ChainBook.stats``)."""

    underlying: str
    expiry: str  # YYYY-MM-DD
    strikes: int
    legs: int
    legs_priced: int
    spot: float | None


class ChainBook:
    """One (underlying, expiry) option chain."""

    def __init__(
        self,
        *,
        underlying: str,
        expiry: date,
        index_instrument: str,
        legs: Iterable[LegSpec],
        lot_size: int,
        rate: float = 0.0,
    ) -> None:
        self.underlying = underlying
        self.expiry = expiry
        self.index_instrument = index_instrument
        self.lot_size = lot_size
        self.rate = rate
        self.legs: dict[str, Leg] = {}
        self.by_strike: dict[float, dict[str, Leg]] = {}
        for spec in legs:
            leg = Leg(spec)
            self.legs[spec.instrument] = leg
            self.by_strike.setdefault(spec.strike, {})[spec.option_type] = leg
        if not self.legs:
            raise ValueError(f"chain {underlying} {expiry} has no legs")
        self.strikes = sorted(self.by_strike)
        self.strike_keys = {k: _strike_key(k) for k in self.strikes}
        self.strike_interval = _interval(self.strikes)
        self.spot: float | None = None
        self.spot_time: datetime | None = None
        self.spot_observed_at = 0.0
        # the index's previous close (Dhan's prev-close packet, Upstox's ltpc ``cp``, a stored
        # snapshot's): the header's change since then; None until a feed or snapshot sent it
        self.spot_prev_close: float | None = None
        self.forward: float | None = None
        self.atm_strike: float | None = None
        self.pcr: float | None = None
        self.max_pain: float | None = None
        self.seq = 0
        # Which writer's seq this is: a restarted feed worker builds a new book and counts from
        # 1 again, so readers compare (run, seq), never seq alone. A book rebuilt from a stored
        # snapshot (the REST repopulate task) continues that snapshot's run.
        self.run = secrets.token_hex(4)
        self.as_of: datetime | None = None
        self.dirty: set[str] = set()
        self.header_dirty = False
        self.oi_dirty = True
        # (forward, years to expiry) every priced leg's analytics were last computed on
        self._full_inputs: tuple[float, float] | None = None

    @property
    def key(self) -> tuple[str, date]:
        return (self.underlying, self.expiry)

    # --- updates ---------------------------------------------------------------------------

    def apply_spot(self, tick: Tick, observed_at: float) -> bool:
        """Apply an index tick: its price and its previous close, each when it carries one.
        True when either changed."""
        if observed_at < self.spot_observed_at:
            return False
        changed = False
        if tick.prev_close is not None:
            changed = self.apply_spot_prev_close(tick.prev_close)
        if tick.ltp is None or tick.ltp <= 0:
            return changed
        if (
            tick.exchange_time is not None
            and self.spot_time is not None
            and tick.exchange_time < self.spot_time
        ):
            return changed
        self.spot_observed_at = observed_at
        if tick.exchange_time is not None:
            self.spot_time = tick.exchange_time
        spot = analytics.to_index_value(tick.ltp)
        if spot != self.spot:
            self.spot = spot
            self.header_dirty = True
            return True
        return changed

    def apply_spot_prev_close(self, prev_close: float) -> bool:
        """Keep the index's previous close (a price above 0; anything else is not a close and
        is ignored). True when it changed. It is the close of the session before today's and
        carries no time: the last one sent wins."""
        if not prev_close > 0:  # also refuses NaN
            return False
        value = analytics.to_index_value(prev_close)
        if value == self.spot_prev_close:
            return False
        self.spot_prev_close = value
        self.header_dirty = True
        return True

    def apply_tick(self, leg: Leg, tick: Tick, observed_at: float) -> bool:
        """Apply ``tick`` to ``leg`` (newer wins, absent fields carried). True if it changed."""
        if observed_at < leg.observed_at:
            return False
        leg.observed_at = observed_at
        stale_trade = (
            tick.exchange_time is not None
            and leg.exchange_time is not None
            and tick.exchange_time < leg.exchange_time
        )
        changed = False
        for name, value in zip(TICK_FIELDS, tick[4:], strict=True):
            if value is None or (stale_trade and name in TRADE_FIELDS):
                continue
            if getattr(leg, name) != value:
                setattr(leg, name, value)
                changed = True
        if (
            tick.exchange_time is not None
            and not stale_trade
            and leg.exchange_time != tick.exchange_time
        ):
            leg.exchange_time = tick.exchange_time
            changed = True
        if changed:
            self.dirty.add(leg.instrument)
            if tick.oi is not None or tick.prev_oi is not None:
                self.oi_dirty = True
        return changed

    def apply_fields(
        self, instrument: str, fields: Mapping[str, object], observed_at: float
    ) -> bool:
        """Apply a REST row (field name → value; None = not given). Newer wins, as for ticks."""
        leg = self.legs.get(instrument)
        if leg is None or observed_at < leg.observed_at:
            return False
        leg.observed_at = observed_at
        changed = False
        for name, value in fields.items():
            if name not in MARKET_FIELDS:
                raise KeyError(f"unknown leg field {name!r}")
            if value is not None and getattr(leg, name) != value:
                setattr(leg, name, value)
                changed = True
                if name in {"oi", "prev_oi"}:
                    self.oi_dirty = True
        if changed:
            self.dirty.add(instrument)
        return changed

    def apply_spot_value(self, spot: float, observed_at: float) -> None:
        """Apply an underlying price from REST (newer wins)."""
        if spot > 0 and observed_at >= self.spot_observed_at:
            self.spot_observed_at = observed_at
            spot = analytics.to_index_value(spot)
            if spot != self.spot:
                self.spot = spot
                self.header_dirty = True

    def apply_rest(
        self, spot: float | None, rows: Mapping[str, Mapping[str, object]], observed_at: float
    ) -> int:
        """Apply a REST option chain observed at ``observed_at`` (newer wins, per leg and for
        the spot). Rows of instruments outside this chain are skipped. Returns legs changed."""
        if spot:
            self.apply_spot_value(spot, observed_at)
        return sum(
            self.apply_fields(instrument, fields, observed_at)
            for instrument, fields in rows.items()
            if instrument in self.legs
        )

    # --- flush -----------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(self.dirty) or self.header_dirty

    def flush(self, now: datetime) -> Delta | None:
        """Compute analytics and return the delta since the last flush (None if nothing changed).

        IV and greeks: the changed legs' always; every priced leg's when the forward moved or
        time to expiry aged (``FULL_RECOMPUTE_AGING``), so that each leg's IV is that of the
        forward and time the snapshot shows beside it.

        The delta (``contracts.Delta``) holds ``run``, ``seq`` (incremented), ``as_of``, the
        full state of every changed leg under ``legs[strike][CE|PE]`` and ``header``: the
        header fields when they changed, else None.
        """
        if not self.pending:
            return None
        header_before = self._header()
        years = analytics.years_to_expiry(self.expiry, now)
        self._update_forward(years)
        dirty = self.dirty
        if self._inputs_moved(years):
            # a leg without a price has no IV on any forward: only its own changes matter
            targets = [leg for leg in self.legs.values() if leg.ltp is not None]
            targets.extend(self.legs[i] for i in dirty if self.legs[i].ltp is None)
        else:
            targets = [self.legs[i] for i in dirty]
        changed = set(dirty)
        forward, rate = self.forward, self.rate
        for leg in targets:
            if leg.compute(forward=forward, years=years, rate=rate):
                changed.add(leg.instrument)
        if self.oi_dirty:
            self._update_oi_stats()
        self.seq += 1
        self.as_of = now
        header = self._header()
        delta: Delta = {
            "run": self.run,
            "seq": self.seq,
            "as_of": now.isoformat(),
            "legs": self._legs_dict(self.legs[i] for i in changed),
            "header": header if header != header_before or self.header_dirty else None,
        }
        self.dirty.clear()
        self.header_dirty = False
        return delta

    def _update_forward(self, years: float) -> None:
        anchor = self.forward or self.spot
        previous = (self.forward, self.atm_strike)
        if anchor is not None:
            # the nearest strikes lie within FORWARD_PAIRS places of the anchor's (sorted, stable)
            at = bisect_left(self.strikes, anchor)
            window = self.strikes[max(0, at - FORWARD_PAIRS) : at + FORWARD_PAIRS]
            near = sorted(window, key=lambda k: abs(k - anchor))[:FORWARD_PAIRS]
            pairs = []
            for strike in near:
                sides = self.by_strike[strike]
                call, put = sides.get("CE"), sides.get("PE")
                if call is not None and put is not None:
                    pairs.append((strike, call.mid(), put.mid()))
            parity = analytics.forward_from_parity(pairs, years=years, rate=self.rate)
            # on the tick, as shown: the IVs are computed on exactly the forward the page shows
            self.forward = analytics.to_index_tick(parity) if parity is not None else self.spot
        if self.forward is None:
            self.atm_strike = None
        else:  # the nearest strike is one of the two around the forward
            at = bisect_left(self.strikes, self.forward)
            self.atm_strike = analytics.nearest_strike(
                self.strikes[max(0, at - 1) : at + 1], self.forward
            )
        if (self.forward, self.atm_strike) != previous:
            self.header_dirty = True

    def _inputs_moved(self, years: float) -> bool:
        """True (and the inputs remembered) when every priced leg's IV and greeks must be redone:
        the forward is known and differs from the one they were computed on, or the time to
        expiry has aged by ``FULL_RECOMPUTE_AGING`` of itself (or run out) since."""
        forward = self.forward
        if forward is None:
            return False
        last = self._full_inputs
        if (
            last is None
            or forward != last[0]
            or (last[1] > 0 and years < last[1] * (1.0 - FULL_RECOMPUTE_AGING))
        ):
            self._full_inputs = (forward, years)
            return True
        return False

    def _update_oi_stats(self) -> None:
        calls = [s.get("CE") for s in self.by_strike.values()]
        puts = [s.get("PE") for s in self.by_strike.values()]
        pcr = analytics.pcr((p.oi for p in puts if p), (c.oi for c in calls if c))
        oi_by_strike = {
            k: (s["CE"].oi if "CE" in s else None, s["PE"].oi if "PE" in s else None)
            for k, s in self.by_strike.items()
        }
        pain = analytics.max_pain(oi_by_strike)
        if (pcr, pain) != (self.pcr, self.max_pain):
            self.pcr, self.max_pain = pcr, pain
            self.header_dirty = True
        self.oi_dirty = False

    # --- views -----------------------------------------------------------------------------

    def _header(self) -> Header:
        return {
            "spot": self.spot,
            "spot_prev_close": self.spot_prev_close,
            "forward": round_finite(self.forward, 2),
            "atm_strike": self.atm_strike,
            "pcr": round_finite(self.pcr, 4),
            "max_pain": self.max_pain,
        }

    def _legs_dict(self, legs: Iterable[Leg]) -> Strikes:
        out: Strikes = {}
        for leg in legs:
            out.setdefault(self.strike_keys[leg.strike], {})[leg.option_type] = leg_json(leg)
        return out

    def snapshot(self) -> Snapshot:
        """The whole chain (``contracts.Snapshot``): the API's ``data`` without ``source``."""
        return {
            "underlying": self.underlying,
            "expiry": self.expiry.isoformat(),
            "lot_size": self.lot_size,
            "strike_interval": self.strike_interval,
            **self._header(),
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "run": self.run,
            "seq": self.seq,
            "strikes": self._legs_dict(self.legs.values()),
        }

    def stats(self) -> ChainStats:
        """Population statistics: strikes, legs, legs priced, whether the spot is known."""
        priced = sum(1 for leg in self.legs.values() if leg.priced)
        return {
            "underlying": self.underlying,
            "expiry": self.expiry.isoformat(),
            "strikes": len(self.strikes),
            "legs": len(self.legs),
            "legs_priced": priced,
            "spot": self.spot,
        }

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): ready when the spot is known and at least half the legs are priced."""
        priced = sum(1 for leg in self.legs.values() if leg.priced)
        if self.spot is None:
            return False, f"no price for the underlying {self.underlying} yet"
        if priced * 2 < len(self.legs):
            return False, f"only {priced} of {len(self.legs)} legs have a price"
        return True, f"{priced} of {len(self.legs)} legs priced"


def stored_snapshot(chain: ChainBook, *, account: str, broker: str) -> StoredSnapshot:
    """The chain as Redis and the database store it (``contracts.StoredSnapshot``): the API
    shape plus its feed bookkeeping (``account``, ``broker``, ``ready``, ``reason``)."""
    ready, reason = chain.readiness()
    return {
        **chain.snapshot(),
        "account": account,
        "broker": broker,
        "ready": ready,
        "reason": reason,
    }


def _strike_key(strike: float) -> str:
    return str(int(strike)) if float(strike).is_integer() else f"{strike:g}"


def _interval(strikes: list[float]) -> float | None:
    gaps = [b - a for a, b in itertools.pairwise(strikes) if b > a]
    if not gaps:
        return None
    return max(Counter(gaps).items(), key=lambda item: (item[1], -item[0]))[0]


class FeedBook:
    """Routes one feed's ticks to the chains they belong to (one writer per chain)."""

    def __init__(self, chains: Iterable[ChainBook]) -> None:
        self.chains: dict[tuple[str, date], ChainBook] = {}
        self._legs: dict[str, tuple[ChainBook, Leg]] = {}
        self._indices: dict[str, list[ChainBook]] = {}
        for chain in chains:
            self.chains[chain.key] = chain
            for instrument, leg in chain.legs.items():
                if instrument in self._legs:
                    raise ValueError(f"instrument {instrument} is in two chains")
                self._legs[instrument] = (chain, leg)
            self._indices.setdefault(chain.index_instrument, []).append(chain)
        self.ticks_applied = 0
        self.ticks_unrouted = 0

    def instruments(self) -> list[str]:
        """Every instrument id to subscribe: indices first, then legs."""
        return [*self._indices, *self._legs]

    def apply(self, tick: Tick, observed_at: float) -> bool:
        """Route one tick; True when it changed a chain. Unknown instruments are counted."""
        target = self._legs.get(tick.instrument)
        if target is not None:
            self.ticks_applied += 1
            return target[0].apply_tick(target[1], tick, observed_at)
        chains = self._indices.get(tick.instrument)
        if chains is None:
            self.ticks_unrouted += 1
            return False
        self.ticks_applied += 1
        changed = False
        for chain in chains:
            changed = chain.apply_spot(tick, observed_at) or changed
        return changed

    def flush(self, now: datetime | None = None) -> list[tuple[ChainBook, Delta]]:
        """Flush every chain with pending changes; returns (chain, delta) pairs."""
        now = now or datetime.now(UTC)
        out = []
        for chain in self.chains.values():
            delta = chain.flush(now)
            if delta is not None:
                out.append((chain, delta))
        return out
