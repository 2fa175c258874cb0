"""The market model's event: one instrument's state right after it ticked (what the feeds and
REST answers are built from). Pure Python."""

from __future__ import annotations

from typing import NamedTuple

from .universe import Instrument


class SimTick(NamedTuple):
    """One event: the instrument's state right after it ticked. ``at`` is epoch seconds.

    ``iv`` is a fraction (None for an index); ``forward``/``years`` are what the option was
    priced with (greeks follow from them, see ``Market.greeks``).
    """

    instrument: Instrument
    at: float
    ltp: float
    ltq: int
    volume: int
    oi: int
    bid: float
    bid_qty: int
    ask: float
    ask_qty: int
    avg_price: float
    open: float
    high: float
    low: float
    total_buy_qty: int
    total_sell_qty: int
    oi_day_high: int
    oi_day_low: int
    iv: float | None
    forward: float
    years: float
