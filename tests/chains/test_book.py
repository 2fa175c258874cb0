"""The chain book: every tick reaches its own leg, absent fields carry forward, newer wins."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import get_type_hints

import pytest

from brokers.ticks import Tick
from chains import black76
from chains.book import ChainBook, FeedBook
from chains.leg import TICK_FIELDS, Leg, LegSpec

EXPIRY = date(2026, 11, 24)
NOW = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
T0 = NOW - timedelta(seconds=30)
STRIKES = [24_900.0, 25_000.0, 25_100.0, 25_200.0]


def make_chain(strikes: list[float] = STRIKES) -> ChainBook:
    specs = [
        LegSpec(instrument=f"{int(k)}{opt}", strike=k, option_type=opt)
        for k in strikes
        for opt in ("CE", "PE")
    ]
    return ChainBook(
        underlying="NIFTY", expiry=EXPIRY, index_instrument="13", legs=specs, lot_size=65
    )


def tick(instrument: str, at: datetime | None = T0, **fields: object) -> Tick:
    return Tick("dhan", "NSE_FNO", instrument, at, **fields)


def test_tick_updates_its_own_leg_only():
    chain = make_chain()
    book = FeedBook([chain])
    assert book.apply(tick("25000CE", ltp=120.5, ltq=65), 1.0)
    assert chain.legs["25000CE"].ltp == 120.5
    assert all(leg.ltp is None for key, leg in chain.legs.items() if key != "25000CE")
    assert book.ticks_applied == 1


def test_absent_fields_carry_forward():
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(tick("25000CE", ltp=120.0, volume=1000, bid_price=119.9, ask_price=120.1), 1.0)
    book.apply(tick("25000CE", None, oi=50_000), 2.0)  # a Dhan OI packet: no time, only OI
    book.apply(tick("25000CE", T0 + timedelta(seconds=1), ltp=121.0), 3.0)
    leg = chain.legs["25000CE"]
    assert (leg.ltp, leg.volume, leg.bid_price, leg.oi) == (121.0, 1000, 119.9, 50_000)
    assert leg.exchange_time == T0 + timedelta(seconds=1)


def test_older_observation_never_overwrites_newer():
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(tick("25000CE", ltp=121.0, volume=2000), 5.0)
    assert not chain.apply_fields("25000CE", {"ltp": 118.0, "volume": 1500}, observed_at=4.0)
    assert chain.legs["25000CE"].ltp == 121.0
    assert chain.apply_fields("25000CE", {"ltp": 122.0, "oi": 10}, observed_at=6.0)
    assert (chain.legs["25000CE"].ltp, chain.legs["25000CE"].oi) == (122.0, 10)


def test_older_trade_never_replaces_the_price_but_quotes_apply():
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(tick("25000CE", T0, ltp=121.0), 1.0)
    book.apply(tick("25000CE", T0 - timedelta(seconds=5), ltp=117.0, bid_price=120.5), 2.0)
    leg = chain.legs["25000CE"]
    assert leg.ltp == 121.0
    assert leg.bid_price == 120.5
    assert leg.exchange_time == T0


def test_index_tick_moves_spot_of_every_chain_of_the_underlying():
    near, far = make_chain(), ChainBook(
        underlying="NIFTY", expiry=date(2026, 12, 29), index_instrument="13",
        legs=[LegSpec("X1", 25_000.0, "CE"), LegSpec("X2", 25_000.0, "PE")], lot_size=65,
    )  # fmt: skip
    book = FeedBook([near, far])
    book.apply(Tick("dhan", "IDX_I", "13", T0, ltp=25_040.5), 1.0)
    assert near.spot == far.spot == 25_040.5


def test_unknown_instrument_is_counted_not_applied():
    book = FeedBook([make_chain()])
    assert not book.apply(tick("999"), 1.0)
    assert book.ticks_unrouted == 1


def test_zero_index_price_is_ignored():
    chain = make_chain()
    FeedBook([chain]).apply(Tick("dhan", "IDX_I", "13", T0, ltp=0.0), 1.0)
    assert chain.spot is None


def test_instrument_in_two_chains_is_refused():
    with pytest.raises(ValueError, match="in two chains"):
        FeedBook([make_chain(), make_chain()])


def priced_chain(forward: float = 25_060.0, vol: float = 0.13) -> ChainBook:
    chain = make_chain()
    book = FeedBook([chain])
    years = (datetime(2026, 11, 24, 10, 0, tzinfo=UTC) - NOW).total_seconds() / (365 * 86400)
    book.apply(Tick("dhan", "IDX_I", "13", T0, ltp=forward - 10), 1.0)
    for k in STRIKES:
        for opt in ("CE", "PE"):
            premium = black76.price(
                call=opt == "CE", forward=forward, strike=k, years=years, vol=vol
            )
            book.apply(
                tick(f"{int(k)}{opt}", ltp=round(premium, 2), prev_close=round(premium, 2) - 3,
                     oi=10_000 + int(k) % 1000, prev_oi=9_000),
                1.0,
            )  # fmt: skip
    return chain


def test_flush_computes_forward_atm_iv_and_greeks():
    chain = priced_chain()
    delta = chain.flush(NOW)
    assert delta is not None and delta["seq"] == 1
    assert chain.forward == pytest.approx(25_060.0, abs=0.05)  # parity, not the spot
    assert chain.atm_strike == 25_100.0
    leg = delta["legs"]["25000"]["CE"]
    assert leg["iv"] == pytest.approx(0.13, abs=2e-4)  # premiums were rounded to paise
    assert 0.5 < leg["delta"] < 1
    assert leg["change"] == 3.0
    assert leg["oi_change"] == 1000
    assert leg["buildup"] == "long_buildup"
    assert delta["header"]["pcr"] == pytest.approx(1.0)
    assert delta["header"]["max_pain"] in STRIKES


def test_flush_sends_only_changed_legs_and_increments_seq():
    chain = priced_chain()
    chain.flush(NOW)
    assert chain.flush(NOW) is None  # nothing changed
    chain.apply_tick(
        chain.legs["25200PE"], tick("25200PE", T0 + timedelta(seconds=2), volume=5), 9.0
    )
    delta = chain.flush(NOW + timedelta(milliseconds=250))
    assert delta["seq"] == 2
    assert list(delta["legs"]) == ["25200"]
    assert list(delta["legs"]["25200"]) == ["PE"]
    assert delta["header"] is None  # unchanged


def test_deltas_and_snapshots_name_the_books_run_and_a_new_book_has_a_new_one():
    chain, again = priced_chain(), priced_chain()
    delta = chain.flush(NOW)
    assert delta["run"] == chain.run == chain.snapshot()["run"]
    assert again.flush(NOW)["seq"] == delta["seq"]  # a restarted writer counts from 1 again…
    assert again.run != chain.run  # …under another run, so readers can tell the two apart


def test_price_without_time_value_shows_no_iv():
    chain = priced_chain()
    chain.apply_tick(
        chain.legs["24900CE"], tick("24900CE", T0 + timedelta(seconds=3), ltp=1.0), 9.0
    )
    delta = chain.flush(NOW)
    assert delta["legs"]["24900"]["CE"]["iv"] is None  # below intrinsic: "–", never 0
    assert delta["legs"]["24900"]["CE"]["delta"] is None


def test_snapshot_has_the_api_shape():
    chain = priced_chain()
    chain.flush(NOW)
    snap = chain.snapshot()
    assert set(snap) >= {
        "underlying", "expiry", "lot_size", "strike_interval", "atm_strike", "spot", "forward",
        "pcr", "max_pain", "as_of", "seq", "strikes",
    }  # fmt: skip
    assert snap["strike_interval"] == 100.0
    assert set(snap["strikes"]) == {"24900", "25000", "25100", "25200"}
    assert set(snap["strikes"]["25000"]["PE"]) >= {
        "instrument_id", "ltp", "change", "bid", "ask", "bid_qty", "ask_qty", "volume", "oi",
        "oi_change", "prev_close", "iv", "delta", "gamma", "theta", "vega", "buildup",
        "exchange_time",
    }  # fmt: skip


def test_readiness_needs_spot_and_prices():
    chain = make_chain()
    assert chain.readiness() == (False, "no price for the underlying NIFTY yet")
    chain.apply_spot_value(25_000.0, 1.0)
    assert chain.readiness() == (False, "only 0 of 8 legs have a price")
    assert priced_chain().readiness()[0]


def test_rest_row_with_unknown_field_is_a_bug():
    with pytest.raises(KeyError, match="unknown leg field"):
        make_chain().apply_fields("25000CE", {"last_price": 1.0}, observed_at=1.0)


def test_chain_without_legs_is_refused():
    with pytest.raises(ValueError, match="no legs"):
        ChainBook(underlying="X", expiry=EXPIRY, index_instrument="1", legs=[], lot_size=1)


def test_a_leg_declares_every_tick_field_as_the_tick_types_it():
    leg, tick_types = get_type_hints(Leg), get_type_hints(Tick)
    assert {name: leg.get(name) for name in TICK_FIELDS} == {
        name: tick_types[name] for name in TICK_FIELDS
    }
