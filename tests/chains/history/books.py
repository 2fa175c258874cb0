"""Chain books in a known state, and minute bars taken from them (``bar_from_book``)."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta

from brokers.exchange import IST
from chains import black76
from chains.analytics import years_to_expiry
from chains.book import ChainBook
from chains.history.bars import MinuteBar, bar_from_book
from chains.leg import LegSpec

EXPIRY = date(2026, 12, 8)
DAY = date(2026, 12, 1)
OPEN = datetime(2026, 12, 1, 9, 15, tzinfo=IST)


def make_book(
    *, underlying: str = "NIFTY", expiry: date = EXPIRY, strikes: int = 8, first: float = 25_800.0
) -> ChainBook:
    """A chain of ``strikes`` strikes 100 apart from ``first``, both sides listed."""
    specs = [
        LegSpec(instrument=f"{underlying}{int(k)}{side}", strike=k, option_type=side)
        for k in (first + 100.0 * i for i in range(strikes))
        for side in ("CE", "PE")
    ]
    return ChainBook(
        underlying=underlying, expiry=expiry, index_instrument="13", legs=specs, lot_size=65
    )


def move(book: ChainBook, at: datetime, *, seed: int, observed_at: float) -> None:
    """Give every leg and the spot plausible values (deterministic from ``seed``): prices from
    Black-76 on a smile, to the 0.05 tick, OI and volume peaked near the money, all with noise;
    then flush at ``at`` (which computes IV, delta, PCR, max pain)."""
    rng = random.Random(seed)
    spot = round(26_000 + rng.uniform(-150, 150), 2)
    years = max(years_to_expiry(book.expiry, at), 1e-4)
    book.apply_spot_value(spot, observed_at)
    for strike, sides in book.by_strike.items():
        moneyness = math.log(strike / spot)
        vol = 0.12 + 0.8 * moneyness**2 + rng.uniform(-0.002, 0.002)
        crowd = math.exp(-(((strike - spot) / 1_500) ** 2))
        for side, leg in sides.items():
            value = black76.price(
                call=side == "CE", forward=spot, strike=strike, years=years, vol=vol, rate=0.0
            )
            ltp = max(0.05, round(value * 20) / 20)
            oi = 75 * int(crowd * rng.uniform(50_000, 60_000)) + 75 * rng.randrange(1, 100)
            book.apply_fields(
                leg.instrument,
                {
                    "ltp": ltp,
                    "bid_price": round(max(0.05, ltp - 0.05 * rng.randrange(1, 4)), 2),
                    "ask_price": round(ltp + 0.05 * rng.randrange(1, 4), 2),
                    "volume": 75 * int(crowd * rng.uniform(100_000, 120_000)),
                    "oi": oi,
                    "prev_oi": oi - 75 * rng.randrange(-1_000, 1_000),
                    "prev_close": round(ltp * 0.95, 2),
                },
                observed_at,
            )
    book.flush(at)


def day_of_bars(
    book: ChainBook, minutes: int, *, start: datetime = OPEN, skip: frozenset[int] = frozenset()
) -> list[MinuteBar]:
    """The book's bars of ``minutes`` minutes from ``start`` (minute offsets in ``skip`` left
    out: gaps), the book moved before each."""
    bars = []
    for i in range(minutes):
        at = start + timedelta(minutes=i)
        move(book, at + timedelta(seconds=30), seed=i, observed_at=float(i + 1))
        if i not in skip:
            bars.append(bar_from_book(book, at))
    return bars
