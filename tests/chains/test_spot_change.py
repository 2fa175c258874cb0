"""The spot's change since the index's previous close: kept by the chain book from index
ticks, carried in the snapshot and delta header, written by the page presenter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from brokers.ticks import Tick
from chains import presenter
from chains.book import ChainBook, FeedBook, stored_snapshot
from chains.leg import LegSpec
from chains.repopulate import seed_book

from .test_book import make_chain

NOW = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
T0 = NOW - timedelta(seconds=30)


def index_tick(**fields: object) -> Tick:
    return Tick("dhan", "IDX_I", "13", **fields)  # type: ignore[arg-type]


def test_a_prev_close_packet_without_a_price_keeps_the_index_previous_close():
    chain = make_chain()
    book = FeedBook([chain])
    assert book.apply(index_tick(prev_close=25_814.599609375), 1.0)  # float32 on the wire
    assert chain.spot_prev_close == 25_814.6
    assert chain.spot is None  # a close is not a price
    assert not book.apply(index_tick(prev_close=25_814.6), 2.0)  # unchanged: nothing to send


def test_a_tick_with_price_and_previous_close_keeps_both():
    chain = make_chain()
    FeedBook([chain]).apply(index_tick(exchange_time=T0, ltp=25_938.05, prev_close=25_814.6), 1.0)
    assert (chain.spot, chain.spot_prev_close) == (25_938.05, 25_814.6)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_previous_close_not_above_zero_is_not_kept(bad: float):
    chain = make_chain()
    assert not FeedBook([chain]).apply(index_tick(prev_close=bad), 1.0)
    assert chain.spot_prev_close is None


def test_later_ticks_without_a_previous_close_carry_it_forward():
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(index_tick(prev_close=25_814.6), 1.0)
    book.apply(index_tick(exchange_time=T0, ltp=25_900.0), 2.0)
    assert chain.spot_prev_close == 25_814.6


def test_the_previous_close_travels_in_the_delta_header_and_the_snapshot():
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(index_tick(exchange_time=T0, ltp=25_938.05), 1.0)
    first = chain.flush(NOW)
    assert first is not None and first["header"] is not None
    assert first["header"]["spot_prev_close"] is None  # not sent yet: unknown, not 0
    book.apply(index_tick(prev_close=25_814.6), 2.0)
    delta = chain.flush(NOW)
    assert delta is not None and delta["header"] is not None  # only the close changed
    assert delta["header"]["spot_prev_close"] == 25_814.6
    assert chain.snapshot()["spot_prev_close"] == 25_814.6


def test_a_book_seeded_from_a_stored_snapshot_keeps_its_previous_close():
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(index_tick(exchange_time=T0, ltp=25_938.05, prev_close=25_814.6), 1.0)
    chain.flush(NOW)
    stored = stored_snapshot(chain, account="main", broker="dhan")
    fresh = ChainBook(underlying="NIFTY", expiry=date(2026, 11, 24), index_instrument="13",
                      legs=[LegSpec("24900CE", 24_900.0, "CE")], lot_size=65)  # fmt: skip
    seed_book(fresh, stored)
    assert fresh.spot_prev_close == 25_814.6
    assert not fresh.pending  # seeding sends nothing


@pytest.mark.parametrize(
    ("spot", "prev_close", "text", "css"),
    [
        (25_938.05, 25_814.6, "+123.45 (+0.48%)", "up"),
        (25_691.15, 25_814.6, "-123.45 (-0.48%)", "down"),
        (25_814.6, 25_814.6, "+0.00 (+0.00%)", ""),
        (25_814.61, 25_814.6, "+0.01 (+0.00%)", "up"),
        (125_000.0, 123_456.0, "+1,544.00 (+1.25%)", "up"),
    ],
)
def test_the_change_is_signed_in_rupees_and_percent(
    spot: float, prev_close: float, text: str, css: str
):
    got_text, got_css, title = presenter.spot_change(spot, prev_close)
    assert (got_text, got_css) == (text, css)
    assert presenter.price(prev_close) in title


@pytest.mark.parametrize(
    ("spot", "prev_close"), [(25_938.05, None), (None, 25_814.6), (25_938.05, 0.0)]
)
def test_an_unknown_change_is_a_dash_with_the_reason_never_zero(
    spot: float | None, prev_close: float | None
):
    assert presenter.spot_change(spot, prev_close) == (
        presenter.DASH,
        "",
        presenter.SPOT_CHANGE_UNKNOWN,
    )
