"""One contract of a chain: its static facts (``LegSpec``) and its current state (``Leg``).

Pure Python. A leg keeps every market field of a ``Tick`` (carried forward: None until a tick or
a REST row gives it) and the analytics the chain book computes at flush time: Black-76 IV and
greeks on the chain's forward, and the price/OI build-up. The chain book (``chains.book``)
applies ticks and REST rows to legs and decides when their analytics are redone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from brokers.ticks import DepthLevel, Tick

from . import analytics, black76

# Tick fields a leg keeps (everything after broker/segment/instrument/exchange_time).
TICK_FIELDS: tuple[str, ...] = Tick._fields[4:]
TRADE_FIELDS = frozenset({"ltp", "ltq"})
MARKET_FIELDS = tuple(f for f in TICK_FIELDS if f not in {"depth"})  # what a REST row may set


@dataclass(frozen=True, slots=True)
class LegSpec:
    """Static facts of one contract of a chain."""

    instrument: str
    strike: float
    option_type: str  # "CE" or "PE"


class Leg:
    """One contract's current state: market fields with carry-forward, plus analytics.

    The market fields are ``TICK_FIELDS``, typed as ``Tick`` types them (tests check that the
    two agree); None means not known yet.
    """

    __slots__ = (
        *TICK_FIELDS,
        "analytics_at",
        "buildup",
        "exchange_time",
        "instrument",
        "is_call",
        "observed_at",
        "option_type",
        "our_delta",
        "our_gamma",
        "our_iv",
        "our_theta",
        "our_vega",
        "strike",
    )

    # market fields (TICK_FIELDS)
    ltp: float | None
    ltq: int | None
    volume: int | None
    oi: int | None
    prev_close: float | None
    prev_oi: int | None
    bid_price: float | None
    bid_qty: int | None
    ask_price: float | None
    ask_qty: int | None
    depth: tuple[DepthLevel, ...] | None
    avg_price: float | None
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    total_buy_qty: int | None
    total_sell_qty: int | None
    oi_day_high: int | None
    oi_day_low: int | None
    iv: float | None
    delta: float | None
    gamma: float | None
    theta: float | None
    vega: float | None

    def __init__(self, spec: LegSpec) -> None:
        self.instrument = spec.instrument
        self.strike = spec.strike
        self.option_type = spec.option_type
        self.is_call = spec.option_type == "CE"
        for name in TICK_FIELDS:
            setattr(self, name, None)
        self.exchange_time: datetime | None = None
        self.observed_at = 0.0
        # IV and greeks are None together, finite floats otherwise (black76)
        self.our_iv: float | None = None
        self.our_delta: float | None = None
        self.our_gamma: float | None = None
        self.our_theta: float | None = None
        self.our_vega: float | None = None
        self.buildup: str | None = None
        self.analytics_at = 0.0

    @property
    def priced(self) -> bool:
        return self.ltp is not None or self.prev_close is not None

    def premium(self) -> float | None:
        """Last traded price: what IV is computed from (as NSE does)."""
        return self.ltp

    def mid(self) -> float | None:
        bid, ask = self.bid_price, self.ask_price
        if bid and ask and ask >= bid:
            return 0.5 * (bid + ask)
        return self.ltp

    def compute(self, *, forward: float | None, years: float, rate: float) -> bool:
        """Recompute IV, greeks and build-up on ``forward`` (None: not known, so no IV);
        True when the IV, delta or build-up changed."""
        before = (self.our_iv, self.our_delta, self.buildup)
        premium = self.ltp  # self.premium(), inlined: hot path
        solved = None
        if premium is not None and forward is not None and years > 0:
            solved = black76.implied_vol_and_greeks(
                call=self.is_call,
                premium=premium,
                forward=forward,
                strike=self.strike,
                years=years,
                rate=rate,
                guess=self.our_iv,
                min_time_value=black76.HALF_PAISA,  # less is rounding noise, not a price
            )
        if solved is not None:
            self.our_iv, (self.our_delta, self.our_gamma, self.our_theta, self.our_vega) = solved
        else:
            self.our_iv = self.our_delta = self.our_gamma = self.our_theta = self.our_vega = None
        self.buildup = analytics.buildup(
            analytics.price_change(premium, self.prev_close),
            analytics.oi_change(self.oi, self.prev_oi),
        )
        return (self.our_iv, self.our_delta, self.buildup) != before
