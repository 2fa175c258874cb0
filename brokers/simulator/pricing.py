"""The simulator's option pricing model: prices on the 0.05 tick grid, a forward with carry,
and a volatility smile with a put skew around the at-the-money volatility. Pure Python."""

from __future__ import annotations

import math

YEAR_SECONDS = 365.0 * 86400.0
MIN_YEARS = 120.0 / YEAR_SECONDS  # price an expiring option with at least two minutes left
CARRY = 0.06  # futures premium over spot (rate minus dividend yield), per year


def grid(price: float) -> float:
    """Round a price to the 0.05 tick grid (two decimals, no float noise)."""
    return round(round(price * 20.0) / 20.0, 2)


def smile_vol(atm: float, forward: float, strike: float, years: float) -> float:
    """The volatility of ``strike``: ATM vol with a put skew and a smile in standardised
    moneyness, a little higher for the last days of an expiry; clipped to [0.5, 3] × ATM."""
    sd = atm * math.sqrt(years)
    m = math.log(strike / forward) / sd
    term = 1.0 + 0.12 * math.exp(-years * 52.0)
    vol = atm * term * (1.0 - 0.045 * m + 0.022 * m * m)
    return min(max(vol, 0.5 * atm), 3.0 * atm)
