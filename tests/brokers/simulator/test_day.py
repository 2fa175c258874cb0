"""The simulated day: trend and mean reversion of the index, OI built at round strikes, IV
lifted by writing with the smile's shape kept, the clock, the session's exact changes, and
the per-minute truth — all deterministic from the seed and the simulated times."""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import UTC, date, datetime

import pytest

from brokers.simulator.app import Simulator
from brokers.simulator.clock import SimClock
from brokers.simulator.config import SimConfig
from brokers.simulator.day import roundness
from brokers.simulator.market import Market
from brokers.simulator.pricing import smile_vol
from brokers.simulator.session import Session
from brokers.simulator.truth import Truth
from brokers.simulator.universe import IST, Universe
from chains import black76

OPEN = datetime(2026, 3, 2, 9, 15, tzinfo=IST)  # a Monday
SESSION_STEP = 0.2  # simulated seconds per step: a session is 112 500 steps


def _market(seed: int = 5, *, step: float = SESSION_STEP, strikes: int = 10) -> Market:
    universe = Universe(OPEN, strikes=strikes)
    return Market(universe, seed=seed, start=OPEN.timestamp(), step_seconds=step)


class _Session:
    """A whole simulated session of one market, with its truth and every tick."""

    def __init__(self, seed: int = 5) -> None:
        self.market = market = _market(seed)
        self.truth = Truth(market)
        self.levels: list[tuple[float, float, float]] = []  # (minute, NIFTY spot, level)

        def on_minute(at: float) -> None:
            self.truth.record(at)
            self.levels.append((at, market.spot("NIFTY"), market.level("NIFTY")))

        market.on_minute = on_minute
        self.ticks = market.run(int(22500 / SESSION_STEP))


@pytest.fixture(scope="module")
def session() -> _Session:
    return _Session()


def _expiry(market: Market) -> date:
    return market.universe.expiries["NIFTY"][0]


# --- determinism --------------------------------------------------------------------------


def test_same_seed_and_start_give_the_same_truth_at_the_same_minutes_however_batched():
    one, two, other = _market(7, step=0.5), _market(7, step=0.5), _market(8, step=0.5)
    truths = []
    for market, batches in ((one, [7200]), (two, [1, 999, 3000, 3200]), (other, [7200])):
        truth = Truth(market)
        market.on_minute = truth.record
        for n in batches:
            market.run(n)
        truths.append(truth)
    expiry = _expiry(one)
    for minute in (1, 17, 59):
        at = OPEN.timestamp() + 60 * minute
        a, b, c = (t.chain("NIFTY", expiry, at) for t in truths)
        assert a == b and a["time"] == datetime.fromtimestamp(at, UTC).isoformat(
            timespec="milliseconds"
        )
        assert a != c


def test_truth_at_a_minute_is_the_state_after_every_step_before_it():
    market = _market(3, step=0.25)
    truth = Truth(market)
    market.on_minute = truth.record
    boundary = OPEN.timestamp() + 120
    market.run(479)  # up to 09:16:59.75: the step at 09:17:00 belongs to the minute after
    live = truth.chain("NIFTY", _expiry(market))
    market.run(1)
    assert market.now() == boundary
    recorded = truth.chain("NIFTY", _expiry(market), boundary)
    assert (recorded["legs"], recorded["spot"]) == (live["legs"], live["spot"])
    market.run(300)
    assert truth.chain("NIFTY", _expiry(market), boundary + 59.9) == recorded
    with pytest.raises(LookupError, match="after the simulated time now"):
        truth.chain("NIFTY", _expiry(market), market.now() + 1)
    with pytest.raises(LookupError, match="no minute held"):
        truth.chain("NIFTY", _expiry(market), OPEN.timestamp() - 1)
    with pytest.raises(KeyError):
        truth.chain("NIFTY", market.universe.expiries["NIFTY"][-1])


# --- the moving day -----------------------------------------------------------------------


def test_the_index_trends_over_the_session(session):
    spots = [spot for _, spot, _ in session.levels]
    levels = [level for _, _, level in session.levels]
    move = levels[-1] / levels[0] - 1
    assert abs(move) > 0.003  # the trend line moved by more than 0.3 %
    assert (spots[-1] - spots[0]) * move > 0  # and the spot went its way
    # The trend explains most of the spot's path: a straight line fits it well.
    minutes = list(range(len(spots)))
    slope, intercept = statistics.linear_regression(minutes, spots)
    residual = sum((s - (slope * m + intercept)) ** 2 for m, s in zip(minutes, spots, strict=True))
    total = sum((s - statistics.fmean(spots)) ** 2 for s in spots)
    assert 1 - residual / total > 0.5


def test_the_index_reverts_to_its_trend_line(session):
    deviations = [math.log(spot / level) for _, spot, level in session.levels]
    crossings = sum(1 for a, b in itertools.pairwise(deviations) if a * b < 0)
    assert crossings >= 8
    assert max(abs(d) for d in deviations) < 0.012  # never far from the line

    def autocorrelation(lag: int) -> float:
        return statistics.correlation(deviations[:-lag], deviations[lag:])

    # Persistent from minute to minute, forgotten within the hour (half-life 15 minutes).
    assert autocorrelation(1) > 0.8
    assert autocorrelation(60) < 0.3


def test_open_interest_builds_more_at_round_strikes(session):
    market = session.market
    chain = market.universe.chains[("NIFTY", _expiry(market))]
    first = session.truth.chain("NIFTY", _expiry(market), OPEN.timestamp())
    start = {(leg["strike"], leg["side"]): leg["oi"] for leg in first["legs"]}
    built: dict[float, list[int]] = {}
    for strike, legs in chain.items():
        for side, leg in legs.items():
            built.setdefault(roundness(strike), []).append(leg.oi - start[(strike, side)])
    means = {weight: statistics.fmean(changes) for weight, changes in built.items()}
    assert set(means) >= {1.0, 2.0, 4.0}
    assert means[4.0] > means[2.0] > means[1.0] > 0


def test_iv_rises_where_options_are_written(session):
    """Per 15 minutes of the nearest NIFTY expiry: the lots written to open (OI up at the bid)
    minus those bought to open (OI up at the ask), against the chain's ATM IV change."""
    market = session.market
    expiry = _expiry(market)
    lot = market.universe.indices["NIFTY"].spec.lot_size
    window = 900.0
    net: dict[int, float] = {}
    last_oi: dict[int, int] = {}
    for tick in session.ticks:
        i = tick.instrument
        if i.spec.symbol != "NIFTY" or i.expiry != expiry:
            continue
        before = last_oi.get(i.index, i.prev_oi)
        last_oi[i.index] = tick.oi
        if tick.oi > before and before:
            sign = 1 if tick.ltp == tick.bid else -1
            slot = int((tick.at - OPEN.timestamp()) // window)
            net[slot] = net.get(slot, 0.0) + sign * (tick.oi - before) / lot
    ivs = {
        slot: session.truth.chain("NIFTY", expiry, OPEN.timestamp() + slot * window)["atm_iv"]
        for slot in range(26)
    }
    slots = range(25)
    written = [net.get(s, 0.0) for s in slots]
    lifted = [ivs[s + 1] - ivs[s] for s in slots]
    assert statistics.correlation(written, lifted) > 0.3
    assert sum(written) > 0 and ivs[25] > ivs[0]  # a day of writing lifted the IV


def test_selling_pressure_lifts_the_whole_smile_and_keeps_its_shape(session):
    market = session.market
    expiry = _expiry(market)
    assert market.pressure("NIFTY", expiry) > 0.01
    chain = market.universe.chains[("NIFTY", expiry)]
    ratios = []
    for strike in sorted(chain):
        forward, years, vol = market.pricing(chain[strike]["CE"])
        ratios.append(vol / smile_vol(market.atm_vol("NIFTY"), forward, strike, years))
    lift = 1 + market.pressure("NIFTY", expiry)
    assert ratios == pytest.approx([lift] * len(ratios), rel=1e-12)


def test_books_straddle_the_black76_price_at_the_ticks_iv(session):
    """What the product recomputes IV from (the book) is the model's Black-76 price at the
    IV the tick carries, the selling pressure included."""
    volumes: dict[int, int] = {}
    for tick in session.ticks[-3000:]:
        i = tick.instrument
        if i.kind != "option":
            continue
        theo = black76.price(
            call=i.is_call, forward=tick.forward, strike=i.strike, years=tick.years, vol=tick.iv
        )
        assert tick.bid - 0.05 <= theo <= tick.ask + 0.05 and tick.bid <= tick.ltp <= tick.ask
        assert tick.volume > volumes.get(i.index, 0)
        volumes[i.index] = tick.volume


# --- the clock and the session's exact changes --------------------------------------------


class _Real:
    """A real-time clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_clock_runs_speed_times_real_time_and_can_be_held_back():
    real = _Real()
    clock = SimClock(OPEN.timestamp(), speed=60, real=real)
    real.now += 2.5
    assert clock.now() == OPEN.timestamp() + 150
    clock.hold(OPEN.timestamp() + 100)
    assert clock.now() == OPEN.timestamp() + 100 and clock.held == 50
    clock.hold(OPEN.timestamp() + 200)  # never forward
    assert clock.now() == OPEN.timestamp() + 100
    with pytest.raises(ValueError, match="speed"):
        SimClock(0.0, speed=0)


def test_the_session_names_its_next_change():
    hours = Session(exchange_hours=True)
    pre = datetime(2026, 3, 2, 9, 0, tzinfo=IST).timestamp()
    assert hours.next_change(pre - 1) == pre
    assert hours.next_change(pre) == OPEN.timestamp()
    close = datetime(2026, 3, 2, 15, 30, tzinfo=IST).timestamp()
    assert hours.next_change(OPEN.timestamp()) == close
    friday_close = datetime(2026, 3, 6, 15, 30, tzinfo=IST).timestamp()
    assert hours.next_change(friday_close) is None  # the weekend: nothing within two days
    assert Session().next_change(close) is None


def _simulator(start: datetime, *, speed: float, seed: int = 9) -> tuple[Simulator, _Real]:
    config = SimConfig(
        seed=seed, start=start, speed=speed, strikes=3, exchange_hours=True, ticks_per_second=200
    )
    sim = Simulator(config)
    real = _Real()
    sim.clock = SimClock(start.timestamp(), speed=speed, real=real)
    return sim, real


def _beats(sim: Simulator, real: _Real, beats: list[float]) -> None:
    for seconds in beats:
        real.now += seconds
        sim.tick_once(real.now)


def test_the_scheduler_opens_and_closes_at_the_exact_simulated_instants():
    before = datetime(2026, 3, 2, 9, 14, 50, tzinfo=IST)
    sim, real = _simulator(before, speed=60)
    _beats(sim, real, [0.05] * 5)  # 15 simulated seconds: 09:15:05
    assert sim.faults.market_status == "NORMAL_OPEN"
    first = sim.market.now()
    assert sim.market.steps == round((first - OPEN.timestamp()) / sim.market.step_seconds)
    closing = datetime(2026, 3, 2, 15, 29, 50, tzinfo=IST)
    sim, real = _simulator(closing, speed=60)
    _beats(sim, real, [0.05] * 5)
    close = datetime(2026, 3, 2, 15, 30, tzinfo=IST).timestamp()
    assert sim.faults.market_status == "NORMAL_CLOSE"
    assert close - sim.market.step_seconds < sim.market.now() or sim.market.now() >= close
    last = max(i.ltt for i in sim.universe.instruments)
    assert close - sim.market.step_seconds <= last < close


def test_the_market_at_a_simulated_minute_does_not_depend_on_the_beats():
    one, real_one = _simulator(OPEN, speed=60)
    two, real_two = _simulator(OPEN, speed=60)
    _beats(one, real_one, [0.05] * 200)  # 10 real seconds: ten simulated minutes
    _beats(two, real_two, [0.013, 0.31, 0.002, 0.4] * 14)
    _beats(two, real_two, [10.0 - 0.725 * 14])
    expiry = one.universe.expiries["NIFTY"][0]
    for minute in (1, 4, 9):
        at = OPEN.timestamp() + 60 * minute
        assert one.truth.chain("NIFTY", expiry, at) == two.truth.chain("NIFTY", expiry, at)


def test_a_scheduler_that_falls_behind_holds_the_clock_back():
    sim, real = _simulator(OPEN, speed=60)
    _beats(sim, real, [30.0])  # the process was paused for 30 s: half an hour simulated
    assert sim.clock.held > 0 and sim.skipped_steps > 0
    assert sim.clock.now() == pytest.approx(sim.market.now())
