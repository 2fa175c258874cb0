"""Upstox V3 FeedResponse decoder: golden bytes from docs/protocols/upstox.md, round trips through
brokers.upstox.encode, unknown and absent fields, bad bytes."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.exceptions import CodecError
from brokers.ticks import DepthLevel, MarketStatus, Tick
from brokers.upstox import MarketDataFeedV3_pb2 as pb
from brokers.upstox.codec import Frame, FrameKind, decode_frame, epoch_ms_to_datetime
from brokers.upstox.encode import (
    datetime_to_epoch_ms,
    encode_live_feed,
    encode_market_info,
    encode_snapshot,
)

GOLDEN = bytes.fromhex(
    "122d0a0c4e53455f464f7c3435343530121d0a1b099a99999999696b4010d39ec4dcd432184b21cdcccccccce0"
    "7e4018d786c5dcd432"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 2, 28, 7, 59, 26, 39000, tzinfo=UTC)  # currentTs 1740729566039


def ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


# --- golden bytes and schema ---------------------------------------------------------------


def test_golden_sample_decodes_to_the_documented_values():
    frame = decode_frame(GOLDEN)

    assert frame.kind is FrameKind.SNAPSHOT
    assert frame.current_ts == ms(1740729566039)
    assert frame == [
        Tick(
            broker="upstox",
            segment="NSE_FO",
            instrument="NSE_FO|45450",
            exchange_time=ms(1740729552723),
            ltp=219.3,
            ltq=75,
            prev_close=494.05,
        )
    ]


_T = {
    "double": FD.TYPE_DOUBLE,
    "int64": FD.TYPE_INT64,
    "bool": FD.TYPE_BOOL,
    "string": FD.TYPE_STRING,
    "msg": FD.TYPE_MESSAGE,
    "enum": FD.TYPE_ENUM,
}
SCHEMA = {  # the fact sheet's table: message -> field -> (number, type)
    "FeedResponse": {"type": (1, "enum"), "feeds": (2, "msg"), "currentTs": (3, "int64"),
                     "marketInfo": (4, "msg")},
    "Feed": {"ltpc": (1, "msg"), "fullFeed": (2, "msg"), "firstLevelWithGreeks": (3, "msg"),
             "requestMode": (4, "enum")},
    "LTPC": {"ltp": (1, "double"), "ltt": (2, "int64"), "ltq": (3, "int64"), "cp": (4, "double"),
             "iep": (5, "msg")},
    "FullFeed": {"marketFF": (1, "msg"), "indexFF": (2, "msg")},
    "MarketFullFeed": {"ltpc": (1, "msg"), "marketLevel": (2, "msg"), "optionGreeks": (3, "msg"),
                       "marketOHLC": (4, "msg"), "atp": (5, "double"), "vtt": (6, "int64"),
                       "oi": (7, "double"), "iv": (8, "double"), "tbq": (9, "double"),
                       "tsq": (10, "double"), "iep": (11, "double"), "rp": (12, "double"),
                       "ieq": (13, "int64"), "iiqTotal": (14, "int64"), "iiqM": (15, "int64"),
                       "casEligible": (16, "bool")},
    "IndexFullFeed": {"ltpc": (1, "msg"), "marketOHLC": (2, "msg")},
    "FirstLevelWithGreeks": {"ltpc": (1, "msg"), "firstDepth": (2, "msg"),
                             "optionGreeks": (3, "msg"), "vtt": (4, "int64"), "oi": (5, "double"),
                             "iv": (6, "double")},
    "MarketLevel": {"bidAskQuote": (1, "msg")},
    "Quote": {"bidQ": (1, "int64"), "bidP": (2, "double"), "askQ": (3, "int64"),
              "askP": (4, "double")},
    "OptionGreeks": {"delta": (1, "double"), "theta": (2, "double"), "gamma": (3, "double"),
                     "vega": (4, "double"), "rho": (5, "double")},
    "MarketOHLC": {"ohlc": (1, "msg")},
    "OHLC": {"interval": (1, "string"), "open": (2, "double"), "high": (3, "double"),
             "low": (4, "double"), "close": (5, "double"), "vol": (6, "int64"), "ts": (7, "int64")},
    "MarketInfo": {"segmentStatus": (1, "msg"), "casMarketStatus": (2, "msg"),
                   "preOpenSessionStatus": (3, "msg")},
    "StatusInfo": {"status": (1, "string"), "updatedTime": (2, "int64")},
}  # fmt: skip


@pytest.mark.parametrize("message", sorted(SCHEMA))
def test_schema_matches_the_fact_sheet_table(message):
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    actual = {f.name: (f.number, f.type) for f in descriptor.fields}
    assert actual == {name: (num, _T[kind]) for name, (num, kind) in SCHEMA[message].items()}


def test_schema_enums_match_the_fact_sheet():
    assert dict(pb.Type.items()) == {"initial_feed": 0, "live_feed": 1, "market_info": 2}
    assert dict(pb.RequestMode.items()) == {
        "ltpc": 0, "full_d5": 1, "option_greeks": 2, "full_d30": 3
    }  # fmt: skip
    assert [name for name, _ in sorted(pb.MarketStatus.items(), key=lambda kv: kv[1])] == [
        "PRE_OPEN_START", "PRE_OPEN_END", "NORMAL_OPEN", "NORMAL_CLOSE", "CLOSING_START",
        "CLOSING_END",
    ]  # fmt: skip
    assert pb.DESCRIPTOR.package == "com.upstox.marketdatafeederv3udapi.rpc.proto"


# --- market_info ---------------------------------------------------------------------------


def test_market_info_gives_one_status_per_segment_at_current_ts():
    statuses = {"NSE_FO": "NORMAL_OPEN", "NSE_EQ": "PRE_OPEN_START", "MCX_FO": "CLOSING_END"}
    frame = decode_frame(encode_market_info(statuses=statuses, current_ts=NOW))

    assert frame.kind is FrameKind.MARKET_INFO
    assert frame.current_ts == NOW
    assert frame == [
        MarketStatus("upstox", "MCX_FO", "CLOSING_END", NOW),
        MarketStatus("upstox", "NSE_EQ", "PRE_OPEN_START", NOW),
        MarketStatus("upstox", "NSE_FO", "NORMAL_OPEN", NOW),
    ]


@given(
    st.dictionaries(
        st.sampled_from(["NSE_EQ", "NSE_FO", "NSE_INDEX", "BSE_EQ", "BSE_FO", "MCX_FO"]),
        st.sampled_from([name for name, _ in pb.MarketStatus.items()]),
    )
)
def test_market_info_round_trips_every_status(statuses):
    frame = decode_frame(encode_market_info(statuses=statuses, current_ts=NOW))
    assert {(e.segment, e.status) for e in frame} == set(statuses.items())
    assert all(e.at == NOW and e.broker == "upstox" for e in frame)


def test_unknown_market_status_raises():
    response = pb.FeedResponse(type=pb.market_info, currentTs=1)
    response.marketInfo.segmentStatus["NSE_FO"] = 9
    with pytest.raises(CodecError, match="unknown status 9"):
        decode_frame(response.SerializeToString())


# --- round trips -----------------------------------------------------------------------------

doubles = st.floats(width=64)  # with nan, ±inf, ±0.0 and subnormals
int64s = st.integers(-(2**63), 2**63 - 1)
counts = st.integers(-(2**53), 2**53)  # oi/tbq/tsq travel as doubles
times = (
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.just(UTC),
    )
    .map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
    .filter(lambda t: t != EPOCH)  # ltt 0 means "none"
)
levels = st.builds(DepthLevel, int64s, int64s, st.none(), st.none(), doubles, doubles)
LTPC = {"exchange_time": times, "ltp": doubles, "ltq": int64s, "prev_close": doubles}
GREEKS = {name: doubles for name in ("delta", "theta", "gamma", "vega")}
OHLC = {name: doubles for name in ("open", "high", "low", "close")}
MODE_FIELDS = {
    "ltpc": LTPC,
    "option_greeks": {**LTPC, **GREEKS, "bid_price": doubles, "bid_qty": int64s,
                      "ask_price": doubles, "ask_qty": int64s, "volume": int64s, "oi": counts,
                      "iv": doubles},
    "full": {**LTPC, **GREEKS, **OHLC, "avg_price": doubles, "volume": int64s, "oi": counts,
             "iv": doubles, "total_buy_qty": counts, "total_sell_qty": counts,
             "depth": st.lists(levels, max_size=5).map(tuple)},
    "index": {**LTPC, **OHLC},
}  # fmt: skip


def feeds_for(mode: str) -> st.SearchStrategy[dict[str, dict[str, object]]]:
    prefix = "NSE_INDEX|Index " if mode == "index" else "NSE_FO|"
    keys = st.integers(1, 99_999).map(lambda n: f"{prefix}{n}")
    fields = st.fixed_dictionaries({}, optional=MODE_FIELDS[mode])
    return st.dictionaries(keys, fields, max_size=4)


def same(a: object, b: object) -> bool:
    """Equality that tells -0.0 from 0.0 and a NaN from a number (bit patterns of floats)."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, float) and isinstance(b, float)
            and struct.pack("<d", a) == struct.pack("<d", b)
        )  # fmt: skip
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def expected_tick(key: str, fields: dict[str, object]) -> Tick:
    values = dict(fields)
    depth = values.get("depth")
    if depth:  # full mode: the top of book is depth[0]
        top = depth[0]
        values.update(
            bid_price=top.bid_price,
            bid_qty=top.bid_qty,
            ask_price=top.ask_price,
            ask_qty=top.ask_qty,
        )
    return Tick(broker="upstox", segment=key.split("|")[0], instrument=key, **values)


def assert_round_trip(frame: Frame, feeds: dict[str, dict[str, object]]) -> None:
    by_key = {tick.instrument: tick for tick in frame}
    assert by_key.keys() == feeds.keys()
    for key, fields in feeds.items():
        got, want = by_key[key], expected_tick(key, fields)
        bad = [n for n in Tick._fields if not same(getattr(got, n), getattr(want, n))]
        assert not bad, f"{key}: {[(n, getattr(got, n), getattr(want, n)) for n in bad]}"


@pytest.mark.parametrize("mode", ["ltpc", "option_greeks", "full", "index"])
@pytest.mark.parametrize("encode", [encode_snapshot, encode_live_feed])
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_mode_round_trips_exactly(mode, encode, data):
    feeds = data.draw(feeds_for(mode))
    current_ts = data.draw(times)
    wire_mode = "full" if mode == "index" else mode

    frame = decode_frame(encode(feeds=feeds, mode=wire_mode, current_ts=current_ts))

    assert frame.kind is (FrameKind.SNAPSHOT if encode is encode_snapshot else FrameKind.LIVE_FEED)
    assert frame.current_ts == current_ts
    assert_round_trip(frame, feeds)


def test_mixed_modes_in_one_frame_round_trip():
    feeds = {
        "NSE_INDEX|Nifty 50": {"ltp": 22976.2, "open": 22900.0},
        "NSE_FO|1": {"ltp": 10.5, "iv": 0.1334, "delta": 0.5},
        "NSE_FO|2": {"prev_close": 3.0},
    }
    modes = {"NSE_INDEX|Nifty 50": "full", "NSE_FO|1": "option_greeks", "NSE_FO|2": "ltpc"}
    assert_round_trip(
        decode_frame(encode_live_feed(feeds=feeds, mode=modes, current_ts=NOW)), feeds
    )


# --- absent stays None -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ltpc", "option_greeks", "full"])
def test_live_feed_with_only_ltp_leaves_every_other_field_none(mode):
    frame = decode_frame(
        encode_live_feed(feeds={"NSE_FO|7": {"ltp": 101.5}}, mode=mode, current_ts=NOW)
    )
    assert frame == [Tick(broker="upstox", segment="NSE_FO", instrument="NSE_FO|7", ltp=101.5)]


def test_greeks_feed_without_any_field_gives_an_all_none_tick():
    frame = decode_frame(
        encode_live_feed(feeds={"NSE_FO|7": {}}, mode="option_greeks", current_ts=NOW)
    )
    assert frame == [Tick("upstox", "NSE_FO", "NSE_FO|7")]


def test_explicit_zero_stays_zero_not_none():
    fields = {"ltp": 0.0, "ltq": 0, "oi": 0, "volume": 0, "bid_qty": 0, "delta": -0.0}
    (tick,) = decode_frame(
        encode_live_feed(feeds={"NSE_FO|7": fields}, mode="option_greeks", current_ts=NOW)
    )
    assert (tick.ltp, tick.ltq, tick.oi, tick.volume, tick.bid_qty) == (0.0, 0, 0, 0, 0)
    assert math.copysign(1.0, tick.delta) == -1.0
    assert tick.ask_qty is None and tick.iv is None


def test_ltt_zero_means_no_exchange_time():
    response = pb.FeedResponse(currentTs=5)
    response.feeds["NSE_FO|1"].ltpc.ltt = 0
    response.feeds["NSE_FO|1"].ltpc.ltp = 2.0
    (tick,) = decode_frame(response.SerializeToString())
    assert tick.exchange_time is None and tick.ltp == 2.0


def test_full_feed_depth_is_complete_levels_and_top_of_book():
    depth = (
        DepthLevel(75, 150, None, None, 10.05, 10.1),
        DepthLevel(300, 0, None, None, 10.0, 0.0),
    )
    (tick,) = decode_frame(
        encode_snapshot(feeds={"NSE_FO|9": {"depth": depth}}, mode="full", current_ts=NOW)
    )
    assert tick.depth == depth
    assert (tick.bid_price, tick.bid_qty, tick.ask_price, tick.ask_qty) == (10.05, 75, 10.1, 150)


def test_full_feed_with_empty_market_level_gives_empty_depth():
    (tick,) = decode_frame(
        encode_snapshot(feeds={"NSE_FO|9": {"depth": ()}}, mode="full", current_ts=NOW)
    )
    assert tick.depth == () and tick.bid_price is None


def test_full_feed_takes_ohlc_from_the_1d_bar_only():
    response = pb.FeedResponse(currentTs=5)
    bars = response.feeds["NSE_FO|1"].fullFeed.marketFF.marketOHLC.ohlc
    bars.add(interval="I1", open=1.0, high=2.0, low=0.5, close=1.5)
    bars.add(interval="1d", open=9.0, close=9.5)
    (tick,) = decode_frame(response.SerializeToString())
    assert (tick.open, tick.high, tick.low, tick.close) == (9.0, None, None, 9.5)


def test_feed_iv_stays_a_fraction():
    feeds = {"NSE_FO|1": {"iv": 0.1334}}
    (tick,) = decode_frame(encode_live_feed(feeds=feeds, mode="option_greeks", current_ts=NOW))
    assert tick.iv == 0.1334


def test_frame_is_a_list_of_events_with_kind_and_current_ts():
    frame = decode_frame(GOLDEN)
    assert isinstance(frame, list) and len(frame) == 1
    assert "kind=snapshot" in repr(frame)


def test_epoch_ms_conversion_is_exact_at_the_datetime_limits():
    for t in (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    ):
        assert epoch_ms_to_datetime(datetime_to_epoch_ms(t)) == t
    assert epoch_ms_to_datetime(0) is None
    with pytest.raises(OverflowError):
        epoch_ms_to_datetime(2**62)


# --- bad bytes -------------------------------------------------------------------------------


def greeks_frame() -> bytes:
    feeds = {
        f"NSE_FO|{n}": {"ltp": 100.0 + n, "exchange_time": NOW, "ltq": 75, "prev_close": 90.0,
                        "bid_price": 99.95, "bid_qty": 750, "ask_price": 100.05, "ask_qty": 1500,
                        "delta": 0.52, "theta": -12.1, "gamma": 0.002, "vega": 9.8,
                        "volume": 123_456, "oi": 98_175, "iv": 0.1334}
        for n in range(3)
    }  # fmt: skip
    return encode_live_feed(feeds=feeds, mode="option_greeks", current_ts=NOW)


def full_frame() -> bytes:
    depth = tuple(DepthLevel(75 * i, 75 * i, None, None, 10.0 - i, 10.0 + i) for i in range(1, 6))
    feeds = {
        "NSE_FO|9": {"ltp": 10.0, "depth": depth, "open": 9.0, "high": 11.0, "low": 8.5,
                     "close": 10.0, "avg_price": 9.9, "total_buy_qty": 1000, "oi": 5, "iv": 0.2},
        "NSE_INDEX|Nifty 50": {"ltp": 22976.2, "exchange_time": NOW, "open": 22900.0},
    }  # fmt: skip
    return encode_snapshot(feeds=feeds, mode="full", current_ts=NOW)


FRAMES = {
    "golden": GOLDEN,
    "market_info": encode_market_info(
        statuses={"NSE_FO": "NORMAL_OPEN", "NSE_EQ": "PRE_OPEN_START"}, current_ts=NOW
    ),
    "empty_market_info": encode_market_info(statuses={}, current_ts=NOW),
    "option_greeks": greeks_frame(),
    "full": full_frame(),
    "empty_live_feed": encode_live_feed(feeds={}, mode="ltpc", current_ts=NOW),
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_every_truncation_of_a_valid_frame_raises(name):
    frame = FRAMES[name]
    assert isinstance(decode_frame(frame), Frame)
    for cut in range(len(frame)):
        with pytest.raises(CodecError) as caught:
            decode_frame(frame[:cut])
        assert caught.value.length == cut and caught.value.offset == 0 and caught.value.code is None


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_truncation_of_any_encoded_frame_raises(data):
    mode = data.draw(st.sampled_from(["ltpc", "option_greeks", "full"]))
    frame = data.draw(st.sampled_from([encode_snapshot, encode_live_feed]))(
        feeds=data.draw(feeds_for(mode)), mode=mode, current_ts=data.draw(times)
    )
    for cut in range(len(frame)):
        with pytest.raises(CodecError):
            decode_frame(frame[:cut])


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_garbage_raises_codec_error_or_decodes_to_whole_events(garbage):
    try:
        frame = decode_frame(garbage)
    except CodecError as exc:
        assert exc.length == len(garbage)
        return
    assert all(isinstance(event, Tick | MarketStatus) for event in frame)


@settings(max_examples=300)
@given(st.data())
def test_corrupted_frame_raises_codec_error_or_decodes(data):
    frame = bytearray(data.draw(st.sampled_from(sorted(FRAMES.values()))))
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_frame(bytes(frame))
    except CodecError:
        return
    assert all(isinstance(event, Tick | MarketStatus) for event in decoded)


def test_corrupt_protobuf_raises_with_the_protobuf_error_as_cause():
    garbage = b"\xff\xff\xff\xff"
    with pytest.raises(CodecError, match="not a valid FeedResponse") as caught:
        decode_frame(garbage)
    assert isinstance(caught.value.__cause__, DecodeError)
    assert (caught.value.offset, caught.value.code, caught.value.length) == (0, None, 4)


def test_empty_frame_raises():
    with pytest.raises(CodecError, match="no currentTs"):
        decode_frame(b"")


def test_frame_of_only_unknown_fields_raises():
    with pytest.raises(CodecError, match="no currentTs"):
        decode_frame(b"\x28\x01\x3a\x00")  # fields 5 and 7: parse fine, mean nothing
    with pytest.raises(CodecError, match="only unknown fields"):
        decode_frame(b"\x18\x05\x28\x01")  # a currentTs among unknown fields


def test_unknown_frame_type_raises_with_the_type_as_code():
    frame = b"\x08\x07\x18\x05"
    with pytest.raises(CodecError, match="unknown type 7") as caught:
        decode_frame(frame)
    assert caught.value.code == 7


def test_market_info_frame_without_market_info_raises():
    with pytest.raises(CodecError, match="no marketInfo"):
        decode_frame(pb.FeedResponse(type=pb.market_info, currentTs=5).SerializeToString())


def test_unknown_fields_next_to_known_content_are_ignored():
    frame = GOLDEN + b"\x28\x01"  # a field the broker might add one day
    assert decode_frame(frame) == decode_frame(GOLDEN)


# Hand-made protobuf wire encoding, to write field numbers our schema does not know.
def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def vint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def f64(number: int, value: float) -> bytes:
    return varint(number << 3 | 1) + struct.pack("<d", value)


def f32(number: int, value: float) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<f", value)


def blob(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


# Fields a newer schema may add, of every wire type, before and after the known ones.
UNKNOWN_BEFORE = vint(6, 1) + blob(7, b"\x08\x01") + f32(8, 1.5)
UNKNOWN_AFTER = f64(9, 3.0) + vint(1000, 7) + blob(2047, blob(1, b"CAS") + vint(2, 5))


def ltpc_with_unknown_fields() -> bytes:
    """The golden sample's LTPC, with unknown fields around it and the 2026 ``iep`` (field 5)."""
    known = f64(1, 219.3) + vint(2, 1740729552723) + vint(3, 75) + f64(4, 494.05)
    return UNKNOWN_BEFORE + known + blob(5, f64(1, 219.25)) + UNKNOWN_AFTER


def response_with_unknown_fields(key: bytes, feed: bytes, *, live: bool) -> bytes:
    """A FeedResponse of one feed entry, with unknown top-level fields (a 2026 status map too)."""
    status = blob(1, b"NSE_FO") + blob(2, blob(1, b"PRE_OPEN_CAS") + vint(2, 1740729000000))
    return (
        (vint(1, pb.live_feed) if live else b"")
        + UNKNOWN_BEFORE
        + blob(2, blob(1, key) + blob(2, feed))
        + blob(5, status)
        + blob(6, status)
        + vint(3, 1740729566039)
        + UNKNOWN_AFTER
    )


def test_unknown_fields_on_ltpc_and_feed_response_are_ignored():
    frame = response_with_unknown_fields(
        b"NSE_FO|45450", blob(1, ltpc_with_unknown_fields()), live=False
    )
    parsed = pb.FeedResponse.FromString(frame)  # the unknown fields are really there
    assert len(UnknownFieldSet(parsed)) == 8
    assert len(UnknownFieldSet(parsed.feeds["NSE_FO|45450"].ltpc)) == 6

    decoded = decode_frame(frame)

    assert decoded == decode_frame(GOLDEN)
    assert (decoded.kind, decoded.current_ts) == (FrameKind.SNAPSHOT, ms(1740729566039))


def test_unknown_fields_inside_an_option_greeks_feed_are_ignored():
    quote = vint(1, 750) + f64(2, 219.25) + vint(3, 1500) + f64(4, 219.35) + vint(5, 9)
    greeks = f64(1, 0.52) + f64(2, -12.1) + f64(3, 0.002) + f64(4, 9.8) + f64(5, 0.3)
    payload = b"".join(
        [
            blob(1, ltpc_with_unknown_fields()),
            blob(2, quote),
            blob(3, greeks),
            vint(4, 123_450),
            f64(5, 98_175.0),
            f64(6, 0.1334),
            UNKNOWN_AFTER,
        ]
    )
    frame = response_with_unknown_fields(b"NSE_FO|45450", blob(3, payload), live=True)
    fields = {
        "ltp": 219.3,
        "exchange_time": ms(1740729552723),
        "ltq": 75,
        "prev_close": 494.05,
        "bid_qty": 750,
        "bid_price": 219.25,
        "ask_qty": 1500,
        "ask_price": 219.35,
        "delta": 0.52,
        "theta": -12.1,
        "gamma": 0.002,
        "vega": 9.8,
        "volume": 123_450,
        "oi": 98_175,
        "iv": 0.1334,
    }
    known = encode_live_feed(
        feeds={"NSE_FO|45450": fields}, mode="option_greeks", current_ts=ms(1740729566039)
    )

    decoded = decode_frame(frame)

    assert decoded == decode_frame(known) and decoded.kind is FrameKind.LIVE_FEED


def test_call_auction_fields_of_2026_are_ignored():
    response = pb.FeedResponse(type=pb.market_info, currentTs=5)
    info = response.marketInfo
    info.segmentStatus["NSE_FO"] = pb.NORMAL_OPEN
    info.casMarketStatus["NSE_EQ"].status = "CAS_OPEN"
    info.preOpenSessionStatus["NSE_EQ"].updatedTime = 4
    assert decode_frame(response.SerializeToString()) == [
        MarketStatus("upstox", "NSE_FO", "NORMAL_OPEN", ms(5))
    ]
    live = pb.FeedResponse(type=pb.live_feed, currentTs=5)
    live.feeds["NSE_FO|1"].fullFeed.marketFF.ltpc.iep.value = 101.5
    live.feeds["NSE_FO|1"].fullFeed.marketFF.iep = 101.5
    live.feeds["NSE_FO|1"].fullFeed.marketFF.casEligible = True
    assert decode_frame(live.SerializeToString()) == [Tick("upstox", "NSE_FO", "NSE_FO|1")]


# --- carrying forward: what a frame does not carry is None, for the chain book to keep -----


@pytest.mark.parametrize("present", ["ltpc", "firstDepth", "optionGreeks", "oi"])
def test_absent_sub_messages_of_a_live_feed_entry_decode_as_none(present):
    groups = {
        "ltpc": {"exchange_time": NOW, "ltp": 10.5, "ltq": 75, "prev_close": 9.0},
        "firstDepth": {"bid_price": 10.45, "bid_qty": 750, "ask_price": 10.55, "ask_qty": 1500},
        "optionGreeks": {"delta": 0.5, "theta": -3.0, "gamma": 0.001, "vega": 7.5},
        "oi": {"oi": 98_175},
    }
    frame = encode_live_feed(
        feeds={"NSE_FO|7": groups[present]}, mode="option_greeks", current_ts=NOW
    )
    (tick,) = decode_frame(frame)
    assert tick == Tick("upstox", "NSE_FO", "NSE_FO|7", **groups[present])


def test_feed_entry_without_payload_raises():
    response = pb.FeedResponse(currentTs=5)
    response.feeds["NSE_FO|1"].requestMode = pb.option_greeks
    with pytest.raises(CodecError, match=r"'NSE_FO\|1' is invalid: it carries no ltpc"):
        decode_frame(response.SerializeToString())


def test_full_feed_without_market_or_index_feed_raises():
    response = pb.FeedResponse(currentTs=5)
    response.feeds["NSE_FO|1"].fullFeed.SetInParent()
    with pytest.raises(CodecError, match="neither marketFF nor indexFF"):
        decode_frame(response.SerializeToString())


@pytest.mark.parametrize("key", ["NSE_FO", "|45450", "NSE_FO|", ""])
def test_feed_key_that_is_not_an_instrument_key_raises(key):
    response = pb.FeedResponse(currentTs=5)
    response.feeds[key].ltpc.ltp = 1.0
    with pytest.raises(CodecError, match="not an instrument key"):
        decode_frame(response.SerializeToString())


@pytest.mark.parametrize("ltt", [2**62, -(2**62)])
def test_ltt_outside_datetime_range_raises(ltt):
    response = pb.FeedResponse(currentTs=5)
    response.feeds["NSE_FO|1"].firstLevelWithGreeks.ltpc.ltt = ltt
    with pytest.raises(CodecError, match=r"'NSE_FO\|1' is invalid"):
        decode_frame(response.SerializeToString())


def test_current_ts_outside_datetime_range_raises():
    with pytest.raises(CodecError, match=r"currentTs \d+ is out of range"):
        decode_frame(pb.FeedResponse(currentTs=2**62).SerializeToString())


@pytest.mark.parametrize("oi", [math.nan, math.inf, 12.5])
@pytest.mark.parametrize("payload", ["firstLevelWithGreeks", "marketFF"])
def test_oi_that_is_not_a_whole_number_raises(oi, payload):
    response = pb.FeedResponse(currentTs=5)
    feed = response.feeds["NSE_FO|1"]
    message = (
        feed.firstLevelWithGreeks if payload == "firstLevelWithGreeks" else feed.fullFeed.marketFF
    )
    message.oi = oi
    with pytest.raises(CodecError, match=r"'NSE_FO\|1' is invalid"):
        decode_frame(response.SerializeToString())


def test_one_bad_feed_fails_the_whole_frame():
    response = pb.FeedResponse(type=pb.live_feed, currentTs=5)
    response.feeds["NSE_FO|1"].firstLevelWithGreeks.ltpc.ltp = 10.0
    response.feeds["NSE_FO|2"].firstLevelWithGreeks.oi = math.nan
    with pytest.raises(CodecError):
        decode_frame(response.SerializeToString())
