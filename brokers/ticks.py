"""The normalised market events every broker codec produces.

Pure Python, no Django. A field a packet did not carry is ``None`` — never 0 — so the chain
book can carry the last known value forward instead of overwriting it.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class DepthLevel(NamedTuple):
    """One level of market depth."""

    bid_qty: int
    ask_qty: int
    bid_orders: int | None
    ask_orders: int | None
    bid_price: float
    ask_price: float


class Tick(NamedTuple):
    """One instrument's market update.

    A ``NamedTuple``: immutable, no per-instance ``__dict__`` and cheap to build from a tuple
    (``Tick._make``/``tuple.__new__``), which matters on the decode hot path.
    ``exchange_time`` is an aware UTC datetime (None when the packet carried none).
    ``iv`` is a fraction (0.1334 = 13.34 %) whatever the broker sent.
    """

    broker: str
    segment: str
    instrument: str
    exchange_time: datetime | None = None
    ltp: float | None = None
    ltq: int | None = None
    volume: int | None = None
    oi: int | None = None
    prev_close: float | None = None
    prev_oi: int | None = None
    bid_price: float | None = None
    bid_qty: int | None = None
    ask_price: float | None = None
    ask_qty: int | None = None
    depth: tuple[DepthLevel, ...] | None = None
    avg_price: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    total_buy_qty: int | None = None
    total_sell_qty: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    iv: float | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None


class MarketStatus(NamedTuple):
    """A market status event (Dhan code 7, Upstox market_info per segment)."""

    broker: str
    segment: str
    status: str
    at: datetime | None = None


class Disconnect(NamedTuple):
    """The broker announced it is closing the connection (Dhan code 50)."""

    broker: str
    reason_code: int
    reason: str


# The field order the codecs' positional Tick builders (``tuple.__new__``, for speed) assume:
# brokers/dhan/codec.py and brokers/upstox/codec.py check it at import. Changing Tick's fields
# means changing this and both builders.
TICK_LAYOUT = (
    "broker",
    "segment",
    "instrument",
    "exchange_time",
    "ltp",
    "ltq",
    "volume",
    "oi",
    "prev_close",
    "prev_oi",
    "bid_price",
    "bid_qty",
    "ask_price",
    "ask_qty",
    "depth",
    "avg_price",
    "open",
    "high",
    "low",
    "close",
    "total_buy_qty",
    "total_sell_qty",
    "oi_day_high",
    "oi_day_low",
    "iv",
    "delta",
    "gamma",
    "theta",
    "vega",
)
