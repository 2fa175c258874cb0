"""The feed worker's chain books: built from the account's chain plans, with each strike
window centred on the spot, then primed from the broker's REST option chains."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import date

from brokers.adapters import FeedAdapter, InstrumentRef
from brokers.exceptions import BrokerError

from ..book import ChainBook, FeedBook
from ..plan import ChainPlan

logger = logging.getLogger(__name__)


async def fetch_spots(
    adapter: FeedAdapter, plans: list[ChainPlan], *, account: str
) -> dict[str, float]:
    """The spot of every index whose plan has a strike window, by broker id; empty when the
    broker cannot say (the windows then follow every strike, which is logged)."""
    wanted: dict[InstrumentRef, date] = {}
    for plan in plans:
        if plan.window is not None:
            wanted.setdefault(plan.index, plan.expiry)  # plans are nearest expiry first
    if not wanted:
        return {}
    try:
        return await adapter.spots(list(wanted.items()))
    except BrokerError as exc:
        logger.warning(
            "Could not fetch spot prices for %s (%s): following every strike until the "
            "next restart centres the strike windows",
            account,
            exc,
        )
        return {}


def build(
    plans: list[ChainPlan], spots: dict[str, float], *, account: str
) -> tuple[FeedBook, list[InstrumentRef], list[InstrumentRef]]:
    """Fresh books (a new ``run``) for ``plans`` cut to their windows around ``spots``, and the
    index and leg instruments to subscribe."""
    chains: list[ChainBook] = []
    index_refs: list[InstrumentRef] = []
    leg_refs: list[InstrumentRef] = []
    for plan in plans:
        narrowed = plan.narrowed(spots.get(plan.index.broker_id))
        chains.append(narrowed.new_book())
        leg_refs.extend(leg.ref for leg in narrowed.legs)
        if narrowed.index not in index_refs:
            index_refs.append(narrowed.index)
        logger.info(
            "Chain %s %s on %s: %d strikes, %d instruments (window %s)",
            narrowed.underlying,
            narrowed.expiry,
            account,
            len(narrowed.strikes()),
            len(narrowed.legs),
            f"±{plan.window}" if plan.window is not None and narrowed is not plan else "all",
        )
    return FeedBook(chains), index_refs, leg_refs


async def prime(
    book: FeedBook,
    adapter: Callable[[], FeedAdapter],
    index_refs: list[InstrumentRef],
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Apply each chain's REST option chain (observed at the request's start, so a tick that
    arrived meanwhile wins), until ``stop``. ``adapter`` gives the current adapter: a new
    token may replace it between two chains. A refused chain is logged and skipped."""
    for chain in book.chains.values():
        if stop is not None and stop.is_set():
            return
        index = next(r for r in index_refs if r.broker_id == chain.index_instrument)
        started = time.time()
        try:
            rest = await adapter().option_chain(index, chain.expiry)
        except BrokerError as exc:
            logger.warning("REST prime of %s %s failed: %s", chain.underlying, chain.expiry, exc)
            continue
        applied = chain.apply_rest(rest.spot, rest.rows, started)
        stats = chain.stats()
        logger.info(
            "Primed %s %s from REST: %d legs updated, %s of %s legs priced, spot %s",
            chain.underlying,
            chain.expiry,
            applied,
            stats["legs_priced"],
            stats["legs"],
            stats["spot"],
        )
