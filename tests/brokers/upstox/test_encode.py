"""Upstox V3 encoders (brokers.upstox.encode): golden bytes, fields that travel together, errors."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from google.protobuf.message import Message

from brokers.ticks import DepthLevel, Tick
from brokers.upstox import MarketDataFeedV3_pb2 as pb
from brokers.upstox.codec import decode_frame
from brokers.upstox.encode import (
    encode_live_feed,
    encode_market_info,
    encode_snapshot,
    sub_message_fields,
)

from .test_codec import GOLDEN, NOW, ms


def test_encoder_reproduces_the_golden_bytes():
    feeds = {
        "NSE_FO|45450": {
            "ltp": 219.3,
            "exchange_time": ms(1740729552723),
            "ltq": 75,
            "prev_close": 494.05,
        }
    }
    assert encode_snapshot(feeds=feeds, mode="ltpc", current_ts=ms(1740729566039)) == GOLDEN


# --- which fields travel together ------------------------------------------------------------

LTPC = ("exchange_time", "ltp", "ltq", "prev_close")
QUOTE = ("bid_price", "bid_qty", "ask_price", "ask_qty")
GREEKS = ("delta", "theta", "gamma", "vega")
BAR = ("open", "high", "low", "close")
FULL_SCALARS = ("avg_price", "volume", "oi", "iv", "total_buy_qty", "total_sell_qty")


@pytest.mark.parametrize(
    ("mode", "key", "groups"),
    [
        ("ltpc", "NSE_FO|1", [LTPC]),
        ("ltpc", "NSE_INDEX|Nifty 50", [LTPC]),
        ("option_greeks", "NSE_FO|1", [LTPC, QUOTE, GREEKS, ("volume",), ("oi",), ("iv",)]),
        ("full", "NSE_FO|1", [LTPC, GREEKS, BAR, ("depth",), *zip(FULL_SCALARS)]),
        ("full", "NSE_INDEX|Nifty 50", [LTPC, BAR]),
    ],
)
def test_sub_message_fields_groups_the_fields_of_each_wire_sub_message(mode, key, groups):
    whole = sub_message_fields(mode, key)
    assert {name: set(group) for name, group in whole.items()} == {
        name: set(group) for group in groups for name in group
    }


def wire_leaves(message: Message, prefix: str = "") -> set[str]:
    """The dotted paths of every scalar present in ``message`` (``ohlc[]`` for repeated items)."""
    leaves = set()
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            leaves.add(prefix + field.name)
        elif field.is_repeated:
            for item in value:
                leaves |= wire_leaves(item, f"{prefix}{field.name}[].")
        else:
            leaves |= wire_leaves(value, f"{prefix}{field.name}.")
    return leaves


WHOLE_WIRE = {  # a sub-message -> the wire fields a whole one carries
    "ltpc": {"ltp", "ltt", "ltq", "cp"},
    "firstDepth": {"bidQ", "bidP", "askQ", "askP"},
    "optionGreeks": {"delta", "theta", "gamma", "vega"},
    "ohlc[]": {"interval", "open", "high", "low", "close"},
}
VALUES = {
    **dict(zip(LTPC, (NOW, 10.5, 75, 9.0), strict=True)),
    **dict(zip(QUOTE, (10.45, 750, 10.55, 1500), strict=True)),
    **dict(zip(GREEKS, (0.5, -3.0, 0.001, 7.5), strict=True)),
    **dict(zip(BAR, (9.5, 11.0, 9.0, 10.5), strict=True)),
}


@pytest.mark.parametrize(
    ("mode", "key"),
    [
        ("ltpc", "NSE_FO|1"),
        ("option_greeks", "NSE_FO|1"),
        ("full", "NSE_FO|1"),
        ("full", "NSE_INDEX|Nifty 50"),
    ],
)
def test_each_group_of_fields_encodes_one_whole_sub_message(mode, key):
    whole = sub_message_fields(mode, key)
    groups = {group for group in whole.values() if len(group) > 1}
    assert groups  # every payload has at least its LTPC
    for group in groups:
        feeds = {key: {name: VALUES[name] for name in group}}
        feed = pb.FeedResponse.FromString(
            encode_live_feed(feeds=feeds, mode=mode, current_ts=NOW)
        ).feeds[key]
        leaves = wire_leaves(feed)
        parents = {leaf.rpartition(".")[0] for leaf in leaves}
        assert len(parents) == 1, leaves  # one sub-message ...
        (parent,) = parents
        sub = "ltpc" if mode == "ltpc" else parent.rpartition(".")[2]
        assert {leaf.rpartition(".")[2] for leaf in leaves} == WHOLE_WIRE[sub]  # ... and whole


def test_sub_message_fields_refuses_what_the_encoders_refuse():
    with pytest.raises(ValueError, match="encode mode"):
        sub_message_fields("full_d30", "NSE_FO|1")
    with pytest.raises(ValueError, match=re.escape("not 'SEGMENT|token'")):
        sub_message_fields("ltpc", "45450")


# --- encoder errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "field"),
    [("ltpc", "iv"), ("option_greeks", "depth"), ("option_greeks", "open"), ("full", "bid_price"),
     ("full", "prev_oi"), ("ltpc", "instrument")],
)  # fmt: skip
def test_encoder_refuses_a_field_the_mode_does_not_carry(mode, field):
    with pytest.raises(ValueError, match=f"cannot carry '{field}'"):
        encode_live_feed(feeds={"NSE_FO|1": {field: 1.0}}, mode=mode, current_ts=NOW)


def test_encoder_refuses_depth_and_greeks_for_an_index():
    with pytest.raises(ValueError, match="cannot carry 'depth'"):
        encode_live_feed(feeds={"NSE_INDEX|Nifty 50": {"depth": ()}}, mode="full", current_ts=NOW)


def test_encoder_skips_none_values():
    frame = encode_live_feed(
        feeds={"NSE_FO|1": {"ltp": 5.0, "iv": None}}, mode="option_greeks", current_ts=NOW
    )
    assert decode_frame(frame) == [Tick("upstox", "NSE_FO", "NSE_FO|1", ltp=5.0)]


@pytest.mark.parametrize("bad", [{"mode": "full_d30"}, {"mode": "LTPC"}])
def test_encoder_refuses_unknown_modes(bad):
    with pytest.raises(ValueError, match="encode mode"):
        encode_snapshot(feeds={"NSE_FO|1": {}}, current_ts=NOW, **bad)


def test_encoder_refuses_bad_keys_order_counts_and_inexact_counts():
    with pytest.raises(ValueError, match=re.escape("not 'SEGMENT|token'")):
        encode_snapshot(feeds={"45450": {}}, mode="ltpc", current_ts=NOW)
    with pytest.raises(ValueError, match="no order counts"):
        encode_snapshot(
            feeds={"NSE_FO|1": {"depth": (DepthLevel(1, 1, 3, 4, 1.0, 2.0),)}},
            mode="full",
            current_ts=NOW,
        )
    for oi in (2**53 + 1, 5.5):
        with pytest.raises(ValueError, match="oi must be an int"):
            encode_snapshot(feeds={"NSE_FO|1": {"oi": oi}}, mode="option_greeks", current_ts=NOW)


def test_encoder_refuses_a_key_missing_from_the_mode_mapping():
    with pytest.raises(ValueError, match=r"no mode given for 'NSE_FO\|2'"):
        encode_live_feed(
            feeds={"NSE_FO|1": {}, "NSE_FO|2": {}}, mode={"NSE_FO|1": "ltpc"}, current_ts=NOW
        )


@pytest.mark.parametrize("value", [1740729552723, "2025-02-28"])
def test_encoder_refuses_an_exchange_time_that_is_not_a_datetime(value):
    with pytest.raises(TypeError, match="aware datetimes"):
        encode_live_feed(feeds={"NSE_FO|1": {"exchange_time": value}}, mode="ltpc", current_ts=NOW)


def test_encoder_refuses_unknown_market_status_name():
    with pytest.raises(ValueError, match="unknown Upstox market status 'OPEN'"):
        encode_market_info(statuses={"NSE_FO": "OPEN"}, current_ts=NOW)


def test_encoder_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="aware datetime"):
        encode_live_feed(feeds={}, mode="ltpc", current_ts=datetime(2025, 1, 1))
