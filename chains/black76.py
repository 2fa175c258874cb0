"""Black-76 prices, greeks and implied volatility for options on a forward. Pure Python.

The implied volatility is what a chain flush spends its time on (400 legs every 250 ms), so
``implied_vol`` is built for speed as well as accuracy: it solves for the out-of-the-money
option of the strike (time value only, no cancellation against the intrinsic value), starts
from a close closed-form guess and takes Halley steps on the log of the price, which converge
cubically: two price evaluations for most legs, cold or warm. ``implied_vol_and_greeks``
returns the greeks with it, without a second call (see bench/analytics.py).

Conventions (those Indian brokers display): volatility as a fraction (0.12 = 12 %), time in
years of 365 days, ``vega`` per 1 volatility point (1 %), ``theta`` per calendar day, delta
and gamma with respect to the forward. ``rate`` is the continuously compounded rate used to
discount the payoff (0 by default in the product: index options settle on the forward).
"""

from __future__ import annotations

import math
from typing import NamedTuple

SQRT2 = math.sqrt(2.0)
INV_SQRT2 = 1.0 / SQRT2
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
SQRT_2PI = math.sqrt(2.0 * math.pi)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
MIN_VOL = 1e-4
# Premiums in rupees are quoted in whole paise (on the 0.05 tick): a time value under half a
# paisa is the inputs' rounding noise, not a price (F − K of two-decimal numbers carries ~1e-12,
# a float32 feed price ~6e-8 of itself), and such a residue would solve to an arbitrary IV
# (0.05-0.08 on a deep in-the-money NIFTY leg whose price is its intrinsic value). The chain
# passes it as ``min_time_value``.
HALF_PAISA = 0.005
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


_new_tuple = tuple.__new__  # builds a NamedTuple from a tuple, half the cost of calling it


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
    min_time_value: float = 0.0,
) -> float | None:
    """The volatility whose Black-76 price equals ``premium``, or None when none exists.

    None (never 0) when: time is up, inputs are not positive, the premium is at or below the
    discounted intrinsic value plus ``min_time_value`` (no time value to explain; a price
    quoted in paise passes ``HALF_PAISA``: less is rounding noise), or at or above the no-arbitrage
    bound (discounted forward for a call, discounted strike for a put), or the root lies
    outside [1e-4, 20]. Safeguarded Halley iteration inside a shrinking bracket: every step
    that would leave the bracket is replaced by bisection, so it always converges. ``guess``
    (e.g. the leg's previous IV) is used as the starting point when it lies inside the bracket;
    without one a closed-form approximation starts it. ``tolerance`` (1e-10 in volatility) is
    the accuracy aimed at: the iteration stops once the error left after the last step,
    estimated from the step's size (cubic convergence), is below it.
    """
    solved = _solve(call, premium, forward, strike, years, rate, guess, tolerance, min_time_value)
    return None if solved is None else solved[0]


def implied_vol_and_greeks(
    *,
    call: bool,
    premium: float,
    forward: float,
    strike: float,
    years: float,
    rate: float = 0.0,
    guess: float | None = None,
    tolerance: float = 1e-10,
    min_time_value: float = 0.0,
) -> tuple[float, Greeks] | None:
    """``(iv, greeks at iv)`` in one call, or None exactly when ``implied_vol`` gives None.

    The greeks are those of ``greeks(vol=iv)``, computed from the solver's own log-moneyness
    and discount factor; theta's carry term uses ``premium`` (equal to the model price at
    ``iv`` within the tolerance).
    """
    solved = _solve(call, premium, forward, strike, years, rate, guess, tolerance, min_time_value)
    if solved is None:
        return None
    vol, log_fk, root, discount = solved
    sd = vol * root
    d1 = log_fk / sd + 0.5 * sd
    pdf = INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    scaled = forward * discount * pdf  # F·D·φ(d1), shared by gamma, vega and theta
    if call:
        delta = 0.5 * discount * math.erfc(-d1 * INV_SQRT2)
    else:
        delta = -0.5 * discount * math.erfc(d1 * INV_SQRT2)
    theta = (rate * premium - scaled * vol / (2.0 * root)) / DAYS_PER_YEAR
    gamma, vega = scaled / (forward * forward * sd), scaled * root / 100.0
    return vol, _new_tuple(Greeks, (delta, gamma, theta, vega))  # Greeks(...) without __new__


def _solve(
    call: bool,
    premium: float,
    forward: float,
    strike: float,
    years: float,
    rate: float,
    guess: float | None,
    tolerance: float,
    min_time_value: float,
) -> tuple[float, float, float, float] | None:
    """``(vol, log(F/K), sqrt(years), discount)``, or None when no volatility fits."""
    if years <= 0 or forward <= 0 or strike <= 0 or premium <= 0:
        return None
    discount = math.exp(-rate * years) if rate else 1.0
    intrinsic = discount * max(forward - strike if call else strike - forward, 0.0)
    if premium - intrinsic <= min_time_value or premium >= discount * (forward if call else strike):
        return None
    # Put-call parity: the time value is the undiscounted price of the strike's OTM option.
    target = (premium - intrinsic) / discount
    log_fk = math.log(forward / strike)
    otm_call = log_fk < 0.0
    root = math.sqrt(years)
    lo, hi = MIN_VOL, MAX_VOL
    if guess is not None and lo < guess < hi:
        vol = guess
    else:
        vol = _initial_guess(log_fk, target, forward, strike) / root
        vol = min(max(vol, 2.0 * MIN_VOL), 0.5 * MAX_VOL)
    log_target = math.log(target)
    small_step = _SMALL_STEP if tolerance == 1e-10 else _small_step(tolerance)
    erfc, exp, log = math.erfc, math.exp, math.log
    for _ in range(200):
        sd = vol * root
        d1 = log_fk / sd + 0.5 * sd
        d2 = d1 - sd
        if otm_call:
            value = 0.5 * (forward * erfc(-d1 * INV_SQRT2) - strike * erfc(-d2 * INV_SQRT2))
        else:
            value = 0.5 * (strike * erfc(d2 * INV_SQRT2) - forward * erfc(d1 * INV_SQRT2))
        if value <= 0.0:  # underflow: far below the root
            lo = vol
            vol = 0.5 * (lo + hi)
            if hi - lo < tolerance:
                break
            continue
        # Halley on f(vol) = ln value − ln target: nearly linear even in the far wings.
        f = log(value) - log_target
        if f > 0.0:
            hi = vol
        elif f < 0.0:
            lo = vol
        else:
            break
        slope = forward * INV_SQRT_2PI * exp(-0.5 * d1 * d1) * root / value  # vega / value
        newton = f / slope
        # f'' = vomma/value − slope², with vomma = vega·d1·d2/vol
        correction = 1.0 - 0.5 * newton * (d1 * d2 / vol - slope)
        step = newton / correction if correction > 0.5 else newton
        landing = vol - step
        if lo < landing < hi:
            vol = landing
            if abs(step) < small_step:
                break
        else:
            vol = 0.5 * (lo + hi)
        if hi - lo < tolerance:
            break
    # A root outside [MIN_VOL, MAX_VOL] drives the bracket onto that end without ever
    # crossing it: only then is one more price needed to tell the two apart.
    if hi == MAX_VOL and vol > MAX_VOL - 1e-6:
        edge = MAX_VOL  # the root may lie above the range
    elif lo == MIN_VOL and vol < MIN_VOL + 1e-6:
        edge = MIN_VOL  # or below it
    else:
        return vol, log_fk, root, discount
    outside = _otm_value(otm_call, forward, strike, log_fk, edge * root) - target
    if (outside < 0.0) if edge == MAX_VOL else (outside > 0.0):
        return None
    return vol, log_fk, root, discount


def _small_step(tolerance: float) -> float:
    """The step size below which Halley's remaining error, about c·step³ with c of order
    1-10 here, is under ``tolerance`` (with a 1000× margin on c)."""
    return float((tolerance * 1e-3) ** (1.0 / 3.0))


_SMALL_STEP = _small_step(1e-10)


def _otm_value(otm_call: bool, forward: float, strike: float, log_fk: float, sd: float) -> float:
    """The undiscounted Black-76 price of the strike's out-of-the-money option."""
    d1 = log_fk / sd + 0.5 * sd
    d2 = d1 - sd
    if otm_call:
        return 0.5 * (forward * math.erfc(-d1 * INV_SQRT2) - strike * math.erfc(-d2 * INV_SQRT2))
    return 0.5 * (strike * math.erfc(d2 * INV_SQRT2) - forward * math.erfc(d1 * INV_SQRT2))


def _initial_guess(log_fk: float, time_value: float, forward: float, strike: float) -> float:
    """An approximation of vol·sqrt(years) from the OTM option's (undiscounted) price.

    Far from the money (the money more than 1.5 standard deviations away) the price is
    dominated by the normal density at d1: ``ln b ≈ −x²/2s² + 3 ln s − 2 ln|x| − ln√(2π)``
    (b the price over √(FK), x = ln(F/K), s = vol·√years), solved by fixed-point iteration.
    Nearer the money, Corrado–Miller. Typically within 1-20 % of the root.
    """
    distance = abs(log_fk)
    normalized = time_value / math.sqrt(forward * strike)
    if distance > 0.0 and 0.0 < normalized < 0.5:
        log_b, log_x = math.log(normalized), math.log(distance)
        s = distance / math.sqrt(-2.0 * log_b)
        for _ in range(3):
            denominator = 2.0 * (3.0 * math.log(s) - 2.0 * log_x - LOG_SQRT_2PI - log_b)
            if denominator <= 0.0:
                break
            s = distance / math.sqrt(denominator)
        else:
            if distance >= 1.5 * s:
                return s
    call = time_value if log_fk < 0.0 else time_value + forward - strike
    half = call - 0.5 * (forward - strike)
    spread = max(half * half - (forward - strike) ** 2 / math.pi, 0.0)
    return max(SQRT_2PI / (forward + strike) * (half + math.sqrt(spread)), 1e-6)
