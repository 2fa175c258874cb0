"""Option-chain analytics computed at flush time. Pure Python, no Django.

Everything here takes plain numbers and returns plain numbers or None; None means "cannot be
known from the data" and is shown as "–", never as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime

from brokers.exchange import expiry_moment

SECONDS_PER_YEAR = 365.0 * 86400.0
# The step the chain computes an index's forward on (put-call parity gives any number; a grid
# keeps the forward, and so every leg's IV, from changing at each flush by noise alone).
INDEX_TICK = 0.05

LONG_BUILDUP = "long_buildup"
SHORT_BUILDUP = "short_buildup"
SHORT_COVERING = "short_covering"
LONG_UNWINDING = "long_unwinding"
BUILDUP_LABELS = {
    LONG_BUILDUP: "Long build-up",
    SHORT_BUILDUP: "Short build-up",
    SHORT_COVERING: "Short covering",
    LONG_UNWINDING: "Long unwinding",
}


def years_to_expiry(expiry: date, now: datetime) -> float:
    """Year fraction (365-day years) from ``now`` to 15:30 IST on ``expiry``; ≤ 0 once expired."""
    return (expiry_moment(expiry) - now).total_seconds() / SECONDS_PER_YEAR


def to_index_value(price: float) -> float:
    """An index value as published, with two decimals (no float noise: a float32 feed price
    25941.599609375 becomes 25941.6). NSE's indices move in steps of 0.05 and BSE's (SENSEX,
    BANKEX) in steps of 0.01, so two decimals move neither exchange's published value."""
    return round(price, 2)


def to_index_tick(price: float) -> float:
    """``price`` on the ``INDEX_TICK`` grid, as the two-decimal number it shows as (no float
    noise: a float32 feed price 25941.599609375 becomes 25941.6)."""
    return round(round(price / INDEX_TICK) * INDEX_TICK, 2)


def forward_from_parity(
    pairs: Iterable[tuple[float, float | None, float | None]], *, years: float, rate: float = 0.0
) -> float | None:
    """The forward implied by put–call parity: F = K + (C − P)·e^{rT}, median over ``pairs``.

    ``pairs`` are (strike, call premium, put premium) near the money. Pairs with a missing or
    non-positive premium are skipped; None when no pair is usable.
    """
    growth = math.exp(rate * max(years, 0.0))
    values = sorted(
        strike + (call - put) * growth
        for strike, call, put in pairs
        if call is not None and put is not None and call > 0 and put > 0
    )
    if not values:
        return None
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return 0.5 * (values[middle - 1] + values[middle])


def nearest_strike(strikes: Sequence[float], price: float | None) -> float | None:
    """The listed strike nearest ``price`` (ties: the lower). None without a positive price."""
    if price is None or price <= 0 or not strikes:
        return None
    return min(strikes, key=lambda k: (abs(k - price), k))


def pcr(put_oi: Iterable[int | None], call_oi: Iterable[int | None]) -> float | None:
    """Put–call ratio of open interest: total PE OI / total CE OI (None when CE OI is 0)."""
    puts = sum(v for v in put_oi if v is not None)
    calls = sum(v for v in call_oi if v is not None)
    if calls <= 0:
        return None
    return puts / calls


def max_pain(oi_by_strike: Mapping[float, tuple[int | None, int | None]]) -> float | None:
    """The strike at which option buyers' total intrinsic payout is smallest.

    ``oi_by_strike`` maps strike → (CE OI, PE OI). None when there is no open interest.
    Ties resolve to the lower strike.
    """
    strikes = sorted(oi_by_strike)
    ce = [oi_by_strike[k][0] or 0 for k in strikes]
    pe = [oi_by_strike[k][1] or 0 for k in strikes]
    if not any(ce) and not any(pe):
        return None
    best: tuple[float, float] | None = None
    for settle in strikes:
        pain = 0.0
        for strike, call_oi, put_oi in zip(strikes, ce, pe, strict=True):
            if settle > strike:
                pain += call_oi * (settle - strike)
            elif settle < strike:
                pain += put_oi * (strike - settle)
        if best is None or pain < best[0]:
            best = (pain, settle)
    return best[1] if best else None


def oi_change(oi: int | None, prev_oi: int | None) -> int | None:
    """Change in open interest since the previous session (None when either is unknown)."""
    if oi is None or prev_oi is None:
        return None
    return oi - prev_oi


def price_change(ltp: float | None, prev_close: float | None) -> float | None:
    if ltp is None or prev_close is None:
        return None
    return ltp - prev_close


def buildup(price_delta: float | None, oi_delta: int | None) -> str | None:
    """OI build-up class from the day's change in price and in open interest.

    Price up + OI up → long build-up; price down + OI up → short build-up; price up + OI down
    → short covering; price down + OI down → long unwinding. None when either is unknown or
    flat.
    """
    if price_delta is None or oi_delta is None or price_delta == 0 or oi_delta == 0:
        return None
    if oi_delta > 0:
        return LONG_BUILDUP if price_delta > 0 else SHORT_BUILDUP
    return SHORT_COVERING if price_delta > 0 else LONG_UNWINDING
