"""DhanHQ v2 live market feed: events → binary packets (the exchange simulator's side).

Pure Python, no Django; the inverse of ``brokers.dhan.codec``. Values are keyword-only. A value
that does not fit its wire type raises ValueError (uint out of range, float32 overflow, NaN or
infinity, unknown segment name, naive datetime); a value of the wrong kind raises TypeError —
so a simulator bug surfaces here rather than as a wrapped-around number in a client.

Times: ``ltt`` is an aware datetime (any zone); it is written as Dhan's IST-wall-clock epoch
seconds (UTC epoch + 19800), sub-second part dropped. ``ltt=None`` writes 0, "no time".
Prices: written as float32, so the decoder returns ``struct.unpack("<f", struct.pack("<f", x))``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from datetime import UTC, datetime

from brokers.dhan.codec import (
    CODE_DISCONNECT,
    CODE_FULL,
    CODE_MARKET_STATUS,
    CODE_OI,
    CODE_PREV_CLOSE,
    CODE_QUOTE,
    CODE_TICKER,
    DEPTH_LEVELS,
    DISCONNECT,
    FULL,
    IST_OFFSET_SECONDS,
    MARKET_STATUS,
    OI,
    PREV_CLOSE,
    QUOTE,
    TICKER,
)
from brokers.dhan.segments import segment_number
from brokers.ticks import DepthLevel

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_F32 = struct.Struct("<f")


def _uint(name: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name}={value} does not fit uint{bits} (0..{(1 << bits) - 1})")
    return value


def _f32(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} is not finite")
    try:
        _F32.pack(value)
    except OverflowError:
        raise ValueError(f"{name}={value} does not fit float32") from None
    return value


def _header(segment: str, security_id: int | str) -> tuple[int, int]:
    if isinstance(security_id, str):
        if not (security_id.isascii() and security_id.isdigit()):
            raise ValueError(f"security_id={security_id!r} is not a decimal number")
        security_id = int(security_id)
    return segment_number(segment), _uint("security_id", security_id, 32)


def _ltt(at: datetime | None) -> int:
    """IST-epoch seconds for an aware datetime (sub-second part dropped); None → 0 (no time)."""
    if at is None:
        return 0
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"ltt={at!r} must be timezone-aware")
    delta = at - _EPOCH
    ltt = delta.days * 86400 + delta.seconds + IST_OFFSET_SECONDS
    if ltt == 0:
        raise ValueError(f"ltt={at.isoformat()} encodes as 0, which means 'no time'")
    return _uint("ltt (IST epoch seconds)", ltt, 32)


def encode_ticker(
    segment: str, security_id: int | str, *, ltp: float, ltt: datetime | None
) -> bytes:
    """Ticker packet (code 2, 16 bytes). ``ltt`` is an aware datetime, or None for "no time"."""
    seg, sid = _header(segment, security_id)
    return TICKER.pack(CODE_TICKER, TICKER.size, seg, sid, _f32("ltp", ltp), _ltt(ltt))


def encode_quote(
    segment: str,
    security_id: int | str,
    *,
    ltp: float,
    ltq: int,
    ltt: datetime | None,
    avg_price: float,
    volume: int,
    total_sell_qty: int,
    total_buy_qty: int,
    open: float,  # the wire field's name
    close: float,
    high: float,
    low: float,
) -> bytes:
    """Quote packet (code 4, 50 bytes)."""
    seg, sid = _header(segment, security_id)
    return QUOTE.pack(
        CODE_QUOTE,
        QUOTE.size,
        seg,
        sid,
        _f32("ltp", ltp),
        _uint("ltq", ltq, 16),
        _ltt(ltt),
        _f32("avg_price", avg_price),
        _uint("volume", volume, 32),
        _uint("total_sell_qty", total_sell_qty, 32),
        _uint("total_buy_qty", total_buy_qty, 32),
        _f32("open", open),
        _f32("close", close),
        _f32("high", high),
        _f32("low", low),
    )


def encode_oi(segment: str, security_id: int | str, *, oi: int) -> bytes:
    """OI packet (code 5, 12 bytes)."""
    seg, sid = _header(segment, security_id)
    return OI.pack(CODE_OI, OI.size, seg, sid, _uint("oi", oi, 32))


def encode_prev_close(
    segment: str, security_id: int | str, *, prev_close: float, prev_oi: int
) -> bytes:
    """Previous-close packet (code 6, 16 bytes): previous close price and previous day's OI."""
    seg, sid = _header(segment, security_id)
    return PREV_CLOSE.pack(
        CODE_PREV_CLOSE,
        PREV_CLOSE.size,
        seg,
        sid,
        _f32("prev_close", prev_close),
        _uint("prev_oi", prev_oi, 32),
    )


def encode_market_status(segment: str, security_id: int | str = 0) -> bytes:
    """Market status packet (code 7, header only, 8 bytes)."""
    seg, sid = _header(segment, security_id)
    return MARKET_STATUS.pack(CODE_MARKET_STATUS, MARKET_STATUS.size, seg, sid)


def encode_full(
    segment: str,
    security_id: int | str,
    *,
    ltp: float,
    ltq: int,
    ltt: datetime | None,
    avg_price: float,
    volume: int,
    total_sell_qty: int,
    total_buy_qty: int,
    oi: int,
    oi_day_high: int,
    oi_day_low: int,
    open: float,  # the wire field's name
    close: float,
    high: float,
    low: float,
    depth: Sequence[DepthLevel],
) -> bytes:
    """Full packet (code 8, 162 bytes). ``depth`` is exactly 5 levels, best first.

    Every level needs integer order counts (``DepthLevel`` allows None; Dhan's wire does not).
    """
    seg, sid = _header(segment, security_id)
    if len(depth) != DEPTH_LEVELS:
        raise ValueError(f"depth has {len(depth)} levels; a Dhan Full packet carries exactly 5")
    levels: list[int | float] = []
    for i, level in enumerate(depth):
        bid_qty, ask_qty, bid_orders, ask_orders, bid_price, ask_price = level
        if bid_orders is None or ask_orders is None:
            raise ValueError(f"depth[{i}] needs bid_orders and ask_orders (Dhan sends counts)")
        levels += (
            _uint(f"depth[{i}].bid_qty", bid_qty, 32),
            _uint(f"depth[{i}].ask_qty", ask_qty, 32),
            _uint(f"depth[{i}].bid_orders", bid_orders, 16),
            _uint(f"depth[{i}].ask_orders", ask_orders, 16),
            _f32(f"depth[{i}].bid_price", bid_price),
            _f32(f"depth[{i}].ask_price", ask_price),
        )
    return FULL.pack(
        CODE_FULL,
        FULL.size,
        seg,
        sid,
        _f32("ltp", ltp),
        _uint("ltq", ltq, 16),
        _ltt(ltt),
        _f32("avg_price", avg_price),
        _uint("volume", volume, 32),
        _uint("total_sell_qty", total_sell_qty, 32),
        _uint("total_buy_qty", total_buy_qty, 32),
        _uint("oi", oi, 32),
        _uint("oi_day_high", oi_day_high, 32),
        _uint("oi_day_low", oi_day_low, 32),
        _f32("open", open),
        _f32("close", close),
        _f32("high", high),
        _f32("low", low),
        *levels,
    )


def encode_disconnect(
    *, reason_code: int, segment: str = "IDX_I", security_id: int | str = 0
) -> bytes:
    """Disconnect packet (code 50, 10 bytes). Any uint16 reason code; see DISCONNECT_REASONS."""
    seg, sid = _header(segment, security_id)
    return DISCONNECT.pack(
        CODE_DISCONNECT, DISCONNECT.size, seg, sid, _uint("reason_code", reason_code, 16)
    )
