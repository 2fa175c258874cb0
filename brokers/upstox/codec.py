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
  (as the broker and the ``encode_*`` functions here do) is rejected;
* a ``market_info`` frame carries ``marketInfo``; every segment status is a known value;
* a frame with neither feeds nor market info carries nothing but ``type``/``currentTs`` (random
  bytes sometimes parse as a message made of unknown fields: those are rejected);
* every feed entry has an instrument key ``SEGMENT|token`` and a known payload (ltpc,
  firstLevelWithGreeks, fullFeed.marketFF or fullFeed.indexFF); ``ltt`` fits a datetime; OI and
  total buy/sell quantities (doubles on the wire) are whole numbers.

Unknown fields next to known content are ignored (the broker may add fields).

The encoders (:func:`encode_market_info`, :func:`encode_snapshot`, :func:`encode_live_feed`) build
frames for the exchange simulator and tests, in Tick vocabulary, setting only the fields given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from brokers.exceptions import CodecError
from brokers.ticks import DepthLevel, MarketStatus, Tick
from brokers.upstox import MarketDataFeedV3_pb2 as pb

__all__ = [
    "BROKER",
    "ENCODE_MODES",
    "Frame",
    "FrameKind",
    "datetime_to_epoch_ms",
    "decode_frame",
    "encode_live_feed",
    "encode_market_info",
    "encode_snapshot",
    "epoch_ms_to_datetime",
]

BROKER = "upstox"

_TICK_FIELDS = (
    "broker", "segment", "instrument", "exchange_time", "ltp", "ltq", "volume", "oi",
    "prev_close", "prev_oi", "bid_price", "bid_qty", "ask_price", "ask_qty", "depth",
    "avg_price", "open", "high", "low", "close", "total_buy_qty", "total_sell_qty",
    "oi_day_high", "oi_day_low", "iv", "delta", "gamma", "theta", "vega",
)  # fmt: skip
if Tick._fields != _TICK_FIELDS:  # the builders below fill Tick positionally
    raise ImportError("brokers.ticks.Tick changed its fields: update brokers/upstox/codec.py")
if DepthLevel._fields != (
    "bid_qty", "ask_qty", "bid_orders", "ask_orders", "bid_price", "ask_price"
):  # fmt: skip
    raise ImportError("brokers.ticks.DepthLevel changed its fields: update brokers/upstox/codec.py")


class FrameKind(StrEnum):
    """What a ``FeedResponse`` frame is (its ``type``)."""

    SNAPSHOT = "snapshot"  # initial_feed (0): absent on the wire; full state of subscribed keys
    LIVE_FEED = "live_feed"  # incremental: only what changed since the last frame
    MARKET_INFO = "market_info"  # segment statuses; the first frame of a connection


_KINDS = (FrameKind.SNAPSHOT, FrameKind.LIVE_FEED, FrameKind.MARKET_INFO)  # index = wire value
_STATUS_NAMES = tuple(pb.MarketStatus.Name(v) for v in range(len(pb.MarketStatus.keys())))


class Frame(list):  # type: ignore[type-arg]  # list[Tick | MarketStatus]
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
    base = _SECONDS.get(sec)
    if base is None:
        base = _second(sec)
    return base + _MILLIS[milli]


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
    ltp = lt.ltp
    if not ltp and not lt.HasField("ltp"):
        ltp = None
    ltq = lt.ltq
    if not ltq and not lt.HasField("ltq"):
        ltq = None
    cp = lt.cp
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
    ltp = lt.ltp
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
    ltq = lt.ltq
    if not ltq and not lt.HasField("ltq"):
        ltq = None
    cp = lt.cp
    if not cp and not lt.HasField("cp"):
        cp = None
    q = m.firstDepth
    bid_qty = q.bidQ
    if not bid_qty and not q.HasField("bidQ"):
        bid_qty = None
    bid = q.bidP
    if not bid and not q.HasField("bidP"):
        bid = None
    ask_qty = q.askQ
    if not ask_qty and not q.HasField("askQ"):
        ask_qty = None
    ask = q.askP
    if not ask and not q.HasField("askP"):
        ask = None
    g = m.optionGreeks
    delta = g.delta
    if not delta and not g.HasField("delta"):
        delta = None
    theta = g.theta
    if not theta and not g.HasField("theta"):
        theta = None
    gamma = g.gamma
    if not gamma and not g.HasField("gamma"):
        gamma = None
    vega = g.vega
    if not vega and not g.HasField("vega"):
        vega = None
    vtt = m.vtt
    if not vtt and not m.HasField("vtt"):
        vtt = None
    oi = m.oi
    if oi:
        count = int(oi)  # ValueError/OverflowError for nan/inf
        if count != oi:
            raise ValueError(f"oi {oi!r} is not a whole number")
        oi = count
    elif m.HasField("oi"):
        oi = 0
    else:
        oi = None
    iv = m.iv
    if not iv and not m.HasField("iv"):
        iv = None
    return tuple.__new__(
        Tick,
        (BROKER, segment, key, exchange_time, ltp, ltq, vtt, oi, cp, None, bid, bid_qty, ask,
         ask_qty, None, None, None, None, None, None, None, None, None, None, iv, delta, gamma,
         theta, vega),
    )  # fmt: skip


def _opt(m: object, name: str) -> object:
    """Return optional scalar ``name`` of message ``m``, or None when the frame did not carry it."""
    value = getattr(m, name)
    if not value and not m.HasField(name):  # type: ignore[attr-defined]
        return None
    return value


def _count(m: object, name: str) -> int | None:
    """Return a count the wire sends as a double (oi, tbq, tsq) as an int, or None if absent."""
    value = _opt(m, name)
    return None if value is None else _whole(value)  # type: ignore[arg-type]


def _day_ohlc(m: pb.MarketOHLC) -> tuple[object, object, object, object]:
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


# --- Encoders: the exchange simulator's side -------------------------------------------------

ENCODE_MODES = ("ltpc", "option_greeks", "full")
_LTPC_WIRE = {"exchange_time": "ltt", "ltp": "ltp", "ltq": "ltq", "prev_close": "cp"}
_GREEKS_WIRE = {n: ("optionGreeks", n) for n in ("delta", "theta", "gamma", "vega")}
_OHLC_NAMES = frozenset(("open", "high", "low", "close"))
_DOUBLE_COUNTS = frozenset(("oi", "total_buy_qty", "total_sell_qty"))
# Tick field -> (submessage of the mode's payload, "" for the payload itself; wire field name)
_PATHS: dict[str, dict[str, tuple[str, str]]] = {
    "ltpc": {name: ("", wire) for name, wire in _LTPC_WIRE.items()},
    "option_greeks": {
        **{name: ("ltpc", wire) for name, wire in _LTPC_WIRE.items()},
        **_GREEKS_WIRE,
        "bid_price": ("firstDepth", "bidP"),
        "bid_qty": ("firstDepth", "bidQ"),
        "ask_price": ("firstDepth", "askP"),
        "ask_qty": ("firstDepth", "askQ"),
        "volume": ("", "vtt"),
        "oi": ("", "oi"),
        "iv": ("", "iv"),
    },
    "full": {
        **{name: ("ltpc", wire) for name, wire in _LTPC_WIRE.items()},
        **_GREEKS_WIRE,
        "avg_price": ("", "atp"),
        "volume": ("", "vtt"),
        "oi": ("", "oi"),
        "iv": ("", "iv"),
        "total_buy_qty": ("", "tbq"),
        "total_sell_qty": ("", "tsq"),
    },  # plus depth (marketLevel) and open/high/low/close ("1d" bar)
    "index": {name: ("ltpc", wire) for name, wire in _LTPC_WIRE.items()},  # plus the "1d" bar
}
_MS = timedelta(milliseconds=1)


def datetime_to_epoch_ms(at: datetime) -> int:
    """Return an aware datetime as epoch milliseconds (the sub-millisecond part is dropped).

    Raises TypeError for a non-datetime, ValueError for a naive datetime.
    """
    if not isinstance(at, datetime):
        raise TypeError(f"Upstox timestamps are aware datetimes, got {at!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"Upstox timestamps need an aware datetime, got naive {at!r}")
    since = at - _EPOCH  # exact integer arithmetic (a float timestamp can lose the last ms)
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


def _wire_value(name: str, value: object) -> object:
    """Convert a Tick-vocabulary value to its wire form; ValueError if it has none."""
    if name == "exchange_time":
        return datetime_to_epoch_ms(value)  # type: ignore[arg-type]
    if name in _DOUBLE_COUNTS:  # sent as a double: refuse what a double cannot hold exactly
        if not isinstance(value, int) or abs(value) > 2**53:
            raise ValueError(f"{name} must be an int of magnitude <= 2**53, got {value!r}")
        return float(value)
    return value


# A field needs conversion on its way to the wire (the rest are set as given).
_CONVERTED = _DOUBLE_COUNTS | {"exchange_time"}


def _fill(feed: pb.Feed, key: str, mode: str, fields: Mapping[str, object]) -> None:
    """Set the given (non-None) fields of one feed entry in ``mode``; ValueError if not carried.

    The simulator encodes tens of thousands of entries a second through here, so each
    submessage is fetched once per entry and plain values go straight to ``setattr``.
    """
    if mode not in ENCODE_MODES:
        raise ValueError(f"Upstox encode mode {mode!r} is not one of {ENCODE_MODES}")
    segment, sep, token = key.partition("|")
    if not (sep and segment and token):
        raise ValueError(f"Upstox instrument key {key!r} is not 'SEGMENT|token'")
    if mode == "ltpc":
        payload, paths = feed.ltpc, _PATHS["ltpc"]
    elif mode == "option_greeks":
        payload, paths = feed.firstLevelWithGreeks, _PATHS["option_greeks"]
    elif segment.endswith("_INDEX"):  # the broker sends indices' full feed as indexFF
        payload, paths = feed.fullFeed.indexFF, _PATHS["index"]
    else:
        payload, paths = feed.fullFeed.marketFF, _PATHS["full"]
    payload.SetInParent()  # an entry that carries no field still says which payload it is
    subs: dict[str, object] = {"": payload}
    bar: dict[str, object] = {}
    for name, value in fields.items():
        if value is None:  # None means "not carried", as in Tick
            continue
        path = paths.get(name)
        if path is not None:
            sub, wire = path
            target = subs.get(sub)
            if target is None:
                target = subs[sub] = getattr(payload, sub)
            setattr(target, wire, _wire_value(name, value) if name in _CONVERTED else value)
        elif name in _OHLC_NAMES and mode == "full":
            bar[name] = value
        elif name == "depth" and paths is _PATHS["full"]:
            _fill_depth(payload.marketLevel, value)  # type: ignore[arg-type]
        else:
            allowed = sorted({*paths, *(_OHLC_NAMES if mode == "full" else ())})
            if paths is _PATHS["full"]:
                allowed.append("depth (top of book comes from depth[0])")
            raise ValueError(
                f"Upstox {mode} feed for {key!r} cannot carry {name!r}; it carries {allowed}"
            )
    if bar:
        payload.marketOHLC.ohlc.add(interval="1d", **bar)


def _fill_depth(level: pb.MarketLevel, depth: Iterable[DepthLevel]) -> None:
    """Add depth rows to ``marketLevel`` (present even when empty); Upstox has no order counts."""
    level.SetInParent()
    for row in depth:
        if row.bid_orders is not None or row.ask_orders is not None:
            raise ValueError(f"Upstox depth carries no order counts; set them to None in {row!r}")
        level.bidAskQuote.add(
            bidQ=row.bid_qty, bidP=row.bid_price, askQ=row.ask_qty, askP=row.ask_price
        )


def _encode_feeds(
    kind: FrameKind,
    mode: str | Mapping[str, str],
    feeds: Mapping[str, Mapping[str, object]],
    current_ts: datetime,
) -> bytes:
    response = pb.FeedResponse(type=_KINDS.index(kind), currentTs=datetime_to_epoch_ms(current_ts))
    for key, fields in feeds.items():
        feed_mode = mode if isinstance(mode, str) else mode.get(key)
        if feed_mode is None:
            raise ValueError(f"no mode given for {key!r}: add it to the mode mapping")
        _fill(response.feeds[key], key, feed_mode, fields)
    return response.SerializeToString()


def encode_snapshot(
    *,
    feeds: Mapping[str, Mapping[str, object]],
    mode: str | Mapping[str, str],
    current_ts: datetime,
) -> bytes:
    """Return the bytes of a snapshot frame (type initial_feed, absent on the wire).

    ``feeds`` maps instrument key (``SEGMENT|token``) to Tick-named fields (``ltp``,
    ``exchange_time`` as an aware datetime, ``oi`` as an int, ...); None values are left out.
    ``mode`` ("ltpc", "option_greeks" or "full"; one for all keys or a per-key mapping) chooses the
    payload and so which fields may be given: ltpc carries exchange_time/ltp/ltq/prev_close;
    option_greeks adds bid/ask price and qty, greeks, volume, oi, iv; full adds depth (tuple of
    DepthLevel without order counts; top of book is depth[0]), open/high/low/close (the "1d"
    bar), avg_price, total_buy_qty, total_sell_qty — and for an ``*_INDEX`` key only ltpc fields
    and the "1d" bar (indexFF). Raises ValueError for a field the mode does not carry, a bad key
    a key missing from a ``mode`` mapping or a naive datetime; TypeError for a value of the
    wrong type.
    """
    return _encode_feeds(FrameKind.SNAPSHOT, mode, feeds, current_ts)


def encode_live_feed(
    *,
    feeds: Mapping[str, Mapping[str, object]],
    mode: str | Mapping[str, str],
    current_ts: datetime,
) -> bytes:
    """Return the bytes of an incremental live_feed frame: give only the fields that changed.

    Same arguments and errors as :func:`encode_snapshot`.
    """
    return _encode_feeds(FrameKind.LIVE_FEED, mode, feeds, current_ts)


def encode_market_info(*, statuses: Mapping[str, str], current_ts: datetime) -> bytes:
    """Return the bytes of a market_info frame.

    ``statuses`` maps segment (``NSE_FO``) to status name (``NORMAL_OPEN``, ...). Raises
    ValueError for an unknown status name or a naive datetime.
    """
    response = pb.FeedResponse(type=pb.market_info, currentTs=datetime_to_epoch_ms(current_ts))
    info = response.marketInfo
    info.SetInParent()
    for segment, status in statuses.items():
        if status not in _STATUS_NAMES:
            raise ValueError(f"unknown Upstox market status {status!r}; known: {_STATUS_NAMES}")
        info.segmentStatus[segment] = pb.MarketStatus.Value(status)
    return response.SerializeToString()
