"""Chain analytics: forward, ATM, PCR, max pain, OI change, build-up, time to expiry."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from chains import analytics, black76


def test_expiry_is_1530_ist():
    assert analytics.expiry_moment(date(2026, 11, 24)) == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_years_to_expiry_counts_to_the_close():
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # 14:30 IST on expiry day
    assert analytics.years_to_expiry(date(2026, 11, 24), now) == pytest.approx(3600 / (365 * 86400))
    later = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    assert analytics.years_to_expiry(date(2026, 11, 24), later) < 0


def test_forward_from_parity_recovers_the_forward():
    forward, years, vol = 25_137.0, 5 / 365, 0.14
    pairs = [
        (k, black76.price(call=True, forward=forward, strike=k, years=years, vol=vol),
         black76.price(call=False, forward=forward, strike=k, years=years, vol=vol))
        for k in (25_050.0, 25_100.0, 25_150.0)
    ]  # fmt: skip
    assert analytics.forward_from_parity(pairs, years=years) == pytest.approx(forward, abs=1e-6)


def test_forward_with_rate_discounts_the_parity():
    forward, years, rate = 25_137.0, 30 / 365, 0.065
    call = black76.price(call=True, forward=forward, strike=25_100, years=years, vol=0.2, rate=rate)
    put = black76.price(call=False, forward=forward, strike=25_100, years=years, vol=0.2, rate=rate)
    found = analytics.forward_from_parity([(25_100.0, call, put)], years=years, rate=rate)
    assert found == pytest.approx(forward, abs=1e-6)


def test_forward_skips_unpriced_pairs():
    assert analytics.forward_from_parity([(100.0, None, 5.0), (100.0, 0.0, 4.0)], years=0.1) is None
    assert analytics.forward_from_parity([(100.0, 7.0, 5.0), (105.0, None, 1.0)], years=0) == 102.0


def test_atm_never_from_zero_spot():
    strikes = [24_900.0, 25_000.0, 25_100.0]
    assert analytics.nearest_strike(strikes, 0.0) is None
    assert analytics.nearest_strike(strikes, None) is None
    assert analytics.nearest_strike(strikes, 25_049.0) == 25_000.0
    assert analytics.nearest_strike(strikes, 25_050.0) == 25_000.0  # tie → lower


def test_pcr():
    assert analytics.pcr([100, 200, None], [150, 50]) == pytest.approx(1.5)
    assert analytics.pcr([100], [0, None]) is None


def test_max_pain_matches_brute_force():
    oi = {24_900.0: (1000, 9000), 25_000.0: (5000, 6000), 25_100.0: (8000, 1000)}
    # pain(24900) = PE: 6000*100 + 1000*200 = 800000; pain(25000) = CE 1000*100 + PE 1000*100
    # = 200000; pain(25100) = CE 1000*200 + 5000*100 = 700000
    assert analytics.max_pain(oi) == 25_000.0
    assert analytics.max_pain({1.0: (None, None), 2.0: (0, 0)}) is None


def test_oi_change_and_price_change():
    assert analytics.oi_change(1500, 1000) == 500
    assert analytics.oi_change(1500, None) is None
    assert analytics.price_change(101.5, 100.0) == pytest.approx(1.5)
    assert analytics.price_change(None, 100.0) is None


@pytest.mark.parametrize(
    ("price", "oi", "label"),
    [
        (1.0, 10, analytics.LONG_BUILDUP),
        (-1.0, 10, analytics.SHORT_BUILDUP),
        (1.0, -10, analytics.SHORT_COVERING),
        (-1.0, -10, analytics.LONG_UNWINDING),
        (0.0, 10, None),
        (1.0, 0, None),
        (None, 10, None),
        (1.0, None, None),
    ],
)
def test_buildup(price, oi, label):
    assert analytics.buildup(price, oi) == label
