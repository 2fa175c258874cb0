"""The simulator's market model: a seeded, deterministic generator of tick events.

Pure Python, no Django, no I/O. ``Market.step()`` draws the next event from the seeded RNG and
returns it as a ``SimTick``; nothing here reads a clock. Time is virtual: step *n* happens at
``start + n × step_seconds`` (``advance_to`` may jump it forward), so the same seed, start and
universe give the same first N ticks however fast a scheduler calls ``step``.

Model:

* each index moves on a day of its own (``day.Drift``): a level that trends (the day's
  direction and size are drawn from the seed) with a little noise, and a mean-reverting
  (Ornstein–Uhlenbeck) deviation around it; advanced over the simulated time since its last
  tick whenever the index ticks;
* each option is priced with Black-76 (``chains.black76``) on the forward ``spot·e^{carry·T}``
  with a volatility smile and put skew around an at-the-money volatility that wanders slowly,
  the whole smile of an expiry scaled by its selling pressure (``day.Pressure``): options
  written (opened at the bid) lift the expiry's IV, bought ones lower it, and the pressure
  fades over half an hour — the smile's shape (IV over ATM IV per strike) is unchanged;
* the book straddles the theoretical price on the 0.05 grid (wider for dearer options); each
  option event is a trade at the bid or the ask, volume grows by whole lots; about a third of
  trades open (mostly written, at the bid) or close positions, more and larger ones at round
  strikes (multiples of 100, more of 500 and 1000: ``day.roundness``), so OI builds there;
* a trade stands for ``step_seconds`` of simulated trading: its size scales with it, so OI,
  volume and IV pressure per simulated minute do not depend on the step rate or the speed;
* instruments near the money and of near expiries tick more often (static weights);
* previous close / OI / volume are set at start so that the day's change is plausible.

The event type is in ``events``, the model's pricing rules in ``pricing``; when the exchange
trades, in ``session``.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from itertools import accumulate

from chains import black76

from .day import Drift, Pressure, roundness
from .events import SimTick
from .pricing import CARRY, MIN_YEARS, YEAR_SECONDS, grid, smile_vol
from .universe import INDEX, Instrument, Universe, expiry_close

INDEX_WEIGHT = 0.5  # relative tick frequency of an index (a near-ATM leg weighs ~1)
MAX_INDEX_SHARE = 0.02  # at most this share of the steps ticks each index
INDEX_SHARE_PER_SECOND = 0.25  # the share per simulated second a step stands for
BASE_STEP_SECONDS = 0.001  # the step a trade of unscaled size stands for (1000 steps/s)
VOL_REVERSION_SECONDS = 1800.0  # the ATM volatility's wander reverts over half an hour


@dataclass(slots=True)
class _Underlying:
    spot: float
    vol: float  # current at-the-money volatility (before selling pressure)
    base_vol: float
    last: float  # virtual time of the last spot move
    drift: Drift


class Market:
    """The live state of every instrument of ``universe`` and the seeded event generator.

    ``start`` is the virtual time (epoch seconds) of step 0; each step advances it by
    ``step_seconds`` (> 0). Raises ValueError for a non-positive ``step_seconds``.
    """

    def __init__(self, universe: Universe, *, seed: int, start: float, step_seconds: float) -> None:
        if not step_seconds > 0:
            raise ValueError(f"step_seconds must be > 0, got {step_seconds!r}")
        self.universe = universe
        self.seed = seed
        self.step_seconds = step_seconds
        self.steps = 0
        self._base = start
        self._since_base = 0
        self._rng = random.Random(seed)
        self._size = max(1.0, step_seconds / BASE_STEP_SECONDS)
        self._underlyings: dict[str, _Underlying] = {}
        self._pressure = {chain: Pressure(start) for chain in universe.chains}
        # Called with each simulated minute boundary the market passes, before the first step
        # at or after it (the state then is the state at the boundary: every event stamped
        # before it, none stamped at or after it); see ``truth``.
        self.on_minute: Callable[[float], None] | None = None
        self._next_minute = _minute_after(start)
        for spec in universe.specs:
            self._init_underlying(spec.symbol)
        for instrument in universe.instruments:
            if instrument.kind != INDEX:
                self._init_option(instrument, start)
        self._instruments = universe.instruments
        self._weigh()

    def _weigh(self) -> None:
        """Set the indices' tick frequency for the step: a step that stands for more time
        ticks each index more often (up to ``MAX_INDEX_SHARE`` of the steps), so that the
        index still moves every few simulated seconds at a high speed."""
        options = sum(i.weight for i in self._instruments if i.kind != INDEX)
        share = min(MAX_INDEX_SHARE, self.step_seconds * INDEX_SHARE_PER_SECOND)
        for index in self.universe.indices.values():
            index.weight = max(INDEX_WEIGHT, options * share)
        self._cum = list(accumulate(i.weight for i in self._instruments))
        self._total = self._cum[-1]

    # --- clock -------------------------------------------------------------------------------

    def now(self) -> float:
        """The virtual time (epoch seconds) of the last step (on the microsecond: the same
        double for the same step however it is reached, so a step on a minute boundary is
        on it, not a rounding error after it)."""
        return round(self._base + self._since_base * self.step_seconds, 6)

    def advance_to(self, at: float) -> None:
        """Jump the virtual clock forward to ``at`` (no events); earlier times are ignored."""
        if at > self.now():
            if at > self._next_minute:
                self._pass_minute(at, event=False)
            self._base, self._since_base = at, 0

    def set_step_seconds(self, step_seconds: float) -> None:
        """Change the virtual time of one step from now on (the clock does not jump)."""
        if not step_seconds > 0:
            raise ValueError(f"step_seconds must be > 0, got {step_seconds!r}")
        self._base, self._since_base = self.now(), 0
        self.step_seconds = step_seconds
        self._size = max(1.0, step_seconds / BASE_STEP_SECONDS)
        self._weigh()

    def record(self, steps: int) -> list[SimTick]:
        """``steps`` events drawn ahead of time (for a ``Tape``): the instruments' state moves
        on, the clock and the step count do not — the events are counted and timed when
        replayed — and no instrument shows a trade later than the clock meanwhile."""
        clock = self._base, self._since_base, self.steps, self._next_minute, self.on_minute
        self.on_minute = None  # the tape's steps are not the market at their replayed times
        ticks = self.run(steps)
        self._base, self._since_base, self.steps, self._next_minute, self.on_minute = clock
        now = self.now()
        for instrument in self._instruments:
            instrument.ltt = min(instrument.ltt, now)
        return ticks

    def skip(self, steps: int) -> float:
        """Advance the clock and the step count by ``steps`` without drawing events (a tape
        replays them); returns the virtual time of the first of those steps."""
        first = round(self._base + (self._since_base + 1) * self.step_seconds, 6)
        self.steps += steps
        self._since_base += steps
        return first

    # --- state -------------------------------------------------------------------------------

    def spot(self, symbol: str) -> float:
        """The current (true) level of an index."""
        return self._underlyings[symbol].spot

    def atm_vol(self, symbol: str) -> float:
        return self._underlyings[symbol].vol

    def level(self, symbol: str) -> float:
        """The level the index reverts to now (its trend line)."""
        return self._underlyings[symbol].drift.level()

    def pressure(self, symbol: str, expiry: date, at: float | None = None) -> float:
        """The selling pressure of an expiry at virtual time ``at`` (default now): the
        fraction its whole smile is lifted by (negative: lowered)."""
        return self._pressure[(symbol, expiry)].at(self.now() if at is None else at)

    def chain_atm_iv(self, symbol: str, expiry: date, at: float | None = None) -> float:
        """The IV an option struck at the forward of ``expiry`` would have at ``at``."""
        u = self._underlyings[symbol]
        at = self.now() if at is None else at
        years = max((expiry_close(expiry).timestamp() - at) / YEAR_SECONDS, MIN_YEARS)
        forward = u.spot * math.exp(CARRY * years)
        lift = 1.0 + self._pressure[(symbol, expiry)].at(at)
        return smile_vol(u.vol, forward, forward, years) * lift

    def pricing(
        self, instrument: Instrument, at: float | None = None
    ) -> tuple[float, float, float]:
        """(forward, years, vol) of an option at virtual time ``at`` (default now)."""
        u = self._underlyings[instrument.spec.symbol]
        at = self.now() if at is None else at
        years = max((instrument.expires_at - at) / YEAR_SECONDS, MIN_YEARS)
        forward = u.spot * math.exp(CARRY * years)
        assert instrument.strike is not None and instrument.expiry is not None
        lift = 1.0 + self._pressure[(instrument.spec.symbol, instrument.expiry)].at(at)
        return forward, years, smile_vol(u.vol, forward, instrument.strike, years) * lift

    def true_price(self, instrument: Instrument) -> float:
        """The index level, or the option's Black-76 value now (not rounded to the grid)."""
        if instrument.kind == INDEX:
            return self.spot(instrument.spec.symbol)
        forward, years, vol = self.pricing(instrument)
        assert instrument.strike is not None
        return black76.price(
            call=instrument.is_call, forward=forward, strike=instrument.strike, years=years, vol=vol
        )

    def snapshot(self, instrument: Instrument) -> SimTick:
        """The instrument's current state as an event (no RNG draw, no state change)."""
        i = instrument
        return SimTick(
            i,
            i.ltt,
            i.ltp,
            i.ltq,
            i.volume,
            i.oi,
            i.bid,
            i.bid_qty,
            i.ask,
            i.ask_qty,
            i.avg_price,
            i.open,
            i.high,
            i.low,
            i.total_buy_qty,
            i.total_sell_qty,
            i.oi_day_high,
            i.oi_day_low,
            i.iv,
            i.forward,
            i.years,
        )

    @staticmethod
    def greeks(tick: SimTick) -> black76.Greeks | None:
        """Delta, gamma, theta/day, vega/point of an option event; None for an index."""
        i = tick.instrument
        if i.kind == INDEX or tick.iv is None:
            return None
        assert i.strike is not None
        return black76.greeks(
            call=i.is_call, forward=tick.forward, strike=i.strike, years=tick.years, vol=tick.iv
        )

    @staticmethod
    def depth(tick: SimTick) -> tuple[tuple[int, int, int, int, float, float], ...]:
        """Five book levels ``(bid_qty, ask_qty, bid_orders, ask_orders, bid, ask)``, best
        first, derived from the top of book; a bid level below one tick is empty (all 0).

        Prices step in whole 0.05 ticks: level n of a book on the grid is (ticks ∓ n) / 20,
        the same double as ``round(bid ∓ 0.05·n, 2)`` at a fifth of the cost (a Dhan Full
        packet is built around this); a book off the grid takes the rounding way.
        """
        lot = tick.instrument.spec.lot_size if tick.instrument.kind != INDEX else 1
        bid_ticks, ask_ticks = round(tick.bid * 20.0), round(tick.ask * 20.0)
        if bid_ticks / 20.0 != tick.bid or ask_ticks / 20.0 != tick.ask:
            return _depth_rounded(tick, lot)
        bid_qty, ask_qty = tick.bid_qty, tick.ask_qty
        levels = []
        for n in range(1, 6):
            ticks = bid_ticks - n + 1
            bq, aq = (bid_qty * n if ticks >= 1 else 0), ask_qty * n
            levels.append(
                (
                    bq,
                    aq,
                    (bq // lot + 1) // 2 if bq else 0,
                    (aq // lot + 1) // 2,
                    ticks / 20.0 if bq else 0.0,
                    (ask_ticks + n - 1) / 20.0,
                )
            )
        return tuple(levels)

    # --- events ------------------------------------------------------------------------------

    def step(self) -> SimTick:
        """Advance one step and return its event (deterministic given seed and history)."""
        self.steps += 1
        self._since_base += 1
        at = round(self._base + self._since_base * self.step_seconds, 6)
        if at >= self._next_minute:  # an event on the boundary belongs to the minute after it
            self._pass_minute(at, event=True)
        rng = self._rng
        instrument = self._instruments[bisect(self._cum, rng.random() * self._total)]
        if instrument.kind == INDEX:
            self._move_index(instrument, at)
        else:
            self._trade(instrument, at)
        return self.snapshot(instrument)

    def run(self, steps: int) -> list[SimTick]:
        """``steps`` consecutive events."""
        step = self.step
        return [step() for _ in range(steps)]

    def _pass_minute(self, at: float, *, event: bool) -> None:
        """Tell ``on_minute`` of the minute boundary just passed (once, however many minutes
        a jump passed: the state did not change in between) and wait for the next one: the
        first after ``at`` when an ``event`` happens at ``at`` (a boundary at ``at`` is then
        passed), else the first at or after it."""
        if self.on_minute is not None:
            self.on_minute(self._next_minute)
        self._next_minute = math.floor(at / 60.0) * 60.0 + 60.0 if event else _minute_after(at)

    def _move_index(self, instrument: Instrument, at: float) -> None:
        rng = self._rng
        u = self._underlyings[instrument.spec.symbol]
        elapsed = max(at - u.last, 0.0)
        u.last = at
        u.spot = u.drift.move(elapsed, rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0))
        # The ATM volatility wanders slowly and reverts to its base level.
        pull = 1.0 - math.exp(-elapsed / VOL_REVERSION_SECONDS)
        wander = 0.02 * u.base_vol * math.sqrt(min(elapsed, 60.0) / VOL_REVERSION_SECONDS)
        u.vol += pull * (u.base_vol - u.vol) + wander * rng.gauss(0.0, 1.0)
        ltp = grid(u.spot)
        instrument.ltp = ltp
        instrument.ltt = at
        instrument.high = max(instrument.high, ltp)
        instrument.low = min(instrument.low, ltp)

    def _quote(self, instrument: Instrument, theo: float) -> None:
        """Set bid/ask around ``theo`` on the grid: wider for dearer options."""
        rng = self._rng
        spread = 1 + int(theo * 0.012) + (rng.random() < 0.3)
        bid = math.floor((theo - spread * 0.025) * 20.0) / 20.0
        bid = round(max(bid, 0.05), 2)
        instrument.bid = bid
        instrument.ask = round(bid + spread * 0.05, 2)
        lot = instrument.spec.lot_size
        instrument.bid_qty = lot * (1 + int(rng.random() * 30))
        instrument.ask_qty = lot * (1 + int(rng.random() * 30))

    def _trade(self, instrument: Instrument, at: float) -> None:
        rng = self._rng
        forward, years, vol = self.pricing(instrument, at)
        assert instrument.strike is not None and instrument.expiry is not None
        theo = black76.price(
            call=instrument.is_call, forward=forward, strike=instrument.strike, years=years, vol=vol
        )
        self._quote(instrument, theo)
        lot, size = instrument.spec.lot_size, self._size
        r = rng.random()
        change = 0
        if r < 0.3:  # about a third of trades open or close positions, more at round strikes
            weight = roundness(instrument.strike)
            change = lot * max(1, int((1 + int(r * 20)) * weight * size))
            if rng.random() < min(0.5 + 0.06 * weight, 0.8):  # opening: mostly written
                buy = rng.random() >= 0.65
                self._pressure[(instrument.spec.symbol, instrument.expiry)].add(
                    at, -change / lot if buy else change / lot
                )
            else:
                buy = rng.random() < 0.5
                change = -change
        else:
            buy = rng.random() < 0.5
        ltq = lot * max(1, int((1 + int(rng.expovariate(0.6))) * size))
        ltp = instrument.ask if buy else instrument.bid
        instrument.ltp, instrument.ltq, instrument.ltt = ltp, ltq, at
        instrument.volume += ltq
        instrument.turnover += ltp * ltq
        instrument.high = max(instrument.high, ltp)
        instrument.low = min(instrument.low, ltp)
        if buy:
            instrument.total_buy_qty += ltq
        else:
            instrument.total_sell_qty += ltq
        if change:
            instrument.oi = max(instrument.oi + change, 0)
            instrument.oi_day_high = max(instrument.oi_day_high, instrument.oi)
            instrument.oi_day_low = min(instrument.oi_day_low, instrument.oi)
        instrument.iv, instrument.forward, instrument.years = vol, forward, years

    # --- initial state ----------------------------------------------------------------------

    def _init_underlying(self, symbol: str) -> None:
        rng = self._rng
        index = self.universe.indices[symbol]
        spec = index.spec
        spot = spec.spot * (1.0 + 0.003 * rng.gauss(0.0, 1.0))
        base_vol = spec.vol * (1.0 + 0.05 * rng.gauss(0.0, 1.0))
        self._underlyings[symbol] = _Underlying(
            spot=spot,
            vol=base_vol,
            base_vol=base_vol,
            last=self._base,
            drift=Drift.draw(rng, spot=spot, vol=base_vol),
        )
        prev_close = grid(spot * (1.0 - 0.006 * rng.gauss(0.0, 1.0)))
        opened = grid(prev_close * (1.0 + 0.002 * rng.gauss(0.0, 1.0)))
        index.ltp = grid(spot)
        index.ltt = self._base - 1.0
        index.prev_close, index.open = prev_close, opened
        index.high = grid(max(opened, index.ltp) * (1.0 + abs(0.002 * rng.gauss(0.0, 1.0))))
        index.low = grid(min(opened, index.ltp) * (1.0 - abs(0.002 * rng.gauss(0.0, 1.0))))
        index.bid = index.ask = index.ltp
        index.weight = INDEX_WEIGHT

    def _init_option(self, instrument: Instrument, start: float) -> None:
        rng = self._rng
        spec = instrument.spec
        symbol = spec.symbol
        u = self._underlyings[symbol]
        index = self.universe.indices[symbol]
        expiries = self.universe.expiries[symbol]
        assert instrument.expiry is not None and instrument.strike is not None
        rank = expiries.index(instrument.expiry)
        distance = (instrument.strike - u.spot) / spec.strike_step
        liquidity = math.exp(-0.5 * (distance / 6.0) ** 2)
        instrument.weight = 0.5**rank * (liquidity + 0.02)
        lot = spec.lot_size
        forward, years, vol = self.pricing(instrument, start)
        call = instrument.is_call
        theo = black76.price(
            call=call, forward=forward, strike=instrument.strike, years=years, vol=vol
        )
        yesterday = years + 1.0 / 365.0
        prev_forward = index.prev_close * math.exp(CARRY * yesterday)
        prev_vol = smile_vol(u.vol, prev_forward, instrument.strike, yesterday)
        prev = black76.price(
            call=call, forward=prev_forward, strike=instrument.strike, years=yesterday, vol=prev_vol
        )
        instrument.prev_close = max(grid(prev), 0.05)
        self._quote(instrument, theo)
        instrument.ltp = instrument.ask if rng.random() < 0.5 else instrument.bid
        instrument.ltt = start - 1.0 - 30.0 * rng.random()
        instrument.ltq = lot
        base_oi = 4000.0 * (liquidity + 0.05) * 0.6**rank * roundness(instrument.strike)
        instrument.prev_oi = lot * int(base_oi * (0.8 + 0.4 * rng.random()))
        instrument.oi = max(lot * int(instrument.prev_oi / lot * (0.85 + 0.3 * rng.random())), 0)
        instrument.oi_day_high = max(instrument.oi, instrument.prev_oi)
        instrument.oi_day_low = min(instrument.oi, instrument.prev_oi)
        instrument.prev_volume = lot * int(20000.0 * (liquidity + 0.02) * 0.5**rank * rng.random())
        instrument.volume = lot * int(8000.0 * (liquidity + 0.02) * 0.5**rank * rng.random()) + lot
        avg = max(instrument.ltp * (1.0 + 0.03 * rng.gauss(0.0, 1.0)), 0.05)
        instrument.turnover = avg * instrument.volume
        opened = max(grid(instrument.prev_close * (1.0 + 0.05 * rng.gauss(0.0, 1.0))), 0.05)
        instrument.open = opened
        instrument.high = max(opened, instrument.ltp, grid(avg))
        instrument.low = min(opened, instrument.ltp, grid(avg))
        instrument.total_buy_qty = lot * (50 + int(500 * rng.random()))
        instrument.total_sell_qty = lot * (50 + int(500 * rng.random()))
        instrument.iv, instrument.forward, instrument.years = vol, forward, years


def _minute_after(at: float) -> float:
    """The first minute boundary (epoch seconds) at or after ``at``."""
    return math.ceil(at / 60.0) * 60.0


def _depth_rounded(tick: SimTick, lot: int) -> tuple[tuple[int, int, int, int, float, float], ...]:
    """``Market.depth`` of a book whose prices are not on the 0.05 grid."""
    levels = []
    for n in range(5):
        bid = round(tick.bid - 0.05 * n, 2)
        ask = round(tick.ask + 0.05 * n, 2)
        bid_qty = tick.bid_qty * (n + 1) if bid >= 0.05 else 0
        ask_qty = tick.ask_qty * (n + 1)
        levels.append(
            (
                bid_qty,
                ask_qty,
                (bid_qty // lot + 1) // 2 if bid_qty else 0,
                (ask_qty // lot + 1) // 2,
                bid if bid_qty else 0.0,
                ask,
            )
        )
    return tuple(levels)
