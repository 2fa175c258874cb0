"""Upstox Market Data Feed V3 codec: one binary ``FeedResponse`` frame in, events out — and back.

Sans-I/O and pure Python (protobuf's upb runtime does the parsing; no Django). The schema is our
own ``MarketDataFeedV3.proto``, wire-compatible with the broker's, whose market scalars are
declared ``optional`` so a field the frame did not carry decodes as ``None``, never 0. Upstox
``live_feed`` frames are incremental: callers carry absent fields forward. The broker's own schema
has implicit presence, so it never sends a value equal to 0 (or +0.0): such a value reaches us as
"absent" (None) too.

What counts as a valid frame (anything else raises :class:`CodecError`, and nothing is returned,
so a bad frame never yields a half-filled tick):

* it parses as a ``FeedResponse`` (protobuf's ``DecodeError`` is re-raised as ``CodecError``);
* its ``type`` is a known value (an unknown one is reported with ``code`` = the value);
* it carries ``currentTs`` — the broker stamps every frame, and it is serialised after all
  feeds, so a frame cut short at a field boundary is caught here (protobuf happily parses a prefix
  of a message as a smaller message). Every strict prefix of a frame serialised in field order
  (as the broker and ``brokers.upstox.encode`` do) is rejected;
* a ``market_info`` frame carries ``marketInfo``; every segment status is a known value;
* a frame with neither feeds nor market info carries nothing but ``type``/``currentTs`` (random
  bytes sometimes parse as a message made of unknown fields: those are rejected);
* every feed entry has an instrument key ``SEGMENT|token`` and a known payload (ltpc,
  firstLevelWithGreeks, fullFeed.marketFF or fullFeed.indexFF); ``ltt`` fits a datetime; OI and
  total buy/sell quantities (doubles on the wire) are whole numbers.

Unknown fields next to known content are ignored: the broker adds fields (in 2026 the call-auction
``iep`` on LTPC and the CAS/pre-open status maps of ``marketInfo``), and the decoder reads only
what a Tick holds.

The encoders that build frames (exchange simulator, tests) live in ``brokers.upstox.encode``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from brokers.exceptions import CodecError
from brokers.ticks import TICK_LAYOUT, DepthLevel, MarketStatus, Tick
from brokers.upstox import MarketDataFeedV3_pb2 as pb

__all__ = ["BROKER", "Frame", "FrameKind", "decode_frame", "epoch_ms_to_datetime"]

BROKER = "upstox"

if Tick._fields != TICK_LAYOUT:  # the builders below fill Tick positionally
    raise ImportError("brokers.ticks.Tick changed its fields: update brokers/upstox/codec.py")
_DEPTH_FIELDS = ("bid_qty", "ask_qty", "bid_orders", "ask_orders", "bid_price", "ask_price")
if DepthLevel._fields != _DEPTH_FIELDS:
    raise ImportError("brokers.ticks.DepthLevel changed its fields: update brokers/upstox/codec.py")


class FrameKind(StrEnum):
    """What a ``FeedResponse`` frame is (its ``type``)."""

    SNAPSHOT = "snapshot"  # initial_feed (0): absent on the wire; full state of subscribed keys
    LIVE_FEED = "live_feed"  # incremental: only what changed since the last frame
    MARKET_INFO = "market_info"  # segment statuses; the first frame of a connection


_KINDS = (FrameKind.SNAPSHOT, FrameKind.LIVE_FEED, FrameKind.MARKET_INFO)  # index = wire value
_STATUS_NAMES = tuple(pb.MarketStatus.Name(v) for v in range(len(pb.MarketStatus.keys())))


class Frame(list[Tick | MarketStatus]):
    """The events of one frame, in order: ``MarketStatus`` per segment, then one ``Tick`` per feed.

    A plain list of events (equality compares the events only) with two attributes:
    ``kind`` (:class:`FrameKind`: a snapshot replaces state, a live_feed updates it) and
    ``current_ts`` (the frame's ``currentTs`` as an aware UTC datetime; None when it was 0).
    """

    __slots__ = ("current_ts", "kind")

    def __init__(
        self, events: Iterable[Tick | MarketStatus], *, kind: FrameKind, current_ts: datetime | None
    ) -> None:
        super().__init__(events)
        self.kind = kind
        self.current_ts = current_ts

    def __repr__(self) -> str:
        return f"Frame(kind={self.kind!s}, current_ts={self.current_ts!r}, events={list(self)!r})"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLIS = tuple(timedelta(milliseconds=i) for i in range(1000))
_CACHE_LIMIT = 8192
_SECONDS: dict[int, datetime] = {}  # epoch second -> datetime; feeds of a frame share seconds
_SEGMENTS: dict[str, str] = {}  # instrument key -> segment


def _second(sec: int) -> datetime:
    """Return (and cache) the datetime of an epoch second; OverflowError if out of range."""
    if len(_SECONDS) >= _CACHE_LIMIT:
        _SECONDS.clear()
    base = _SECONDS[sec] = _EPOCH + timedelta(seconds=sec)
    return base


def epoch_ms_to_datetime(ms: int) -> datetime | None:
    """Return epoch milliseconds as an exact aware UTC datetime; 0 means "none" and gives None.

    Raises OverflowError when ``ms`` is outside the datetime range (years 1-9999).
    """
    if not ms:
        return None
    sec, milli = divmod(ms, 1000)
    return (_SECONDS.get(sec) or _second(sec)) + _MILLIS[milli]  # a datetime is never falsy


def _segment(key: str) -> str:
    """Return (and cache) the segment of ``SEGMENT|token``; ValueError for any other key."""
    segment, sep, token = key.partition("|")
    if not (sep and segment and token):
        raise ValueError("its key is not an instrument key 'SEGMENT|token'")
    if len(_SEGMENTS) >= _CACHE_LIMIT:
        _SEGMENTS.clear()
    _SEGMENTS[key] = segment
    return segment


def _whole(value: float) -> int:
    """Return a count sent as a double as an int; ValueError/OverflowError if not whole."""
    count = int(value)
    if count != value:
        raise ValueError(f"count {value!r} is not a whole number")
    return count


# The builders read each optional scalar as `v = m.f` and only ask `m.HasField("f")` when v is
# falsy: a non-zero value must have been on the wire, and an absent one reads as 0. That keeps
# presence exact (an explicit 0 or -0.0 stays 0) at half the cost of a HasField per field.
# A submessage is read without HasField: an absent one reads as an empty message.


def _ltpc_tick(segment: str, key: str, lt: pb.LTPC) -> Tick:
    """Build the Tick of an ltpc-mode feed."""
    ltp: float | None = lt.ltp
    if not ltp and not lt.HasField("ltp"):
        ltp = None
    ltq: int | None = lt.ltq
    if not ltq and not lt.HasField("ltq"):
        ltq = None
    cp: float | None = lt.cp
    if not cp and not lt.HasField("cp"):
        cp = None
    return tuple.__new__(
        Tick,
        (BROKER, segment, key, epoch_ms_to_datetime(lt.ltt), ltp, ltq, None, None, cp, None,
         None, None, None, None, None, None, None, None, None, None, None, None, None, None,
         None, None, None, None, None),
    )  # fmt: skip


def _greeks_tick(segment: str, key: str, m: pb.FirstLevelWithGreeks) -> Tick:
    """Build the Tick of an option_greeks-mode feed (the hot path of an option chain)."""
    lt = m.ltpc
    ltp: float | None = lt.ltp
    if not ltp and not lt.HasField("ltp"):
        ltp = None
    ltt = lt.ltt
    if ltt:
        sec, milli = divmod(ltt, 1000)
        base = _SECONDS.get(sec)
        if base is None:
            base = _second(sec)
        exchange_time = base + _MILLIS[milli]
    else:
        exchange_time = None
    ltq: int | None = lt.ltq
    if not ltq and not lt.HasField("ltq"):
        ltq = None
    cp: float | None = lt.cp
    if not cp and not lt.HasField("cp"):
        cp = None
    q = m.firstDepth
    bid_qty: int | None = q.bidQ
    if not bid_qty and not q.HasField("bidQ"):
        bid_qty = None
    bid: float | None = q.bidP
    if not bid and not q.HasField("bidP"):
        bid = None
    ask_qty: int | None = q.askQ
    if not ask_qty and not q.HasField("askQ"):
        ask_qty = None
    ask: float | None = q.askP
    if not ask and not q.HasField("askP"):
        ask = None
    g = m.optionGreeks
    delta: float | None = g.delta
    if not delta and not g.HasField("delta"):
        delta = None
    theta: float | None = g.theta
    if not theta and not g.HasField("theta"):
        theta = None
    gamma: float | None = g.gamma
    if not gamma and not g.HasField("gamma"):
        gamma = None
    vega: float | None = g.vega
    if not vega and not g.HasField("vega"):
        vega = None
    vtt: int | None = m.vtt
    if not vtt and not m.HasField("vtt"):
        vtt = None
    oi: float | None = m.oi
    if oi:
        count = int(oi)  # ValueError/OverflowError for nan/inf
        if count != oi:
            raise ValueError(f"oi {oi!r} is not a whole number")
        oi = count
    elif m.HasField("oi"):
        oi = 0
    else:
        oi = None
    iv: float | None = m.iv
    if not iv and not m.HasField("iv"):
        iv = None
    return tuple.__new__(
        Tick,
        (BROKER, segment, key, exchange_time, ltp, ltq, vtt, oi, cp, None, bid, bid_qty, ask,
         ask_qty, None, None, None, None, None, None, None, None, None, None, iv, delta, gamma,
         theta, vega),
    )  # fmt: skip


def _opt(m: Message, name: str) -> float | None:
    """Return optional scalar ``name`` of message ``m``, or None when the frame did not carry it."""
    value = getattr(m, name)
    if not value and not m.HasField(name):
        return None
    return value


def _count(m: Message, name: str) -> int | None:
    """Return a count the wire sends as a double (oi, tbq, tsq) as an int, or None if absent."""
    value = _opt(m, name)
    return None if value is None else _whole(value)


def _day_ohlc(m: pb.MarketOHLC) -> tuple[float | None, float | None, float | None, float | None]:
    """Return (open, high, low, close) of the "1d" interval; all None when there is none."""
    for bar in m.ohlc:
        if bar.interval == "1d":
            return _opt(bar, "open"), _opt(bar, "high"), _opt(bar, "low"), _opt(bar, "close")
    return None, None, None, None


def _full_tick(segment: str, key: str, full: pb.FullFeed) -> Tick:
    """Build the Tick of a full-mode feed (marketFF for tradables, indexFF for indices)."""
    which = full.WhichOneof("FullFeedUnion")
    if which == "indexFF":
        m = full.indexFF
        opened, high, low, close = _day_ohlc(m.marketOHLC)
        tick = _ltpc_tick(segment, key, m.ltpc)
        return tick._replace(open=opened, high=high, low=low, close=close)
    if which != "marketFF":
        raise ValueError("fullFeed carries neither marketFF nor indexFF")
    m = full.marketFF
    lt = m.ltpc
    depth = bid = bid_qty = ask = ask_qty = None
    if m.HasField("marketLevel"):
        quotes = m.marketLevel.bidAskQuote
        # A depth level is a whole row of the book, sent whole: an absent field is an empty side.
        depth = tuple(
            [
                tuple.__new__(DepthLevel, (q.bidQ, q.askQ, None, None, q.bidP, q.askP))
                for q in quotes
            ]
        )
        if quotes:
            top = quotes[0]
            bid, bid_qty = _opt(top, "bidP"), _opt(top, "bidQ")
            ask, ask_qty = _opt(top, "askP"), _opt(top, "askQ")
    g = m.optionGreeks
    opened, high, low, close = _day_ohlc(m.marketOHLC)
    return tuple.__new__(
        Tick,
        (BROKER, segment, key, epoch_ms_to_datetime(lt.ltt), _opt(lt, "ltp"), _opt(lt, "ltq"),
         _opt(m, "vtt"), _count(m, "oi"), _opt(lt, "cp"), None, bid, bid_qty, ask, ask_qty,
         depth, _opt(m, "atp"), opened, high, low, close, _count(m, "tbq"), _count(m, "tsq"),
         None, None, _opt(m, "iv"), _opt(g, "delta"), _opt(g, "gamma"), _opt(g, "theta"),
         _opt(g, "vega")),
    )  # fmt: skip


def _statuses(response: pb.FeedResponse, at: datetime | None, length: int) -> list[MarketStatus]:
    """Return one MarketStatus per segment of ``marketInfo.segmentStatus``, sorted by segment."""
    events = []
    for segment, value in sorted(response.marketInfo.segmentStatus.items()):
        if not 0 <= value < len(_STATUS_NAMES):
            raise CodecError(
                f"Upstox market_info gives segment {segment!r} an unknown status {value}: "
                "the broker's schema changed; update MarketDataFeedV3.proto",
                offset=0,
                length=length,
            )
        events.append(tuple.__new__(MarketStatus, (BROKER, segment, _STATUS_NAMES[value], at)))
    return events


def _parse(frame: bytes) -> pb.FeedResponse:
    """Parse ``frame`` as a FeedResponse; CodecError if it is not valid protobuf."""
    try:
        return pb.FeedResponse.FromString(frame)
    except DecodeError as exc:
        raise CodecError(
            f"Upstox frame is not a valid FeedResponse (corrupt or truncated protobuf: {exc})",
            offset=0,
            length=len(frame),
        ) from exc


def _header(response: pb.FeedResponse, length: int) -> tuple[FrameKind, datetime | None, bool]:
    """Return (kind, current_ts, has market info) after the frame-level checks; CodecError."""
    type_value = response.type
    if not 0 <= type_value < len(_KINDS):
        raise CodecError(
            f"Upstox frame has unknown type {type_value} (known: 0 initial_feed, 1 live_feed, "
            "2 market_info): the broker's schema changed; update MarketDataFeedV3.proto",
            offset=0,
            code=type_value,
            length=length,
        )
    if not response.HasField("currentTs"):
        raise CodecError(
            "Upstox frame has no currentTs: truncated frame or not a V3 FeedResponse",
            offset=0,
            length=length,
        )
    try:
        current_ts = epoch_ms_to_datetime(response.currentTs)
    except OverflowError as exc:
        raise CodecError(
            f"Upstox frame currentTs {response.currentTs} is out of range: {exc}",
            offset=0,
            length=length,
        ) from exc
    kind = _KINDS[type_value]
    has_info = response.HasField("marketInfo")
    if kind is FrameKind.MARKET_INFO and not has_info:
        raise CodecError(
            "Upstox market_info frame has no marketInfo: truncated frame", offset=0, length=length
        )
    if not has_info and not response.feeds and len(UnknownFieldSet(response)):
        raise CodecError(
            "Upstox frame carries no feeds and no market info, only unknown fields: "
            "not a V3 FeedResponse",
            offset=0,
            length=length,
        )
    return kind, current_ts, has_info


def decode_frame(frame: bytes) -> Frame:
    """Decode one binary FeedResponse into a :class:`Frame` (a list of events).

    Returns MarketStatus events (one per segment, for market_info) followed by one Tick per feed
    entry; ``frame.kind`` says snapshot / live_feed / market_info. Fields the frame did not carry
    are None. Raises :class:`CodecError` (``offset=0``, ``length=len(frame)``) for anything that
    is not a complete, valid frame — see the module docstring; nothing is returned then.
    """
    length = len(frame)
    response = _parse(frame)
    kind, current_ts, has_info = _header(response, length)
    events: list[Tick | MarketStatus] = []
    if has_info:
        events.extend(_statuses(response, current_ts, length))
    append = events.append
    segments = _SEGMENTS
    for key, feed in response.feeds.items():
        which = feed.WhichOneof("FeedUnion")
        try:
            segment = segments.get(key) or _segment(key)
            if which == "firstLevelWithGreeks":
                append(_greeks_tick(segment, key, feed.firstLevelWithGreeks))
            elif which == "ltpc":
                append(_ltpc_tick(segment, key, feed.ltpc))
            elif which == "fullFeed":
                append(_full_tick(segment, key, feed.fullFeed))
            else:
                raise ValueError("it carries no ltpc, firstLevelWithGreeks or fullFeed")
        except (ValueError, OverflowError) as exc:  # our checks, int(nan/inf), datetime range
            raise CodecError(
                f"Upstox feed for {key!r} is invalid: {exc}", offset=0, length=length
            ) from exc
    return Frame(events, kind=kind, current_ts=current_ts)
