"""Dhan feed codec: golden bytes, round trips, and every way a frame can be wrong."""

from __future__ import annotations

import calendar
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.dhan import codec
from brokers.dhan.codec import DhanFeedDecoder, decode_frame, ist_epoch_to_utc
from brokers.dhan.encode import (
    encode_disconnect,
    encode_full,
    encode_market_status,
    encode_oi,
    encode_prev_close,
    encode_quote,
    encode_ticker,
)
from brokers.dhan.segments import SEGMENT_NAMES
from brokers.exceptions import CodecError
from brokers.ticks import DepthLevel, Disconnect, MarketStatus, Tick

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
AT = datetime(2025, 1, 2, 3, 45, 7, tzinfo=UTC)  # 09:15:07 IST
AT_LTT = calendar.timegm((2025, 1, 2, 9, 15, 7))  # the same instant as Dhan writes it
DEPTH = [DepthLevel(75 * i, 150 * i, i, 2 * i, 100.0 - i, 100.5 + i) for i in range(1, 6)]
PRICES = {"avg_price": 101.25, "open": 99.5, "close": 98.0, "high": 103.0, "low": 97.25}
QUOTE_KW: dict[str, Any] = {
    "ltp": 100.05, "ltq": 75, "ltt": AT, "volume": 123_450, "total_sell_qty": 900,
    "total_buy_qty": 1200, **PRICES,
}  # fmt: skip
FULL_KW: dict[str, Any] = {
    **QUOTE_KW, "oi": 500_000, "oi_day_high": 510_000, "oi_day_low": 490_000, "depth": DEPTH,
}  # fmt: skip

SAMPLES = {
    "ticker": encode_ticker("IDX_I", 13, ltp=23456.75, ltt=AT),
    "quote": encode_quote("NSE_FNO", 42528, **QUOTE_KW),
    "oi": encode_oi("NSE_FNO", 42528, oi=1_234_500),
    "prev_close": encode_prev_close("NSE_FNO", 42528, prev_close=95.5, prev_oi=1_000_050),
    "market_status": encode_market_status("NSE_FNO"),
    "full": encode_full("BSE_FNO", 1_123_456, **FULL_KW),
    "disconnect": encode_disconnect(reason_code=807),
}
SIZES = {"ticker": 16, "quote": 50, "oi": 12, "prev_close": 16, "market_status": 8,
         "full": 162, "disconnect": 10}  # fmt: skip


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def only(frame: bytes) -> Tick | MarketStatus | Disconnect:
    events = decode_frame(frame)
    assert len(events) == 1
    return events[0]


def only_tick(frame: bytes) -> Tick:
    tick = only(frame)
    assert isinstance(tick, Tick)
    return tick


def carried(tick: Tick) -> set[str]:
    return {name for name, value in tick._asdict().items() if value is not None}


# --- golden bytes from the fact sheet ---------------------------------------------------------

GOLDEN_HEADER = bytes.fromhex("08 a2 00 02 f4 d9 00 00")  # Full, 162 bytes, NSE_FNO, 55796
GOLDEN_LTP = bytes.fromhex("cd 4c 18 43")  # 152.30 as float32
GOLDEN_LTQ = bytes.fromhex("4b 00")  # 75


def golden_full_packet() -> bytes:
    head = GOLDEN_HEADER + GOLDEN_LTP + GOLDEN_LTQ
    rest = struct.pack("<IfIIIIIIffff", AT_LTT, 151.5, 2_000_025, 1500, 2250, 600_000,
                       650_000, 550_000, 150.0, 149.0, 155.0, 148.5)  # fmt: skip
    depth = b"".join(
        struct.pack("<IIHHff", 75 * i, 150 * i, i, i + 1, 152.30 - 0.05 * i, 152.30 + 0.05 * i)
        for i in range(1, 6)
    )
    return head + rest + depth


def test_golden_full_packet_decodes_fact_sheet_values() -> None:
    packet = golden_full_packet()
    assert len(packet) == 162
    tick = only_tick(packet)
    assert isinstance(tick, Tick)
    assert (tick.broker, tick.segment, tick.instrument) == ("dhan", "NSE_FNO", "55796")
    assert tick.ltp == f32(152.3) == struct.unpack("<f", bytes.fromhex("cd4c1843"))[0]
    assert tick.ltp != 152.3  # the exact float32, not rounded for display
    assert tick.ltq == 75
    assert tick.exchange_time == AT
    assert (tick.avg_price, tick.volume, tick.total_sell_qty, tick.total_buy_qty) == (
        151.5, 2_000_025, 1500, 2250)  # fmt: skip
    assert (tick.oi, tick.oi_day_high, tick.oi_day_low) == (600_000, 650_000, 550_000)
    assert (tick.open, tick.close, tick.high, tick.low) == (150.0, 149.0, 155.0, 148.5)
    assert tick.depth is not None and len(tick.depth) == 5
    assert tick.depth[0] == DepthLevel(75, 150, 1, 2, f32(152.25), f32(152.35))
    assert tick.depth[4] == DepthLevel(375, 750, 5, 6, f32(152.30 - 0.25), f32(152.30 + 0.25))
    assert (tick.bid_price, tick.bid_qty, tick.ask_price, tick.ask_qty) == (
        f32(152.25), 75, f32(152.35), 150)  # fmt: skip
    assert tick.prev_close is None and tick.prev_oi is None and tick.iv is None


def test_encode_full_reproduces_golden_bytes() -> None:
    golden = golden_full_packet()
    tick = only_tick(golden)
    depth = list(tick.depth or ())
    fields = {name: getattr(tick, name) for name in FULL_KW if name not in ("ltt", "depth")}
    assert encode_full("NSE_FNO", "55796", **fields, ltt=AT, depth=depth) == golden


def test_decoded_events_are_the_shared_types() -> None:
    assert type(only(SAMPLES["full"])) is Tick
    assert all(type(level) is DepthLevel for level in only_tick(SAMPLES["full"]).depth or ())
    assert only(SAMPLES["market_status"]) == MarketStatus("dhan", "NSE_FNO", "changed")
    assert only(SAMPLES["disconnect"]) == Disconnect("dhan", 807, "access token expired")


# --- which fields each packet carries ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("ticker", {"ltp", "exchange_time"}),
        ("quote", {"ltp", "ltq", "exchange_time", "avg_price", "volume", "total_sell_qty",
                   "total_buy_qty", "open", "close", "high", "low"}),
        ("oi", {"oi"}),
        ("prev_close", {"prev_close", "prev_oi"}),
        ("full", {"ltp", "ltq", "exchange_time", "avg_price", "volume", "total_sell_qty",
                  "total_buy_qty", "open", "close", "high", "low", "oi", "oi_day_high",
                  "oi_day_low", "depth", "bid_price", "bid_qty", "ask_price", "ask_qty"}),
    ],
)  # fmt: skip
def test_tick_carries_only_the_packets_fields(name: str, fields: set[str]) -> None:
    tick = only_tick(SAMPLES[name])
    assert carried(tick) == fields | {"broker", "segment", "instrument"}


def test_zero_values_are_kept_as_zero_not_none() -> None:
    tick = only_tick(encode_oi("NSE_FNO", 1, oi=0))
    assert tick.oi == 0


# --- round trips -------------------------------------------------------------------------------

segments = st.sampled_from(sorted(SEGMENT_NAMES.values()))
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
floats = st.floats(min_value=-3.4e38, max_value=3.4e38, allow_nan=False)
ltts = st.integers(1, 2**32 - 1)
levels = st.builds(DepthLevel, u32, u32, u16, u16, floats, floats)


def at_of(ltt: int) -> datetime:
    return EPOCH + timedelta(seconds=ltt - 19800)


times = ltts.map(at_of)
QUOTE_VALUES = (
    {"ltp": floats, "ltq": u16, "ltt": times, "avg_price": floats, "volume": u32,
     "total_sell_qty": u32, "total_buy_qty": u32, "open": floats, "close": floats,
     "high": floats, "low": floats}
)  # fmt: skip
quote_fields = st.fixed_dictionaries(QUOTE_VALUES)
full_fields = st.fixed_dictionaries(
    {**QUOTE_VALUES, "oi": u32, "oi_day_high": u32, "oi_day_low": u32,
     "depth": st.lists(levels, min_size=5, max_size=5)}
)  # fmt: skip
FLOAT_FIELDS = {"ltp", "avg_price", "open", "close", "high", "low"}


def expected_tick(segment: str, sid: int, fields: dict[str, Any]) -> Tick:
    """The Tick the decoder should give for packet values ``fields`` (float32-rounded)."""
    values: dict[str, Any] = {
        k: f32(v) if k in FLOAT_FIELDS else v for k, v in fields.items() if k != "ltt"
    }
    if "depth" in fields:
        depth = tuple(
            d._replace(bid_price=f32(d.bid_price), ask_price=f32(d.ask_price))
            for d in fields["depth"]
        )
        top = depth[0]
        values.update(depth=depth, bid_price=top.bid_price, bid_qty=top.bid_qty,
                      ask_price=top.ask_price, ask_qty=top.ask_qty)  # fmt: skip
    return Tick("dhan", segment, str(sid), fields["ltt"], **values)


@given(segments, u32, floats, ltts)
def test_ticker_round_trips(segment: str, sid: int, ltp: float, ltt: int) -> None:
    packet = encode_ticker(segment, sid, ltp=ltp, ltt=at_of(ltt))
    assert struct.unpack_from("<I", packet, 12)[0] == ltt
    assert only(packet) == Tick("dhan", segment, str(sid), at_of(ltt), ltp=f32(ltp))


@given(segments, u32, quote_fields)
def test_quote_round_trips(segment: str, sid: int, fields: dict[str, Any]) -> None:
    assert only(encode_quote(segment, sid, **fields)) == expected_tick(segment, sid, fields)


@given(segments, u32, u32)
def test_oi_round_trips(segment: str, sid: int, oi: int) -> None:
    assert only(encode_oi(segment, sid, oi=oi)) == Tick("dhan", segment, str(sid), oi=oi)


@given(segments, u32, floats, u32)
def test_prev_close_round_trips(segment: str, sid: int, prev_close: float, prev_oi: int) -> None:
    packet = encode_prev_close(segment, sid, prev_close=prev_close, prev_oi=prev_oi)
    expected = Tick("dhan", segment, str(sid), prev_close=f32(prev_close), prev_oi=prev_oi)
    assert only(packet) == expected


@given(segments, u32)
def test_market_status_round_trips(segment: str, sid: int) -> None:
    assert only(encode_market_status(segment, sid)) == MarketStatus("dhan", segment, "changed")


@pytest.mark.parametrize(
    ("packet", "segment"),
    [("0708000200000000", "NSE_FNO"), ("0708000800000000", "BSE_FNO"),
     ("0708000000000000", "IDX_I")],
)  # fmt: skip
def test_market_status_packet_says_the_segment_changed_not_a_made_up_status(
    packet: str, segment: str
) -> None:
    # dhan.md: code 7 is header-only (8 bytes) — no status value to decode. The event names
    # the segment and says its status changed; it never reads "unspecified", "open" or
    # "closed" (readers take the market's state from the exchange calendar).
    event = only(bytes.fromhex(packet))
    assert event == MarketStatus("dhan", segment, codec.MARKET_STATUS_CHANGED, None)
    assert event.status == "changed"


@given(u16, segments, u32)
def test_disconnect_round_trips(reason_code: int, segment: str, sid: int) -> None:
    event = only(encode_disconnect(reason_code=reason_code, segment=segment, security_id=sid))
    assert isinstance(event, Disconnect)
    assert event.reason_code == reason_code
    assert event.reason == codec.DISCONNECT_REASONS.get(
        reason_code, f"unknown reason code {reason_code}"
    )


@given(segments, u32, full_fields)
def test_full_round_trips(segment: str, sid: int, fields: dict[str, Any]) -> None:
    tick = only_tick(encode_full(segment, sid, **fields))
    assert tick == expected_tick(segment, sid, fields)
    assert tick.depth is not None
    assert (tick.bid_price, tick.bid_qty, tick.ask_price, tick.ask_qty) == (
        tick.depth[0].bid_price, fields["depth"][0].bid_qty,
        tick.depth[0].ask_price, fields["depth"][0].ask_qty,
    )  # fmt: skip


@given(st.lists(st.sampled_from(sorted(SAMPLES)), min_size=1, max_size=6))
def test_concatenated_packets_decode_in_order(names: list[str]) -> None:
    frame = b"".join(SAMPLES[name] for name in names)
    assert decode_frame(frame) == [only(SAMPLES[name]) for name in names]


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_codec_error(frame: bytes) -> None:
    try:
        events = decode_frame(frame)
    except CodecError as err:
        assert 0 <= err.offset < max(len(frame), 1)
        assert isinstance(err.events, list)  # type: ignore[attr-defined]
    else:
        assert all(isinstance(e, Tick | MarketStatus | Disconnect) for e in events)


def test_bytearray_and_memoryview_frames_decode_like_bytes() -> None:
    packet = SAMPLES["full"]
    assert decode_frame(bytearray(packet)) == decode_frame(memoryview(packet)) == [only(packet)]


# --- times ---------------------------------------------------------------------------------------


def test_ltt_is_ist_wall_clock_converted_to_utc() -> None:
    tick = only_tick(struct.pack("<BHBIfI", 2, 16, 0, 13, 1.0, AT_LTT))
    assert tick.exchange_time == datetime(2025, 1, 2, 3, 45, 7, tzinfo=UTC)
    assert tick.exchange_time.utcoffset() == timedelta(0)


def test_ltt_zero_means_no_exchange_time() -> None:
    assert only_tick(struct.pack("<BHBIfI", 2, 16, 0, 13, 1.0, 0)).exchange_time is None
    assert ist_epoch_to_utc(0) is None


def test_encoder_writes_ist_wall_clock_from_any_zone() -> None:
    in_ist = datetime(2025, 1, 2, 9, 15, 7, 999_999, tzinfo=IST)
    packet = encode_ticker("IDX_I", 13, ltp=1.0, ltt=in_ist)
    assert struct.unpack_from("<I", packet, 12)[0] == AT_LTT  # sub-second part dropped
    assert encode_ticker("IDX_I", 13, ltp=1.0, ltt=None)[12:] == b"\0\0\0\0"


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)))  # fmt: skip
def test_any_aware_datetime_round_trips_to_the_second(at: datetime) -> None:
    assert only_tick(encode_ticker("IDX_I", 13, ltp=1.0, ltt=at)).exchange_time == at.replace(
        microsecond=0
    )


def test_time_cache_stays_bounded() -> None:
    for ltt in range(1, 10_000):
        assert ist_epoch_to_utc(ltt) == at_of(ltt)
    assert len(codec._times) <= codec._times.limit


# --- malformed frames ----------------------------------------------------------------------------


def assert_codec_error(frame: bytes, *, offset: int, code: int | None, length: int | None,
                       match: str) -> CodecError:  # fmt: skip
    with pytest.raises(CodecError, match=match) as info:
        decode_frame(frame)
    err = info.value
    assert (err.offset, err.code, err.length) == (offset, code, length)
    assert f"offset={offset}" in str(err)
    return err


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_of_every_packet_raises(name: str) -> None:
    packet = SAMPLES[name]
    assert len(packet) == SIZES[name]
    for cut in range(1, len(packet)):
        length = SIZES[name] if cut >= 3 else None
        err = assert_codec_error(packet[:cut], offset=0, code=packet[0], length=length,
                                 match="truncated")  # fmt: skip
        assert err.events == []  # type: ignore[attr-defined]


def test_truncated_full_packet_raises() -> None:
    assert_codec_error(SAMPLES["full"][:161], offset=0, code=8, length=162,
                       match="code 8 needs 162 bytes, frame has 161")  # fmt: skip


def test_empty_frame_raises() -> None:
    assert_codec_error(b"", offset=0, code=None, length=None, match="empty frame")


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_length_field_disagreeing_with_the_code_raises(name: str, delta: int) -> None:
    packet = bytearray(SAMPLES[name])
    wrong = SIZES[name] + delta
    struct.pack_into("<H", packet, 1, wrong)
    frame = bytes(packet) + b"\0" * max(delta, 0)  # even with the bytes the length asks for
    assert_codec_error(frame, offset=0, code=packet[0], length=wrong, match="length field says")


@pytest.mark.parametrize("code", [1, 3, 9, 49, 51, 255])
def test_unknown_code_raises(code: int) -> None:
    frame = struct.pack("<BHBI", code, 8, 2, 1)
    assert_codec_error(frame, offset=0, code=code, length=8, match=f"unknown response .*{code}")


@pytest.mark.parametrize("name", ["ticker", "quote", "oi", "prev_close", "market_status", "full"])
@pytest.mark.parametrize("segment", [6, 9, 255])
def test_undefined_segment_number_raises(name: str, segment: int) -> None:
    packet = bytearray(SAMPLES[name])
    packet[3] = segment
    assert_codec_error(bytes(packet), offset=0, code=packet[0], length=SIZES[name],
                       match=f"unknown exchange segment number {segment}")  # fmt: skip


def test_disconnect_ignores_its_header_segment() -> None:
    packet = bytearray(SAMPLES["disconnect"])
    packet[3] = 6
    assert only(bytes(packet)) == Disconnect("dhan", 807, "access token expired")


def test_unknown_disconnect_reason_is_named_by_its_code() -> None:
    assert only(encode_disconnect(reason_code=999)) == Disconnect(
        "dhan", 999, "unknown reason code 999"
    )


def test_good_packet_then_bad_packet_keeps_the_good_event_on_the_error() -> None:
    bad = SAMPLES["quote"][:20]
    err = assert_codec_error(SAMPLES["ticker"] + bad, offset=16, code=4, length=50,
                             match="truncated")  # fmt: skip
    assert err.events == [only(SAMPLES["ticker"])]  # type: ignore[attr-defined]


def test_trailing_bytes_after_a_full_packet_raise_with_the_tick() -> None:
    err = assert_codec_error(SAMPLES["full"] + b"\x02\x10", offset=162, code=2, length=None,
                             match="fewer than the 8-byte header")  # fmt: skip
    assert err.events == [only(SAMPLES["full"])]  # type: ignore[attr-defined]


# --- code 0 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [b"\0", b"\0\0\0", struct.pack("<BHBI", 0, 8, 0, 0), struct.pack("<BHBI", 0, 0, 0, 0) + b"x",
     struct.pack("<BHBI", 0, 500, 0, 0)],
)  # fmt: skip
def test_code_zero_is_ignored_quietly(frame: bytes) -> None:
    assert decode_frame(frame) == []


def test_code_zero_packet_is_skipped_by_its_length() -> None:
    frame = struct.pack("<BHBI", 0, 10, 0, 0) + b"zz" + SAMPLES["oi"]
    assert decode_frame(frame) == [only(SAMPLES["oi"])]


# --- the stateful decoder --------------------------------------------------------------------


def test_feed_decoder_counts_packets_ignored_and_errors() -> None:
    decoder = DhanFeedDecoder()
    assert decoder.feed(SAMPLES["ticker"]) == [only(SAMPLES["ticker"])]
    assert decoder.feed(struct.pack("<BHBI", 0, 8, 0, 0)) == []
    with pytest.raises(CodecError) as info:
        decoder.feed(SAMPLES["oi"] + SAMPLES["full"][:100])
    assert info.value.events == [only(SAMPLES["oi"])]  # type: ignore[attr-defined]
    assert decoder.feed(SAMPLES["full"] + SAMPLES["quote"])[1] == only(SAMPLES["quote"])
    assert (decoder.frames, decoder.packets, decoder.ignored, decoder.errors) == (4, 4, 1, 1)


# --- encoder validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: encode_oi("NSE_FNO", 1, oi=2**32), "oi=4294967296 does not fit uint32"),
        (lambda: encode_oi("NSE_FNO", 1, oi=-1), "does not fit uint32"),
        (lambda: encode_oi("NSE_FNO", 2**32, oi=1), "security_id"),
        (lambda: encode_oi("NSE_FNO", "12a", oi=1), "not a decimal number"),
        (lambda: encode_oi("NSE", 1, oi=1), "unknown Dhan exchange segment 'NSE'"),
        (lambda: encode_quote("NSE_FNO", 1, **{**QUOTE_KW, "ltq": 2**16}), "ltq=65536"),
        (lambda: encode_ticker("IDX_I", 13, ltp=3.5e38, ltt=AT), "does not fit float32"),
        (lambda: encode_ticker("IDX_I", 13, ltp=float("nan"), ltt=AT), "not finite"),
        (lambda: encode_ticker("IDX_I", 13, ltp=float("inf"), ltt=AT), "not finite"),
        (lambda: encode_ticker("IDX_I", 13, ltp=1.0, ltt=datetime(2025, 1, 2)), "timezone-aware"),
        (lambda: encode_ticker("IDX_I", 13, ltp=1.0, ltt=datetime(2107, 1, 1, tzinfo=UTC)),
         "does not fit uint32"),
        (lambda: encode_ticker("IDX_I", 13, ltp=1.0, ltt=at_of(0)), "means 'no time'"),
        (lambda: encode_full("NSE_FNO", 1, **{**FULL_KW, "depth": DEPTH[:4]}), "exactly 5"),
        (lambda: encode_full("NSE_FNO", 1, **{**FULL_KW, "depth": [DEPTH[0]._replace(
            bid_orders=None)] * 5}), "needs bid_orders"),
        (lambda: encode_full("NSE_FNO", 1, **{**FULL_KW, "depth": [DEPTH[0]._replace(
            ask_orders=2**16)] * 5}), r"depth\[0\].ask_orders=65536"),
        (lambda: encode_disconnect(reason_code=2**16), "reason_code"),
    ],
)  # fmt: skip
def test_encoders_reject_values_that_do_not_fit(build, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("value", [True, "5", 1.5, None])
def test_encoders_reject_non_integers_for_integer_fields(value: object) -> None:
    with pytest.raises(TypeError, match="oi must be an int"):
        encode_oi("NSE_FNO", 1, oi=value)  # type: ignore[arg-type]


def test_encoders_are_importable_from_the_codec_module() -> None:
    assert codec.encode_full is encode_full
    with pytest.raises(AttributeError):
        codec.no_such_name  # noqa: B018
