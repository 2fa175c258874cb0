"""Realistic minute bars for the history benchmark, built with the pure types of
``chains.history.bars`` (no book, no Django): a trading day of one chain.

The market of a day: the spot follows a mean-reverting random walk (±0.8 % over a day is
typical); IV follows a smile around the money and drifts slowly; OI is heaviest at round
strikes near the money and builds minute by minute (a few lots at most strikes, more near the
money); volume only grows; prices are Black-76 on the forward (the spot) at the 0.05 tick, bid
and ask a few ticks around the LTP. Values are rounded to the precision history stores
(``bars.DIGITS``), so packing is exact. Deterministic from the seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import date, datetime, timedelta

from brokers.exchange import IST
from chains import black76
from chains.analytics import max_pain, nearest_strike, years_to_expiry
from chains.history.bars import DIGITS, LegColumns, MinuteBar, SideColumns

SESSION_MINUTES = 376  # 09:15 to 15:30, both included
MAX_PAIN_EVERY = 15  # minutes: max pain is O(strikes²); the day's shape does not need more


def session_open(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 15, tzinfo=IST)


def chain_day(
    *,
    underlying: str,
    expiry: date,
    day: date,
    spot: float,
    step: float,
    strikes: int = 200,
    seed: int = 1,
) -> list[MinuteBar]:
    """Every minute bar (09:15–15:30) of one chain over ``day``: ``strikes`` strikes ``step``
    apart centred on ``spot``."""
    rng = random.Random(seed)
    centre = round(spot / step) * step
    ks = tuple(centre + step * (i - strikes // 2) for i in range(strikes))
    n = len(ks)
    crowd = [math.exp(-(((k - spot) / (40 * step)) ** 2)) for k in ks]
    round_bonus = [2.0 if k % (10 * step) == 0 else 1.0 for k in ks]
    oi = {
        side: [int(75 * (2_000 + 60_000 * c * b * rng.uniform(0.6, 1.4))) for c, b in zip(crowd, round_bonus, strict=True)]
        for side in ("CE", "PE")
    }  # fmt: skip
    prev_oi = {side: list(values) for side, values in oi.items()}
    volume = {side: [75 * rng.randrange(0, 50) for _ in ks] for side in ("CE", "PE")}
    level = 0.12 + rng.uniform(-0.02, 0.02)
    bars = []
    pain: float | None = None
    first = session_open(day)
    for m in range(SESSION_MINUTES):
        minute = first + timedelta(minutes=m)
        spot += -0.02 * (spot - centre) + rng.gauss(0.0, spot * 0.0004)
        spot = round(spot, 2)
        level = max(0.05, level + rng.gauss(0.0, 0.0008))
        years = max(years_to_expiry(expiry, minute + timedelta(seconds=59)), 1e-4)
        sides = {}
        for side in ("CE", "PE"):
            call = side == "CE"
            ltp, bid, ask, iv, delta = [], [], [], [], []
            for i, k in enumerate(ks):
                near = math.exp(-(((k - spot) / (10 * step)) ** 2))
                oi[side][i] = max(
                    0, oi[side][i] + 75 * int(rng.gauss(3 + 40 * near, 5 + 30 * near))
                )
                volume[side][i] += 75 * int(rng.expovariate(1 / (2 + 200 * near)))
                vol = level + 0.6 * math.log(k / spot) ** 2
                value = black76.price(call=call, forward=spot, strike=k, years=years, vol=vol)
                price = max(0.05, round(value * 20) / 20)
                ltp.append(round(price, 2))
                bid.append(round(max(0.05, price - 0.05 * rng.randrange(1, 4)), 2))
                ask.append(round(price + 0.05 * rng.randrange(1, 4), 2))
                iv.append(round(vol, DIGITS["iv"]))
                greeks = black76.greeks(call=call, forward=spot, strike=k, years=years, vol=vol)
                delta.append(round(greeks.delta, DIGITS["delta"]))
            sides[side] = SideColumns(
                oi=tuple(oi[side]), volume=tuple(volume[side]), ltp=tuple(ltp), bid=tuple(bid),
                ask=tuple(ask), iv=tuple(iv), delta=tuple(delta),
            )  # fmt: skip
        legs = LegColumns(strikes=ks, ce=sides["CE"], pe=sides["PE"])
        atm = nearest_strike(ks, spot)
        assert atm is not None
        at = ks.index(atm)
        if pain is None or m % MAX_PAIN_EVERY == 0:
            pain = max_pain({k: (oi["CE"][i], oi["PE"][i]) for i, k in enumerate(ks)})
        ce_total, pe_total = sum(oi["CE"]), sum(oi["PE"])
        bars.append(
            MinuteBar(
                underlying=underlying, expiry=expiry, minute=minute, spot=spot,
                forward=round(spot, 2), atm_strike=atm,
                atm_iv=round((legs.ce.iv[at] + legs.pe.iv[at]) / 2, DIGITS["iv"]),  # type: ignore[operator]
                straddle=round(legs.ce.ltp[at] + legs.pe.ltp[at], 2),  # type: ignore[operator]
                pcr=round(pe_total / ce_total, 4), max_pain=pain, ce_oi=ce_total,
                pe_oi=pe_total, ce_oi_change=ce_total - sum(prev_oi["CE"]),
                pe_oi_change=pe_total - sum(prev_oi["PE"]), legs=legs,
            )
        )  # fmt: skip
    assert n == len(bars[0].legs.strikes)
    return bars


def moved(bars: list[MinuteBar], *, day: date, expiry: date | None = None) -> list[MinuteBar]:
    """``bars`` of one day relabelled to ``day`` (and ``expiry``): the same figures on
    another day, for filling many days quickly (storage per row does not depend on them)."""
    shift = session_open(day) - session_open(bars[0].day)
    return [replace(b, minute=b.minute + shift, expiry=expiry or b.expiry) for b in bars]
