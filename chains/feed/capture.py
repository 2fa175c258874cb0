"""A chain's state captured at a minute boundary, and its minute bar built later. Pure.

The history recorder (``chains.feed.history``) takes a chain's bar for minute M at the instant
the feed's exchange clock reaches M:00 — between two ticks, not at a flush. ``capture`` copies
what a bar needs from the live book then (on the event loop: a tuple per leg, once a minute);
``bar_from_captured`` builds the bar from the copy later (in the writer's thread): it replays
the copy into a scratch ``ChainBook`` and flushes that at M:00, so the bar's analytics (the
put–call-parity forward, each leg's Black-76 IV and delta, PCR, max pain) are the book's own
rules computed on the chain as it stood at M:00, with the time to expiry of M:00 (exchange
time), whatever the wall clock says and whenever the live book last recomputed a leg.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from ..book import ChainBook
from ..history.bars import MinuteBar, bar_from_book, minute_of
from ..leg import LegSpec

# The leg fields a bar and its analytics read (chains.history.bars, chains.leg.Leg.compute).
FIELDS = ("ltp", "bid_price", "ask_price", "volume", "oi", "prev_oi", "prev_close")


@dataclass(frozen=True, slots=True)
class CapturedChain:
    """What ``bar_from_captured`` needs of a chain at one instant: its static facts, spot,
    forward (the anchor of the parity forward) and per leg ``FIELDS`` in that order."""

    underlying: str
    expiry: date
    index_instrument: str
    lot_size: int
    rate: float
    spot: float | None
    forward: float | None
    legs: tuple[tuple[LegSpec, tuple[object, ...]], ...]


def capture(chain: ChainBook) -> CapturedChain:
    """Copy what the bar of ``chain`` needs, as the book holds it now."""
    return CapturedChain(
        underlying=chain.underlying,
        expiry=chain.expiry,
        index_instrument=chain.index_instrument,
        lot_size=chain.lot_size,
        rate=chain.rate,
        spot=chain.spot,
        forward=chain.forward,
        legs=tuple(
            (
                LegSpec(instrument=leg.instrument, strike=leg.strike, option_type=leg.option_type),
                (
                    leg.ltp,
                    leg.bid_price,
                    leg.ask_price,
                    leg.volume,
                    leg.oi,
                    leg.prev_oi,
                    leg.prev_close,
                ),
            )
            for leg in chain.legs.values()
        ),
    )


def bar_from_captured(captured: CapturedChain, minute: datetime) -> MinuteBar:
    """The bar of ``captured`` labelled ``minute`` (IST, rounded down to the minute), with
    every analytic computed at ``minute``. ValueError for a naive ``minute`` or a capture
    without legs."""
    minute = minute_of(minute)
    scratch = ChainBook(
        underlying=captured.underlying,
        expiry=captured.expiry,
        index_instrument=captured.index_instrument,
        legs=[spec for spec, _ in captured.legs],
        lot_size=captured.lot_size,
        rate=captured.rate,
    )
    if captured.spot is not None:
        scratch.apply_spot_value(captured.spot, 1.0)
    scratch.apply_rest(
        None,
        {spec.instrument: dict(zip(FIELDS, values, strict=True)) for spec, values in captured.legs},
        1.0,
    )
    # The live book's forward anchors the parity forward (the strikes it is taken from), as
    # the live book's own next flush would anchor it.
    scratch.forward = captured.forward
    scratch.header_dirty = True  # flushed even when no leg has a value yet
    scratch.flush(minute)
    return bar_from_book(scratch, minute)
