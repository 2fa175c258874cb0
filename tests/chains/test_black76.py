"""Black-76 against a reference implementation (vollib, Jäckel's "Let's Be Rational")."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from vollib.black import black as ref_price
from vollib.black.greeks.analytical import delta as ref_delta
from vollib.black.greeks.analytical import gamma as ref_gamma
from vollib.black.greeks.analytical import theta as ref_theta
from vollib.black.greeks.analytical import vega as ref_vega
from vollib.black.implied_volatility import implied_volatility as ref_iv

from chains import black76

HOUR = 1 / (365 * 24)


@given(
    call=st.booleans(),
    moneyness=st.floats(0.7, 1.3),
    years=st.sampled_from([HOUR / 4, HOUR, 6 * HOUR, 2 / 365, 7 / 365, 30 / 365, 0.5]),
    vol=st.floats(0.05, 1.5),
    rate=st.sampled_from([0.0, 0.065]),
)
@settings(max_examples=400, deadline=None)
def test_price_and_greeks_match_reference(call, moneyness, years, vol, rate):
    forward, strike, flag = 25_000.0, 25_000.0 * moneyness, "c" if call else "p"
    ours = black76.price(call=call, forward=forward, strike=strike, years=years, vol=vol, rate=rate)
    assert ours == pytest.approx(ref_price(flag, forward, strike, years, rate, vol), abs=1e-7)
    g = black76.greeks(call=call, forward=forward, strike=strike, years=years, vol=vol, rate=rate)
    assert g.delta == pytest.approx(ref_delta(flag, forward, strike, years, rate, vol), abs=1e-9)
    assert g.gamma == pytest.approx(ref_gamma(flag, forward, strike, years, rate, vol), abs=1e-12)
    assert g.vega == pytest.approx(ref_vega(flag, forward, strike, years, rate, vol), abs=1e-7)
    assert g.theta == pytest.approx(ref_theta(flag, forward, strike, years, rate, vol), abs=1e-7)


@given(
    call=st.booleans(),
    moneyness=st.floats(0.6, 1.4),
    years=st.sampled_from([HOUR / 4, HOUR, 6 * HOUR, 2 / 365, 7 / 365, 30 / 365, 0.5]),
    vol=st.floats(0.03, 2.0),
)
@settings(max_examples=600, deadline=None)
def test_implied_vol_matches_reference_to_1e6(call, moneyness, years, vol):
    """Deep ITM/OTM and the last hour before expiry included, wherever a price exists."""
    forward, strike, flag = 25_000.0, 25_000.0 * moneyness, "c" if call else "p"
    premium = black76.price(call=call, forward=forward, strike=strike, years=years, vol=vol)
    intrinsic = max(forward - strike if call else strike - forward, 0.0)
    vega = black76.greeks(call=call, forward=forward, strike=strike, years=years, vol=vol).vega
    # Where no time value is left to invert at double precision, no IV is the right answer
    # (test_price_outside_bounds_has_no_iv); everywhere else the answer must be exact.
    assume(premium - intrinsic >= 1e-6 and vega >= 1e-6)
    ours = black76.implied_vol(
        call=call, premium=premium, forward=forward, strike=strike, years=years
    )
    reference = ref_iv(premium, forward, strike, 0.0, years, flag)
    assert ours is not None
    assert abs(ours - reference) < 1e-6
    assert abs(ours - vol) < 1e-6


@pytest.mark.parametrize(
    ("call", "premium", "strike"),
    [
        (True, 99.0, 24_900.0),  # below intrinsic (100)
        (True, 100.0, 24_900.0),  # exactly intrinsic: no time value
        (False, 50.0, 25_050.0),  # put below intrinsic
        (True, 25_000.0, 24_000.0),  # at the bound (the forward)
        (True, 30_000.0, 24_000.0),  # above the bound
        (False, 26_000.0, 26_000.0),  # put at its bound (the strike)
        (True, 0.0, 25_000.0),
        (True, -5.0, 25_000.0),
    ],
)
def test_price_outside_bounds_has_no_iv(call, premium, strike):
    assert (
        black76.implied_vol(
            call=call, premium=premium, forward=25_000.0, strike=strike, years=7 / 365
        )
        is None
    )


def test_no_iv_after_expiry_or_without_forward():
    assert (
        black76.implied_vol(call=True, premium=10, forward=25_000, strike=25_000, years=0) is None
    )
    assert black76.implied_vol(call=True, premium=10, forward=0, strike=25_000, years=0.01) is None


def test_guess_does_not_change_the_answer():
    kwargs = dict(call=False, premium=42.5, forward=25_010.0, strike=24_800.0, years=2 / 365)
    assert black76.implied_vol(**kwargs) == pytest.approx(
        black76.implied_vol(**kwargs, guess=1.9), abs=1e-9
    )


def test_greeks_need_time_and_vol():
    with pytest.raises(ValueError, match="positive time"):
        black76.greeks(call=True, forward=1, strike=1, years=0, vol=0.2)


def test_expired_price_is_intrinsic():
    assert black76.price(call=False, forward=100, strike=110, years=0, vol=0.3) == 10
    assert math.isclose(black76.price(call=True, forward=100, strike=90, years=-1, vol=0.3), 10)


@given(
    call=st.booleans(),
    moneyness=st.floats(0.6, 1.4),
    years=st.sampled_from([HOUR, 6 * HOUR, 2 / 365, 7 / 365, 30 / 365, 0.5]),
    vol=st.floats(0.03, 2.0),
    rate=st.sampled_from([0.0, 0.065]),
    guess=st.one_of(st.none(), st.floats(0.01, 3.0)),
)
@settings(max_examples=300, deadline=None)
def test_implied_vol_and_greeks_equals_the_two_calls(call, moneyness, years, vol, rate, guess):
    forward, strike = 25_000.0, 25_000.0 * moneyness
    premium = black76.price(
        call=call, forward=forward, strike=strike, years=years, vol=vol, rate=rate
    )
    kwargs = dict(call=call, premium=premium, forward=forward, strike=strike, years=years,
                  rate=rate, guess=guess)  # fmt: skip
    iv = black76.implied_vol(**kwargs)
    both = black76.implied_vol_and_greeks(**kwargs)
    if iv is None:
        assert both is None
        return
    assert both is not None and both[0] == iv
    expected = black76.greeks(
        call=call, forward=forward, strike=strike, years=years, vol=iv, rate=rate
    )
    for ours, reference in zip(both[1], expected, strict=True):
        assert ours == pytest.approx(reference, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("call", "premium", "strike"),
    [(True, 99.0, 24_900.0), (True, 25_000.0, 24_000.0), (False, 26_000.0, 26_000.0),
     (True, 0.0, 25_000.0)],
)  # fmt: skip
def test_implied_vol_and_greeks_is_none_where_there_is_no_iv(call, premium, strike):
    assert (
        black76.implied_vol_and_greeks(
            call=call, premium=premium, forward=25_000.0, strike=strike, years=7 / 365
        )
        is None
    )


def test_root_above_the_range_has_no_iv():
    # An hour-long at-the-money option worth 9 % of the forward needs a volatility above 20.
    premium = black76.price(call=True, forward=100.0, strike=100.0, years=1e-4, vol=22.0)
    assert black76.implied_vol(call=True, premium=premium, forward=100.0, strike=100.0,
                               years=1e-4) is None  # fmt: skip
    inside = black76.price(call=True, forward=100.0, strike=100.0, years=1e-4, vol=19.5)
    assert black76.implied_vol(
        call=True, premium=inside, forward=100.0, strike=100.0, years=1e-4
    ) == pytest.approx(19.5, abs=1e-9)


def test_root_below_the_range_has_no_iv():
    # A year-long at-the-money option worth 0.001 on 100 has a volatility below 1e-4.
    assert black76.implied_vol(call=True, premium=0.001, forward=100.0, strike=100.0,
                               years=1.0) is None  # fmt: skip
    inside = black76.price(call=False, forward=100.0, strike=100.0, years=1.0, vol=2e-4)
    assert black76.implied_vol(
        call=False, premium=inside, forward=100.0, strike=100.0, years=1.0
    ) == pytest.approx(2e-4, abs=1e-12)


def test_long_dated_far_otm_call_matches_reference():
    """Found by a randomised comparison with vollib: the earlier Newton solver answered 10.51."""
    forward, strike = 14_545.809385108052, 22_769.733115866253
    years, rate, premium = 1.2159310502430687, 0.07, 4_072.145356461393
    ours = black76.implied_vol(
        call=True, premium=premium, forward=forward, strike=strike, years=years, rate=rate
    )
    assert ours == pytest.approx(ref_iv(premium, forward, strike, rate, years, "c"), abs=1e-9)


@pytest.mark.parametrize("premium", [0.05, 0.1, 0.5, 2.0])
def test_far_wing_tick_size_premiums_invert_exactly(premium):
    """Three days out, strikes 15 % away trade at a few ticks: the IV still reprices them."""
    for call, strike in ((True, 30_000.0), (False, 22_000.0)):
        iv = black76.implied_vol(call=call, premium=premium, forward=26_000.0, strike=strike,
                                 years=3 / 365)  # fmt: skip
        assert iv is not None
        repriced = black76.price(call=call, forward=26_000.0, strike=strike, years=3 / 365,
                                 vol=iv)  # fmt: skip
        assert repriced == pytest.approx(premium, rel=1e-9)


def test_a_time_value_under_min_time_value_is_rounding_noise_with_no_iv():
    # 25860.6 − 24450 is 1410.5999999999985 in doubles: the price 1410.6 is its intrinsic value
    kwargs = dict(call=True, premium=1410.6, forward=25_860.6, strike=24_450.0, years=6.6 / 365)
    assert black76.implied_vol(**kwargs) is not None  # a 1.5e-12 residue "solves"
    assert black76.implied_vol(**kwargs, min_time_value=black76.HALF_PAISA) is None
    assert black76.implied_vol_and_greeks(**kwargs, min_time_value=black76.HALF_PAISA) is None
    priced = {**kwargs, "premium": 1410.65}  # one tick of time value is a price
    assert black76.implied_vol(**priced, min_time_value=black76.HALF_PAISA) == pytest.approx(
        black76.implied_vol(**priced), abs=1e-12
    )
