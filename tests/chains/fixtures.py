"""Chains ready to serve: accounts, instruments and tracked chains in the database, and
snapshots/feed status in Redis as a feed worker writes them (built by a real ChainBook)."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, date, datetime, timedelta

from django.core.management import call_command

from brokers.models import BrokerAccount, Instrument, TrackedChain
from brokers.ticks import Tick
from chains import black76, store
from chains.analytics import years_to_expiry
from chains.book import ChainBook, FeedBook, LegSpec, stored_snapshot
from chains.contracts import ChainDeltaEvent, Delta, StoredSnapshot, Strikes, chain_delta_event
from tests.brokers.factories import (
    DHAN_COMPACT_HEADER,
    csv_bytes,
    dhan_account,
    dhan_compact_rows,
    json_bytes,
    next_thursday,
    upstox_account,
    upstox_records,
)

STRIKES = [25_900, 26_000, 26_100, 26_200]
EXPIRY = next_thursday(datetime.now(UTC).date() + timedelta(days=1))
LATER = EXPIRY + timedelta(days=7)


def tracked(
    tmp_path, broker: str, *, expiries: int = 2, strikes: list[int] = STRIKES, name: str = "main"
) -> BrokerAccount:
    """Account ``name`` of ``broker`` with NIFTY options at ``strikes`` for ``expiries`` (1 or
    2) weekly expiries, EXPIRY then LATER, tracking that many of NIFTY's. DhanHQ security ids
    count from 40000 (41000 for LATER), CE before PE per strike; Upstox tokens from 50000."""
    days = [EXPIRY, LATER][:expiries]
    if broker == "dhan":
        account = dhan_account(name)
        rows: list[list[str]] = []
        for n, day in enumerate(days):  # the index, equity and future rows only once
            rows += dhan_compact_rows(day, strikes, first_id=40000 + 1000 * n)[3 if n else 0 :]
        path = tmp_path / "m.csv"
        path.write_bytes(csv_bytes(DHAN_COMPACT_HEADER, rows))
        index_id = "13"
    else:
        account = upstox_account(name)
        records: list[dict] = []
        for n, day in enumerate(days):  # the indices and the equity only once
            records += upstox_records(day, strikes, first_token=50000 + 1000 * n)[3 if n else 0 :]
        path = tmp_path / "m.json"
        path.write_bytes(json_bytes(records))
        index_id = "NSE_INDEX|Nifty 50"
    call_command("loadinstruments", account=name, file=path, stdout=io.StringIO())
    TrackedChain.objects.create(
        account=account, underlying="NIFTY", expiries=expiries,
        index_instrument=Instrument.objects.get(account=account, broker_id=index_id),
    )  # fmt: skip
    return account


def build_book(account: BrokerAccount, expiry: date, *, forward: float = 26_040.0) -> ChainBook:
    legs = [
        LegSpec(i.broker_id, float(i.strike), i.option_type)
        for i in Instrument.objects.filter(account=account, kind="option", expiry=expiry)
    ]
    index = Instrument.objects.get(account=account, kind="index", underlying="NIFTY")
    chain = ChainBook(underlying="NIFTY", expiry=expiry, index_instrument=index.broker_id,
                      legs=legs, lot_size=75)  # fmt: skip
    book = FeedBook([chain])
    now = datetime.now(UTC)
    years = years_to_expiry(expiry, now)
    book.apply(Tick(account.kind, "IDX_I", index.broker_id, now, ltp=forward - 12), 1.0)
    for leg in legs:
        premium = black76.price(call=leg.option_type == "CE", forward=forward,
                                strike=leg.strike, years=years, vol=0.14)  # fmt: skip
        tick = Tick(
            account.kind,
            "NSE_FNO",
            leg.instrument,
            now,
            ltp=round(premium, 2),
            prev_close=round(premium * 0.97, 2),
            oi=50_000 + int(leg.strike) % 700,
            prev_oi=48_000,
            volume=1_000,
            bid_price=round(premium - 0.05, 2),
            ask_price=round(premium + 0.05, 2),
            bid_qty=75,
            ask_qty=150,
        )
        book.apply(tick, 1.0)
    book.flush(now)
    return chain


def publish(account: BrokerAccount, chain: ChainBook, *, ready: bool = True,
            feed_state: str | None = "live") -> StoredSnapshot:  # fmt: skip
    """Write the chain's snapshot and (unless None) the feed status, as runfeed does;
    ``ready=False`` stores it as not ready whatever its prices."""
    snapshot = stored_snapshot(chain, account=account.name, broker=account.kind)
    if not ready:
        snapshot["ready"], snapshot["reason"] = False, "only 0 of 8 legs have a price"

    async def write() -> None:
        client = store.async_client()
        try:
            await store.write_snapshot(client, snapshot)
            if feed_state is not None:
                from tests.chains.test_freshness import feed_record

                # A heartbeat that stays fresh for the test's length (the worker's is 1 s).
                status = feed_record(
                    datetime.now(UTC), state=feed_state, account=account.name,
                    broker=account.kind, heartbeat_seconds=30,
                )  # fmt: skip
                await client.set(store.feed_key(account.name), json.dumps(status), ex=60)
        finally:
            await client.aclose()

    asyncio.run(write())
    return snapshot


def delta_event(chain: ChainBook, seq: int, *, legs: Strikes | None = None,
                as_of: str | None = None) -> ChainDeltaEvent:  # fmt: skip
    """A ``chain.delta`` group message of ``chain``'s run at ``seq`` (whatever the book's own
    count), carrying ``legs`` (none by default) and no header change."""
    delta: Delta = {"run": chain.run, "seq": seq, "as_of": as_of or datetime.now(UTC).isoformat(),
                    "legs": legs or {}, "header": None}  # fmt: skip
    return chain_delta_event(underlying=chain.underlying, expiry=chain.expiry.isoformat(),
                             delta=delta)  # fmt: skip
