"""Upstox Market Data Feed V3: events → binary ``FeedResponse`` frames (the simulator's side).

Pure Python, no Django; the inverse of ``brokers.upstox.codec``. The encoders take Tick
vocabulary (``ltp``, ``exchange_time`` as an aware datetime, ``oi`` as an int, ...) and set exactly
the fields given, so tests can build any frame the broker might send, partial ones included.

Wire rule for whoever builds ``live_feed`` frames (shared/docs/protocols/upstox.md §2): a frame
carries only the instruments that changed, but every sub-message it carries is whole — an
``ltpc`` has ltp, ltt, ltq and cp together, a quote all four of bid/ask price and quantity, an
``optionGreeks`` every greek — because the official SDK reads an absent field as 0.
:func:`sub_message_fields` says which fields travel together.

Errors: a value that has no wire form, a field the mode does not carry, a malformed key or a
naive datetime raise ValueError; a value of the wrong type raises TypeError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from brokers.ticks import DepthLevel
from brokers.upstox import MarketDataFeedV3_pb2 as pb
from brokers.upstox.codec import FrameKind

__all__ = [
    "ENCODE_MODES",
    "datetime_to_epoch_ms",
    "encode_live_feed",
    "encode_market_info",
    "encode_snapshot",
    "sub_message_fields",
]

ENCODE_MODES = ("ltpc", "option_greeks", "full")
_TYPES = {FrameKind.SNAPSHOT: pb.initial_feed, FrameKind.LIVE_FEED: pb.live_feed}
_STATUS_NAMES = tuple(pb.MarketStatus.keys())  # in wire-value order
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_LTPC_WIRE = {"exchange_time": "ltt", "ltp": "ltp", "ltq": "ltq", "prev_close": "cp"}
_GREEKS_WIRE = {n: ("optionGreeks", n) for n in ("delta", "theta", "gamma", "vega")}
_OHLC = ("open", "high", "low", "close")
_OHLC_NAMES = frozenset(_OHLC)
_DOUBLE_COUNTS = frozenset(("oi", "total_buy_qty", "total_sell_qty"))
# Payload ("ltpc", "option_greeks", "full" = marketFF, "index" = indexFF) -> Tick field ->
# (submessage of the payload, "" for the payload itself; wire field name)
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


def _whole_groups(payload: str, *extra: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Map each Tick field of ``payload`` to the Tick fields of the sub-message carrying it.

    A scalar of the payload itself stands alone, except in the ltpc payload, which is itself an
    LTPC; ``extra`` are the groups ``_PATHS`` does not list (depth, the "1d" bar).
    """
    groups = list(extra)
    by_sub: dict[str, list[str]] = {}
    for name, (sub, _) in _PATHS[payload].items():
        if sub or payload == "ltpc":
            by_sub.setdefault(sub, []).append(name)
        else:
            groups.append((name,))
    groups += [tuple(names) for names in by_sub.values()]
    return {name: group for group in groups for name in group}


_WHOLE: dict[str, dict[str, tuple[str, ...]]] = {
    "ltpc": _whole_groups("ltpc"),
    "option_greeks": _whole_groups("option_greeks"),
    "full": _whole_groups("full", _OHLC, ("depth",)),
    "index": _whole_groups("index", _OHLC),
}


def _payload(mode: str, key: str) -> str:
    """Return the payload a ``mode`` feed of ``key`` is sent in (a ``_PATHS`` key); ValueError
    for an unknown mode or a key that is not ``SEGMENT|token``."""
    if mode not in ENCODE_MODES:
        raise ValueError(f"Upstox encode mode {mode!r} is not one of {ENCODE_MODES}")
    segment, sep, token = key.partition("|")
    if not (sep and segment and token):
        raise ValueError(f"Upstox instrument key {key!r} is not 'SEGMENT|token'")
    if mode == "full" and segment.endswith("_INDEX"):  # the broker sends an index as indexFF
        return "index"
    return mode


def sub_message_fields(mode: str, key: str) -> Mapping[str, tuple[str, ...]]:
    """Return, for a feed entry of ``key`` in ``mode``, each Tick field it can carry mapped to
    the Tick fields of the wire sub-message that carries it (itself alone for a scalar of the
    payload).

    Upstox sends a present sub-message whole, so a ``live_feed`` entry that carries one field
    of a group carries every field of the group (an index has no ``ltq``: it trades nothing).
    The mapping is shared: do not modify it. Raises ValueError like the encoders for an unknown
    mode or a malformed key.
    """
    return _WHOLE[_payload(mode, key)]


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
    kind = _payload(mode, key)
    paths = _PATHS[kind]
    if kind == "ltpc":
        payload = feed.ltpc
    elif kind == "option_greeks":
        payload = feed.firstLevelWithGreeks
    elif kind == "index":
        payload = feed.fullFeed.indexFF
    else:
        payload = feed.fullFeed.marketFF
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
        elif name == "depth" and kind == "full":
            _fill_depth(payload.marketLevel, value)  # type: ignore[arg-type]
        else:
            allowed = sorted({*paths, *(_OHLC_NAMES if mode == "full" else ())})
            if kind == "full":
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
    response = pb.FeedResponse(type=_TYPES[kind], currentTs=datetime_to_epoch_ms(current_ts))
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
    """Return the bytes of an incremental live_feed frame of exactly the fields given.

    Give the instruments that changed, each with the whole sub-messages that changed (see
    :func:`sub_message_fields`); a partial sub-message is encoded as given, for tests of the
    decoder. Same arguments and errors as :func:`encode_snapshot`.
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
