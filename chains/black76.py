"""Black-76 prices, greeks and implied volatility for options on a forward. Pure Python.

Conventions (those Indian brokers display): volatility as a fraction (0.12 = 12 %), time in
years of 365 days, ``vega`` per 1 volatility point (1 %), ``theta`` per calendar day, delta
and gamma with respect to the forward. ``rate`` is the continuously compounded rate used to
discount the payoff (0 by default in the product: index options settle on the forward).
"""

from __future__ import annotations

import math
from typing import NamedTuple

SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
MIN_VOL = 1e-4
MAX_VOL = 20.0
DAYS_PER_YEAR = 365.0


def norm_cdf(x: float) -> float:
    """Standard normal CDF (via erfc: accurate in both tails)."""
    return 0.5 * math.erfc(-x / SQRT2)


def norm_pdf(x: float) -> float:
    return INV_SQRT_2PI * math.exp(-0.5 * x * x)


def price(
    *, call: bool, forward: float, strike: float, years: float, vol: float, rate: float = 0.0
) -> float:
    """The Black-76 premium. ``years`` ≤ 0 or ``vol`` ≤ 0 give the discounted intrinsic value."""
    discount = math.exp(-rate * years) if years > 0 else 1.0
    if years <= 0 or vol <= 0:
        return discount * max(forward - strike if call else strike - forward, 0.0)
    sd = vol * math.sqrt(years)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if call:
        return discount * (forward * norm_cdf(d1) - strike * norm_cdf(d2))
    return discount * (strike * norm_cdf(-d2) - forward * norm_cdf(-d1))


class Greeks(NamedTuple):
    delta: float
    gamma: float
    theta: float  # per calendar day
    vega: float  # per 1 volatility point


def greeks(
    *, call: bool, forward: float, strike: float, years: float, vol: float, rate: float = 0.0
) -> Greeks:
    """Delta, gamma, theta (per day) and vega (per vol point). Requires years > 0, vol > 0."""
    if years <= 0 or vol <= 0:
        raise ValueError("greeks need a positive time to expiry and volatility")
    discount = math.exp(-rate * years)
    root = math.sqrt(years)
    sd = vol * root
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    pdf = norm_pdf(d1)
    gamma = discount * pdf / (forward * sd)
    vega = forward * discount * pdf * root / 100.0
    decay = -forward * discount * pdf * vol / (2.0 * root)
    if call:
        delta = discount * norm_cdf(d1)
        premium = discount * (forward * norm_cdf(d1) - strike * norm_cdf(d2))
    else:
        delta = -discount * norm_cdf(-d1)
        premium = discount * (strike * norm_cdf(-d2) - forward * norm_cdf(-d1))
    theta = (decay + rate * premium) / DAYS_PER_YEAR
    return Greeks(delta, gamma, theta, vega)


def implied_vol(
    *,
    call: bool,
    premium: float,
    forward: float,
    strike: float,
    years: float,
    rate: float = 0.0,
    guess: float | None = None,
    tolerance: float = 1e-10,
) -> float | None:
    """The volatility whose Black-76 price equals ``premium``, or None when none exists.

    None (never 0) when: time is up, inputs are not positive, the premium is at or below the
    discounted intrinsic value (no time value to explain), or at or above the no-arbitrage
    bound (discounted forward for a call, discounted strike for a put), or the root lies
    outside [1e-4, 20]. Safeguarded Newton inside a shrinking bracket: every step that
    would leave the bracket is replaced by bisection, so it always converges. ``guess`` (e.g.
    the leg's previous IV) speeds it up; it stops when the Newton step is below ``tolerance``
    (1e-10 in volatility).
    """
    if years <= 0 or forward <= 0 or strike <= 0 or premium <= 0:
        return None
    discount = math.exp(-rate * years)
    intrinsic = discount * max(forward - strike if call else strike - forward, 0.0)
    bound = discount * (forward if call else strike)
    if premium <= intrinsic or premium >= bound:
        return None
    root = math.sqrt(years)
    log_fk = math.log(forward / strike)
    lo, hi = MIN_VOL, MAX_VOL

    def value_and_vega(vol: float) -> tuple[float, float]:
        sd = vol * root
        d1 = (log_fk + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        if call:
            value = discount * (forward * norm_cdf(d1) - strike * norm_cdf(d2))
        else:
            value = discount * (strike * norm_cdf(-d2) - forward * norm_cdf(-d1))
        return value, discount * forward * norm_pdf(d1) * root

    if value_and_vega(hi)[0] < premium or value_and_vega(lo)[0] > premium:
        return None
    vol = (
        guess
        if guess is not None and lo < guess < hi
        else _initial_guess(log_fk, premium / discount, forward, strike, root)
    )
    for _ in range(200):
        value, vega = value_and_vega(vol)
        diff = value - premium
        if diff == 0.0:
            return vol
        if diff > 0:
            hi = vol
        else:
            lo = vol
        newton = diff / vega if vega > 1e-300 else math.inf
        step = vol - newton
        vol = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(newton) < tolerance or hi - lo < tolerance:
            return vol
    return vol


def _initial_guess(
    log_fk: float, undiscounted: float, forward: float, strike: float, root: float
) -> float:
    """Brenner–Subrahmanyam near the money, widened for the wings; clipped into range."""
    guess = math.sqrt(2.0 * math.pi) * undiscounted / (forward * root)
    guess = max(guess, math.sqrt(2.0 * abs(log_fk)) / root)
    return min(max(guess, 0.01), 5.0)
