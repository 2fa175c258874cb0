"""IV and greeks of every leg are those of the forward and time the snapshot shows beside them,
and the spot and forward are shown on the index tick."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from brokers.ticks import Tick
from chains import analytics, black76
from chains.book import ChainBook, FeedBook
from chains.leg import LegSpec
from tests.chains.iv_check import iv_mismatches, priced_legs

EXPIRY = date(2026, 11, 24)
NOW = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)  # Saturday 10:30 IST: 3 days 5 h to expiry
T0 = NOW - timedelta(seconds=30)
STRIKES = [float(k) for k in range(24_600, 25_600, 100)]
VOL = 0.13


def make_chain() -> ChainBook:
    specs = [LegSpec(f"{int(k)}{opt}", k, opt) for k in STRIKES for opt in ("CE", "PE")]
    return ChainBook(
        underlying="NIFTY", expiry=EXPIRY, index_instrument="13", legs=specs, lot_size=65
    )


def reprice(
    book: FeedBook, forward: float, strikes: list[float], observed_at: float, now: datetime
) -> None:
    """Ticks of the legs of ``strikes`` priced (to paise) at ``forward`` as of ``now``."""
    years = analytics.years_to_expiry(EXPIRY, now)
    for k in strikes:
        for opt in ("CE", "PE"):
            premium = black76.price(
                call=opt == "CE", forward=forward, strike=k, years=years, vol=VOL
            )
            book.apply(Tick("dhan", "NSE_FNO", f"{int(k)}{opt}", now, ltp=round(premium, 2)),
                       observed_at)  # fmt: skip


def started(forward: float = 25_060.0) -> tuple[ChainBook, FeedBook]:
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(Tick("dhan", "IDX_I", "13", T0, ltp=forward - 40.0), 1.0)
    reprice(book, forward, STRIKES, 1.0, NOW)
    assert chain.flush(NOW) is not None
    assert iv_mismatches(dict(chain.snapshot())) == []
    return chain, book


def test_a_forward_move_below_any_threshold_redoes_every_priced_legs_iv():
    chain, book = started()
    before = chain.forward
    # Only the legs around the money trade: the parity forward moves 10 points (0.04 %); the
    # wings keep their last price, whose IV on the new forward is another number.
    reprice(book, 25_070.0, [25_000.0, 25_100.0, 25_200.0], 2.0, NOW + timedelta(seconds=1))
    delta = chain.flush(NOW + timedelta(seconds=1))
    assert delta is not None
    assert chain.forward != before
    assert abs(chain.forward - before) < 0.0005 * before
    snapshot = dict(chain.snapshot())
    assert priced_legs(snapshot) == 2 * len(STRIKES)
    assert iv_mismatches(snapshot) == []
    # every leg whose IV changed is in the delta: a reader applying deltas sees the same
    assert {k for k, sides in delta["legs"].items() if sides} >= {"24600", "25500"}


def test_time_passing_redoes_every_priced_legs_iv():
    chain, book = started()
    later = NOW + timedelta(hours=1)  # 1.3 % of the time to expiry: IV 0.6 % higher
    # one far leg trades (its price unchanged otherwise) and the forward stays put
    reprice(book, 25_060.0, [24_600.0], 2.0, NOW)
    chain.apply_tick(chain.legs["24600CE"], Tick("dhan", "NSE_FNO", "24600CE", later,
                                                 volume=10), 3.0)  # fmt: skip
    forward = chain.forward
    assert chain.flush(later) is not None
    assert chain.forward == forward
    assert iv_mismatches(dict(chain.snapshot())) == []


def test_an_unchanged_forward_and_time_redo_only_the_legs_that_changed():
    chain, _ = started()
    seconds = NOW + timedelta(milliseconds=250)
    chain.apply_tick(chain.legs["25500PE"], Tick("dhan", "NSE_FNO", "25500PE", seconds,
                                                 volume=5), 2.0)  # fmt: skip
    delta = chain.flush(seconds)
    assert delta is not None
    assert {(k, side) for k, sides in delta["legs"].items() for side in sides} == {("25500", "PE")}


def test_spot_and_forward_are_on_the_index_tick():
    chain = make_chain()
    book = FeedBook([chain])
    book.apply(Tick("dhan", "IDX_I", "13", T0, ltp=25_941.599609375), 1.0)  # a float32 price
    chain.flush(NOW)
    snapshot = chain.snapshot()
    assert snapshot["spot"] == 25_941.6
    assert snapshot["forward"] == 25_941.6  # no parity yet: the spot
    reprice(book, 25_963.3779, STRIKES, 2.0, NOW)
    chain.flush(NOW)
    snapshot = chain.snapshot()
    forward = snapshot["forward"]
    assert forward is not None
    assert forward == pytest.approx(25_963.4, abs=0.05)
    assert forward == round(round(forward * 20) / 20, 2)  # a whole number of 0.05 steps
    book.apply(Tick("dhan", "IDX_I", "13", T0, ltp=85_138.27), 3.0)  # a BSE-style 0.01 step
    chain.flush(NOW)
    assert chain.snapshot()["spot"] == 85_138.27  # as published, not moved onto a 0.05 grid
    assert chain.forward == forward  # the IVs are computed on the forward shown
    assert iv_mismatches(dict(snapshot)) == []


def test_a_rest_spot_is_on_the_index_tick():
    chain = make_chain()
    chain.apply_spot_value(25_941.649999, 1.0)  # a REST answer's float noise
    assert chain.spot == 25_941.65


def test_iv_check_refuses_a_snapshot_never_flushed():
    with pytest.raises(ValueError, match="flush it first"):
        iv_mismatches(dict(make_chain().snapshot()))
