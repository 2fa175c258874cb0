"""DhanHQ v2 live market feed: binary packets → normalised events. Sans-I/O, pure Python.

``decode_frame(frame)`` turns the payload of one WebSocket binary frame into a list of
``Tick`` / ``MarketStatus`` / ``Disconnect`` events. It holds no connection state: each frame
stands alone, so a frame that raises ``CodecError`` does not poison the next one. The
``encode_*`` functions that build packets (simulator, tests) live in ``brokers.dhan.encode``
and are importable from here too.

Wire facts (``shared/docs/protocols/dhan.md``): little-endian; an 8-byte header ``<BHBI`` —
response code, message length (the whole packet, header included), exchange segment number,
security id — then a body whose size is fixed by the code.

Values: a field the packet does not carry is ``None`` in the Tick, never 0. Prices are the
exact Python float of the float32 on the wire (152.3 arrives as 152.3000030517578): nothing is
rounded here, so encode → decode round-trips bit for bit. Rounding to the instrument's tick
size is a display concern and happens in the chain/presentation layer. Times: Dhan's LTT
counts seconds of IST wall-clock time as if it were UTC; ``exchange_time`` is the true instant
as an aware UTC datetime (LTT − 19800 s), and an LTT of 0 means "no time" → ``None``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from brokers.dhan.segments import SEGMENT_BY_BYTE
from brokers.exceptions import CodecError
from brokers.ticks import TICK_LAYOUT, DepthLevel, Disconnect, MarketStatus, Tick

Event = Tick | MarketStatus | Disconnect
Buffer = bytes | bytearray | memoryview

BROKER: Final = "dhan"
IST_OFFSET_SECONDS: Final = 19800

CODE_IGNORED: Final = 0
CODE_INDEX: Final = 1
CODE_TICKER: Final = 2
CODE_QUOTE: Final = 4
CODE_OI: Final = 5
CODE_PREV_CLOSE: Final = 6
CODE_MARKET_STATUS: Final = 7
CODE_FULL: Final = 8
CODE_DISCONNECT: Final = 50

HEADER = struct.Struct("<BHBI")
TICKER = struct.Struct("<BHBIfI")
QUOTE = struct.Struct("<BHBIfHIfIIIffff")
OI = struct.Struct("<BHBII")
PREV_CLOSE = struct.Struct("<BHBIfI")
MARKET_STATUS = HEADER
FULL = struct.Struct("<BHBIfHIfIIIIIIffff" + "IIHHff" * 5)  # fields, then 5 depth levels
DISCONNECT = struct.Struct("<BHBIH")
DEPTH_LEVELS: Final = 5

# Fixed packet size per response code (header included); the length field must equal it.
PACKET_SIZES: Final[dict[int, int]] = {
    CODE_TICKER: TICKER.size,
    CODE_QUOTE: QUOTE.size,
    CODE_OI: OI.size,
    CODE_PREV_CLOSE: PREV_CLOSE.size,
    CODE_MARKET_STATUS: MARKET_STATUS.size,
    CODE_FULL: FULL.size,
    CODE_DISCONNECT: DISCONNECT.size,
}

DISCONNECT_REASONS: Final[dict[int, str]] = {
    800: "internal server error",
    804: "instruments over limit",
    805: "too many connections or requests",
    806: "data APIs not subscribed",
    807: "access token expired",
    808: "authentication failed",
    809: "access token invalid",
    810: "client id invalid",
    811: "invalid expiry date",
    812: "invalid date format",
    813: "invalid security id",
    814: "invalid request",
}

# Code 7 is header-only (8 bytes: code, length, segment, security id; dhan.md §1): DhanHQ
# sends no status value, only that the segment's market status changed. The event says exactly
# that — "changed" — and never a made-up open/closed: readers take the market's state from the
# exchange calendar (``chains.freshness``). The header's security id carries nothing for it.
MARKET_STATUS_CHANGED: Final = "changed"

# The codec builds Ticks positionally (``tuple.__new__``) for speed; fail at import, not with
# misplaced values, if ticks.py ever reorders or adds fields.
if Tick._fields != TICK_LAYOUT:  # pragma: no cover - guards against a ticks.py change
    raise RuntimeError("brokers.ticks.Tick changed shape: update the positional builders here")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_V = TypeVar("_V")


class _Memo(dict[int, _V]):
    """A dict that computes a missing key with ``make``; emptied when it reaches ``limit``.

    A hit is one C-level dict lookup. Under the GIL a race costs at most a recomputation.
    """

    __slots__ = ("limit", "make")

    def __init__(self, make: Callable[[int], _V], limit: int) -> None:
        super().__init__()
        self.make = make
        self.limit = limit

    def __missing__(self, key: int) -> _V:
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.make(key)
        return value


def _ltt_to_utc(ltt: int) -> datetime | None:
    return None if ltt == 0 else _EPOCH + timedelta(seconds=ltt - IST_OFFSET_SECONDS)


# LTT → datetime: consecutive packets share an LTT second (every instrument ticks within the same
# few seconds), so nearly every lookup hits. Security id → str: ≤ 5000 instruments per
# connection; sharing one str per instrument also speeds the chain book's dict lookups.
_times = _Memo(_ltt_to_utc, 4096)
_instruments = _Memo(str, 65536)


def ist_epoch_to_utc(ltt: int) -> datetime | None:
    """Return the aware UTC datetime for a Dhan LTT (IST wall-clock epoch seconds, uint32).

    0 means "no time" and returns None. Results are cached (bounded).
    """
    return _times[ltt]


def _error(message: str, offset: int, code: int | None, length: int | None) -> CodecError:
    err = CodecError(message, offset=offset, code=code, length=length)
    err.events = []  # decode_frame fills in what came before
    return err


def _unknown_segment(number: int, offset: int, code: int, length: int) -> CodecError:
    return _error(f"unknown exchange segment number {number}", offset, code, length)


_new = tuple.__new__
_SEG = SEGMENT_BY_BYTE


def _ticker(buf: Buffer, off: int) -> Tick:
    code, length, seg, sid, ltp, ltt = TICKER.unpack_from(buf, off)
    segment = _SEG[seg]
    if segment is None:
        raise _unknown_segment(seg, off, code, length)
    # fmt: off
    return _new(Tick, (
        BROKER, segment, _instruments[sid], _times[ltt], ltp, None, None, None,  # .. oi
        None, None, None, None, None, None, None,  # prev_close .. depth
        None, None, None, None, None, None, None,  # avg_price .. total_sell_qty
        None, None, None, None, None, None, None,  # oi_day_high .. vega
    ))
    # fmt: on


def _quote(buf: Buffer, off: int) -> Tick:
    (code, length, seg, sid, ltp, ltq, ltt, avg, volume, sell, buy, open_, close, high, low) = (
        QUOTE.unpack_from(buf, off)
    )
    segment = _SEG[seg]
    if segment is None:
        raise _unknown_segment(seg, off, code, length)
    # fmt: off
    return _new(Tick, (
        BROKER, segment, _instruments[sid], _times[ltt], ltp, ltq, volume, None,  # .. oi
        None, None, None, None, None, None, None,  # prev_close .. depth
        avg, open_, high, low, close, buy, sell,  # avg_price .. total_sell_qty
        None, None, None, None, None, None, None,  # oi_day_high .. vega
    ))
    # fmt: on


def _oi(buf: Buffer, off: int) -> Tick:
    code, length, seg, sid, oi = OI.unpack_from(buf, off)
    segment = _SEG[seg]
    if segment is None:
        raise _unknown_segment(seg, off, code, length)
    # fmt: off
    return _new(Tick, (
        BROKER, segment, _instruments[sid], None, None, None, None, oi,  # .. oi
        None, None, None, None, None, None, None,  # prev_close .. depth
        None, None, None, None, None, None, None,  # avg_price .. total_sell_qty
        None, None, None, None, None, None, None,  # oi_day_high .. vega
    ))
    # fmt: on


def _prev_close(buf: Buffer, off: int) -> Tick:
    code, length, seg, sid, prev_close, prev_oi = PREV_CLOSE.unpack_from(buf, off)
    segment = _SEG[seg]
    if segment is None:
        raise _unknown_segment(seg, off, code, length)
    # fmt: off
    return _new(Tick, (
        BROKER, segment, _instruments[sid], None, None, None, None, None,  # .. oi
        prev_close, prev_oi, None, None, None, None, None,  # prev_close .. depth
        None, None, None, None, None, None, None,  # avg_price .. total_sell_qty
        None, None, None, None, None, None, None,  # oi_day_high .. vega
    ))
    # fmt: on


def _full(buf: Buffer, off: int) -> Tick:
    # fmt: off
    (code, length, seg, sid, ltp, ltq, ltt, avg, volume, sell, buy, oi, oi_high, oi_low,
     open_, close, high, low,
     bq0, aq0, bo0, ao0, bp0, ap0, bq1, aq1, bo1, ao1, bp1, ap1,
     bq2, aq2, bo2, ao2, bp2, ap2, bq3, aq3, bo3, ao3, bp3, ap3,
     bq4, aq4, bo4, ao4, bp4, ap4) = FULL.unpack_from(buf, off)
    # fmt: on
    segment = _SEG[seg]
    if segment is None:
        raise _unknown_segment(seg, off, code, length)
    depth = (
        _new(DepthLevel, (bq0, aq0, bo0, ao0, bp0, ap0)),
        _new(DepthLevel, (bq1, aq1, bo1, ao1, bp1, ap1)),
        _new(DepthLevel, (bq2, aq2, bo2, ao2, bp2, ap2)),
        _new(DepthLevel, (bq3, aq3, bo3, ao3, bp3, ap3)),
        _new(DepthLevel, (bq4, aq4, bo4, ao4, bp4, ap4)),
    )
    # fmt: off
    return _new(Tick, (
        BROKER, segment, _instruments[sid], _times[ltt], ltp, ltq, volume, oi,  # .. oi
        None, None, bp0, bq0, ap0, aq0, depth,  # prev_close .. depth
        avg, open_, high, low, close, buy, sell,  # avg_price .. total_sell_qty
        oi_high, oi_low, None, None, None, None, None,  # oi_day_high .. vega
    ))
    # fmt: on


def _market_status(buf: Buffer, off: int) -> MarketStatus:
    code, length, seg, _sid = MARKET_STATUS.unpack_from(buf, off)
    segment = _SEG[seg]
    if segment is None:
        raise _unknown_segment(seg, off, code, length)
    return MarketStatus(BROKER, segment, MARKET_STATUS_CHANGED, None)


def _disconnect(buf: Buffer, off: int) -> Disconnect:
    # The header's segment and security id carry nothing for a disconnect: not validated.
    reason_code = DISCONNECT.unpack_from(buf, off)[4]
    reason = DISCONNECT_REASONS.get(reason_code)
    if reason is None:
        reason = f"unknown reason code {reason_code}"
    return Disconnect(BROKER, reason_code, reason)


_DECODERS: dict[int, Callable[[Buffer, int], Event]] = {
    CODE_TICKER: _ticker,
    CODE_QUOTE: _quote,
    CODE_OI: _oi,
    CODE_PREV_CLOSE: _prev_close,
    CODE_MARKET_STATUS: _market_status,
    CODE_FULL: _full,
    CODE_DISCONNECT: _disconnect,
}
# Indexed by the code byte: size 0 / decoder None for codes that are not decodable.
_SIZE_BY_CODE: tuple[int, ...] = tuple(PACKET_SIZES.get(c, 0) for c in range(256))
_DECODER_BY_CODE: tuple[Callable[[Buffer, int], Event] | None, ...] = tuple(
    _DECODERS.get(c) for c in range(256)
)


def decode_frame(frame: Buffer) -> list[Event]:
    """Decode one WebSocket binary frame into events, in packet order.

    A frame normally holds one packet; several concatenated packets are accepted, each
    delimited by its own length field. Code-0 packets are skipped silently (Dhan sends them
    as noise); a code-0 packet whose length field cannot delimit it ends the frame.

    Raises ``CodecError`` (``offset`` = where the bad packet starts, ``code`` = its response
    code, ``length`` = its length field; None when the frame ended before it) for: an empty
    frame or fewer than 8 header bytes left, an unknown code (including 1, "Index", whose
    layout is undocumented), a length field that differs from the code's fixed size, a packet
    cut short, or an undefined exchange segment number. A bad packet never yields an event;
    the events decoded before it are on ``err.events`` (a list, possibly empty), so a caller
    loses nothing. The function keeps no state: the next frame decodes independently.
    """
    n = len(frame)
    if n >= 8:
        code = frame[0]
        # Fast path: exactly one well-formed packet (the normal case on this feed).
        if _SIZE_BY_CODE[code] == n and frame[1] | frame[2] << 8 == n:
            return [_DECODER_BY_CODE[code](frame, 0)]  # type: ignore[misc]
    return decode_frame_counted(frame)[0]


def decode_frame_counted(frame: Buffer) -> tuple[list[Event], int]:
    """Like ``decode_frame``, also returning how many code-0 packets were ignored."""
    events: list[Event] = []
    ignored = 0
    n = len(frame)
    off = 0
    try:
        if n == 0:
            raise _error(
                "empty frame: a Dhan packet needs at least an 8-byte header", 0, None, None
            )
        while off < n:
            left = n - off
            code = frame[off]
            length = frame[off + 1] | frame[off + 2] << 8 if left >= 3 else None
            if code == CODE_IGNORED:
                ignored += 1
                if length is not None and 8 <= length <= left:
                    off += length
                    continue
                break  # cannot be delimited: the rest of the frame is noise too
            if left < 8:
                message = f"truncated packet: {left} bytes left, fewer than the 8-byte header"
                raise _error(message, off, code, length)
            size = _SIZE_BY_CODE[code]
            if size == 0:
                why = " (Index: layout undocumented)" if code == CODE_INDEX else ""
                raise _error(f"unknown response code {code}{why}", off, code, length)
            if length != size:
                message = f"length field says {length} bytes but code {code} packets are {size}"
                raise _error(message, off, code, length)
            if left < size:
                message = f"truncated packet: code {code} needs {size} bytes, frame has {left} left"
                raise _error(message, off, code, length)
            events.append(_DECODER_BY_CODE[code](frame, off))  # type: ignore[misc]
            off += size
    except CodecError as err:
        err.events = list(events)
        raise
    return events, ignored


class DhanFeedDecoder:
    """Decodes a connection's frames and counts what it saw (for the feed status page).

    Counters: ``frames`` fed, ``packets`` decoded into events, ``ignored`` code-0 packets,
    ``errors`` frames that raised. Frames are independent, so after a ``CodecError`` the
    decoder may be fed again.
    """

    __slots__ = ("errors", "frames", "ignored", "packets")

    def __init__(self) -> None:
        self.frames = 0
        self.packets = 0
        self.ignored = 0
        self.errors = 0

    def feed(self, frame: Buffer) -> list[Event]:
        """Decode one frame; returns its events. Re-raises ``CodecError`` after counting it.

        The events decoded before a bad packet (``err.events``) are counted in ``packets``.
        """
        self.frames += 1
        try:
            events, ignored = decode_frame_counted(frame)
        except CodecError as err:
            self.errors += 1
            self.packets += len(err.events)
            raise
        self.packets += len(events)
        self.ignored += ignored
        return events


def __getattr__(name: str) -> object:
    # The encoders were specified as part of this module; they live in encode.py to keep each
    # module small. Lazy (PEP 562) because encode.py imports this module's layouts.
    if name.startswith("encode_"):
        from brokers.dhan import encode

        return getattr(encode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
