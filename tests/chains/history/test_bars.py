"""Minute bars from a chain book, and their packed legs."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.exchange import IST
from chains import analytics
from chains.book import ChainBook
from chains.history.bars import (
    COLUMNS,
    DIGITS,
    LegColumns,
    SideColumns,
    bar_from_book,
    pack_legs,
    unpack_legs,
)
from chains.leg import LegSpec

from .books import EXPIRY, OPEN, day_of_bars, make_book, move


def test_bar_holds_every_leg_and_chain_figure():
    book = make_book()
    move(book, OPEN + timedelta(seconds=20), seed=1, observed_at=1.0)
    bar = bar_from_book(book, OPEN + timedelta(seconds=42))
    assert bar.minute == OPEN and bar.minute.second == 0
    assert (bar.underlying, bar.expiry, bar.day) == ("NIFTY", EXPIRY, OPEN.date())
    assert bar.legs.strikes == tuple(book.strikes)
    for i, strike in enumerate(book.strikes):
        for side in ("CE", "PE"):
            leg = book.by_strike[strike][side]
            cols = bar.legs.side(side)
            assert cols.oi[i] == leg.oi and cols.volume[i] == leg.volume
            assert cols.ltp[i] == leg.ltp and cols.bid[i] == leg.bid_price
            assert cols.ask[i] == leg.ask_price
            assert cols.iv[i] == round(leg.our_iv, 6)
            assert cols.delta[i] == round(leg.our_delta, 4)
    atm = analytics.nearest_strike(book.strikes, book.spot)
    at = book.strikes.index(atm)
    ce, pe = book.by_strike[atm]["CE"], book.by_strike[atm]["PE"]
    assert bar.atm_strike == atm
    assert bar.straddle == round(ce.ltp + pe.ltp, 2)
    assert bar.atm_iv == round((round(ce.our_iv, 6) + round(pe.our_iv, 6)) / 2, 6)
    assert bar.legs.ce.ltp[at] == ce.ltp
    assert (bar.spot, bar.pcr, bar.max_pain) == (book.spot, round(book.pcr, 4), book.max_pain)
    assert bar.forward == round(book.forward, 2)
    calls = [book.by_strike[k]["CE"] for k in book.strikes]
    puts = [book.by_strike[k]["PE"] for k in book.strikes]
    assert bar.ce_oi == sum(leg.oi for leg in calls)
    assert bar.pe_oi == sum(leg.oi for leg in puts)
    assert bar.ce_oi_change == sum(leg.oi - leg.prev_oi for leg in calls)
    assert bar.pe_oi_change == sum(leg.oi - leg.prev_oi for leg in puts)


def test_empty_book_gives_a_bar_of_unknowns():
    bar = bar_from_book(make_book(strikes=3), OPEN)
    assert bar.spot is bar.atm_strike is bar.atm_iv is bar.straddle is bar.pcr is None
    assert bar.ce_oi is bar.pe_oi is bar.ce_oi_change is None
    assert bar.legs.ce.ltp == (None, None, None)


def test_side_absent_at_a_strike_is_none_and_atm_iv_uses_the_side_present():
    specs = [
        LegSpec("A", 25_900.0, "CE"),
        LegSpec("B", 26_000.0, "CE"),
        LegSpec("C", 26_000.0, "PE"),
        LegSpec("D", 26_100.0, "PE"),
    ]
    book = ChainBook(
        underlying="NIFTY", expiry=EXPIRY, index_instrument="13", legs=specs, lot_size=65
    )
    book.apply_spot_value(25_910.0, 1.0)
    book.apply_fields("A", {"ltp": 80.0, "oi": 100}, 1.0)
    book.flush(OPEN)
    bar = bar_from_book(book, OPEN)
    assert bar.legs.strikes == (25_900.0, 26_000.0, 26_100.0)
    assert bar.legs.pe.oi == (None, None, None) and bar.legs.pe.ltp[0] is None
    assert bar.legs.ce.oi == (100, None, None)
    assert bar.atm_strike == 25_900.0
    assert bar.atm_iv == bar.legs.ce.iv[0] is not None
    assert bar.straddle is None  # no PE at the ATM strike


def test_bar_minute_is_the_ist_minute_and_naive_time_is_refused():
    book = make_book(strikes=2)
    bar = bar_from_book(book, datetime(2026, 12, 1, 4, 0, 59, 999, tzinfo=UTC))
    assert bar.minute == datetime(2026, 12, 1, 9, 30, tzinfo=IST)
    assert bar.minute.utcoffset() == timedelta(hours=5, minutes=30)
    with pytest.raises(ValueError, match="time zone"):
        bar_from_book(book, datetime(2026, 12, 1, 9, 30))


def test_packed_legs_of_a_real_bar_round_trip():
    bars = day_of_bars(make_book(strikes=20), 3)
    for bar in bars:
        assert unpack_legs(pack_legs(bar.legs)) == bar.legs


def _column(n: int, kind: str, name: str) -> st.SearchStrategy:
    if kind == "int":
        value = st.integers(min_value=0, max_value=2**62)
    else:
        digits = DIGITS[name]
        value = st.integers(min_value=-(10**9), max_value=10**9).map(
            lambda v, d=digits: round(v / 10**d, d)
        )
    return st.tuples(*[st.none() | value for _ in range(n)])


@st.composite
def leg_columns(draw: st.DrawFn) -> LegColumns:
    n = draw(st.integers(min_value=0, max_value=12))
    strikes = tuple(sorted(draw(st.sets(st.integers(1, 10**6), min_size=n, max_size=n))))
    sides = []
    for _ in range(2):
        cols = {
            name: draw(_column(n, "int" if name in {"oi", "volume"} else "float", name))
            for name in COLUMNS
        }
        sides.append(SideColumns(**cols))
    return LegColumns(strikes=tuple(k / 2 for k in strikes), ce=sides[0], pe=sides[1])


@settings(deadline=None)  # a loaded machine is slow, not wrong
@given(leg_columns())
def test_pack_unpack_round_trip(legs: LegColumns):
    assert unpack_legs(pack_legs(legs)) == legs


def test_columns_must_match_the_strikes():
    with pytest.raises(ValueError, match="column oi has 1 entries for 2 strikes"):
        LegColumns(strikes=(1.0, 2.0), ce=SideColumns.empty(1), pe=SideColumns.empty(2))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not zlib", "corrupt"),
        (zlib.compress(b"\x01"), "truncated"),
        (zlib.compress(b"\x09\x00\x00\x00\x00"), "format 9"),
        (zlib.compress(b"\x01\x02\x00\x00\x00" + b"\x00" * 8), "not what 2 strikes need"),
    ],
)
def test_bad_packed_legs_are_refused(data: bytes, reason: str):
    with pytest.raises(ValueError, match=reason):
        unpack_legs(data)


def test_a_day_of_200_strikes_packs_under_2_mb():
    book = make_book(strikes=200, first=16_000.0)
    total = sum(len(pack_legs(bar.legs)) for bar in day_of_bars(book, 20))
    assert total / 20 * 375 < 2_000_000
