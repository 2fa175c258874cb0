"""The pure market model and universe: determinism, contract specs, prices on the grid."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from brokers.simulator.market import Market, grid
from brokers.simulator.universe import IST, UNDERLYINGS_BY_SYMBOL, Universe, expiries_for

NOW = datetime(2026, 1, 7, 10, 0, tzinfo=IST)  # a Wednesday


def _market(seed: int = 3, *, strikes: int = 10) -> Market:
    return Market(
        Universe(NOW, strikes=strikes), seed=seed, start=NOW.timestamp(), step_seconds=0.01
    )


def test_same_seed_gives_the_same_first_ticks_and_another_seed_does_not():
    def key(tick):
        return (tick.instrument.security_id, *tick[1:])

    first, again, other = _market(3).run(2000), _market(3).run(2000), _market(4).run(2000)
    assert [key(t) for t in first] == [key(t) for t in again]
    assert [key(t) for t in first] != [key(t) for t in other]


def test_batching_does_not_change_the_sequence():
    one, two = _market(), _market()
    batched = one.run(300) + one.run(700)
    single = [two.step() for _ in range(1000)]
    assert [(t.instrument.index, t.ltp, t.at) for t in batched] == [
        (t.instrument.index, t.ltp, t.at) for t in single
    ]


def test_expiry_rules_follow_current_contract_specs():
    nifty = expiries_for(UNDERLYINGS_BY_SYMBOL["NIFTY"], NOW)
    assert [d for d, _ in nifty][:4] == [date(2026, 1, 13), date(2026, 1, 20), date(2026, 1, 27),
                                         date(2026, 2, 3)]  # fmt: skip
    assert dict(nifty)[date(2026, 1, 27)] is False  # last Tuesday: the monthly
    banknifty = expiries_for(UNDERLYINGS_BY_SYMBOL["BANKNIFTY"], NOW)
    assert [d for d, _ in banknifty] == [date(2026, 1, 27), date(2026, 2, 24), date(2026, 3, 31)]
    sensex = expiries_for(UNDERLYINGS_BY_SYMBOL["SENSEX"], NOW)
    assert all(d.weekday() == 3 for d, _ in sensex)


def test_todays_expiry_is_listed_until_1530_ist():
    tuesday = datetime(2026, 1, 13, 15, 29, tzinfo=IST)
    spec = UNDERLYINGS_BY_SYMBOL["NIFTY"]
    assert expiries_for(spec, tuesday)[0][0] == date(2026, 1, 13)
    assert expiries_for(spec, tuesday.replace(minute=31))[0][0] == date(2026, 1, 20)


def test_universe_ids_are_unique_and_shared_by_both_brokers():
    universe = Universe(NOW, strikes=5)
    ids = [i.security_id for i in universe.instruments]
    assert len(ids) == len(set(ids))
    for instrument in universe.instruments:
        if instrument.kind == "option":
            assert instrument.upstox_key.split("|")[1] == str(instrument.security_id)
    assert len(universe.chains[("NIFTY", date(2026, 1, 13))]) == 11
    assert universe.indices["SENSEX"].upstox_key == "BSE_INDEX|SENSEX"


def test_ticks_are_on_the_grid_and_books_straddle_the_trade():
    market = _market(strikes=40)
    volumes: dict[int, int] = {}
    for tick in market.run(5000):
        assert tick.ltp == grid(tick.ltp)
        if tick.instrument.kind == "option":
            assert 0.05 <= tick.bid < tick.ask and tick.bid <= tick.ltp <= tick.ask
            assert tick.volume > volumes.get(tick.instrument.index, 0)
            volumes[tick.instrument.index] = tick.volume
            assert 0.02 < tick.iv < 1.5 and tick.oi >= 0


def test_true_price_follows_put_call_parity_on_the_forward():
    market = _market(strikes=5)
    chain = market.universe.chains[("NIFTY", date(2026, 1, 13))]
    strike = sorted(chain)[5]
    call, put = chain[strike]["CE"], chain[strike]["PE"]
    forward, _, _ = market.pricing(call)
    parity = market.true_price(call) - market.true_price(put)
    assert parity == pytest.approx(forward - strike, abs=1e-6)


def test_day_change_is_consistent_with_previous_close():
    market = _market()
    index = market.universe.indices["NIFTY"]
    assert abs(index.ltp / index.prev_close - 1) < 0.05
    assert index.low <= index.ltp <= index.high


def test_step_seconds_must_be_positive():
    with pytest.raises(ValueError, match="step_seconds"):
        Market(Universe(NOW, strikes=1), seed=1, start=NOW.timestamp(), step_seconds=0)


def test_virtual_clock_advances_per_step_and_jumps_forward_only():
    market = _market()
    market.run(100)
    assert market.now() == pytest.approx(NOW.timestamp() + 1.0)
    market.advance_to(NOW.timestamp())
    assert market.now() == pytest.approx(NOW.timestamp() + 1.0)
    market.advance_to(NOW.timestamp() + 60)
    assert datetime.fromtimestamp(market.step().at, UTC) > NOW
