"""The records that cross a process boundary: each parses what its writer writes, and a
missing or renamed key is a loud error naming it — never a value read as "not given"."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from brokers.ticks import Tick
from chains import contracts, ownership, store
from chains.book import ChainBook, FeedBook, LegSpec, stored_snapshot
from chains.contracts import (
    LEG_KEYS,
    SNAPSHOT_KEYS,
    chain_delta_event,
    leg_book_fields,
    parse_chain_delta,
    parse_meta,
    parse_snapshot,
    snapshot_meta,
    version,
)
from chains.exceptions import ContractError
from chains.feed.status import REQUIRED as FEED_STATUS_KEYS
from chains.feed.status import parse_feed_status
from chains.freshness import FreshnessJSON
from chains.ownership import RestHandover
from chains.repopulate import seed_book

from .test_freshness import feed_record

EXPIRY = date(2026, 11, 24)
NOW = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
STRIKES = [24_900.0, 25_000.0, 25_100.0]
CHAIN_JS = Path(__file__).resolve().parents[2] / "static" / "optionsite" / "chain.js"


def fed_chain() -> ChainBook:
    """A chain fed by ticks (every leg priced, OI on both days, exchange times) and flushed."""
    specs = [LegSpec(f"{int(k)}{side}", k, side) for k in STRIKES for side in ("CE", "PE")]
    chain = ChainBook(underlying="NIFTY", expiry=EXPIRY, index_instrument="13", legs=specs,
                      lot_size=65)  # fmt: skip
    book = FeedBook([chain])
    at = NOW - timedelta(seconds=5)
    book.apply(Tick("dhan", "IDX_I", "13", at, ltp=25_012.5), 1.0)
    for spec in specs:
        intrinsic = max(0.0, (25_012.5 - spec.strike) * (1 if spec.option_type == "CE" else -1))
        book.apply(Tick("dhan", "NSE_FNO", spec.instrument, at, ltp=round(intrinsic + 80.35, 2),
                        prev_close=70.0, oi=5_000 + int(spec.strike) % 300, prev_oi=4_800,
                        volume=1_200, bid_price=intrinsic + 80.3, ask_price=intrinsic + 80.4,
                        bid_qty=65, ask_qty=130), 1.0)  # fmt: skip
    book.flush(NOW)
    return chain


def through_json(record: Any) -> Any:
    return json.loads(store.dumps(record))


def without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


def renamed(record: dict[str, Any], key: str, to: str) -> dict[str, Any]:
    return {(to if k == key else k): v for k, v in record.items()}


# --- the snapshot ----------------------------------------------------------------------------


def test_a_snapshot_the_book_writes_parses_as_it_was_written():
    snapshot = stored_snapshot(fed_chain(), account="main", broker="dhan")
    assert parse_snapshot(through_json(snapshot)) == snapshot
    assert set(snapshot) == SNAPSHOT_KEYS  # the type lists exactly what the book writes
    leg = snapshot["strikes"]["25000"]["CE"]
    assert set(leg) == LEG_KEYS


@pytest.mark.parametrize("key", sorted(SNAPSHOT_KEYS))
def test_a_snapshot_without_a_required_key_is_refused_naming_it(key):
    raw = through_json(stored_snapshot(fed_chain(), account="main", broker="dhan"))
    with pytest.raises(ContractError, match=rf"chain snapshot lacks '{key}'"):
        parse_snapshot(without(raw, key))


def test_a_renamed_snapshot_key_names_both_names_and_what_to_do():
    raw = through_json(stored_snapshot(fed_chain(), account="main", broker="dhan"))
    with pytest.raises(ContractError) as caught:
        parse_snapshot(renamed(raw, "run", "writer_run"))
    message = str(caught.value)
    assert "lacks 'run' and has 'writer_run' instead (renamed?)" in message
    assert "restart the feed workers, Celery and the web processes from one release" in message


@pytest.mark.parametrize("key", sorted(LEG_KEYS))
def test_a_leg_without_a_required_key_is_refused_naming_the_leg_and_key(key):
    raw = through_json(stored_snapshot(fed_chain(), account="main", broker="dhan"))
    raw["strikes"]["25100"]["PE"] = without(raw["strikes"]["25100"]["PE"], key)
    pattern = rf"chain snapshot of NIFTY 2026-11-24, leg 25100 PE, lacks '{key}'"
    with pytest.raises(ContractError, match=pattern):
        parse_snapshot(raw)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda raw: "not a snapshot", "is not a JSON object but str"),
        (lambda raw: {**raw, "strikes": []}, "has strikes that are not a JSON object"),
        (lambda raw: {**raw, "strikes": {"25000": None}}, "strike 25000 that is not a JSON object"),
        (lambda raw: {**raw, "strikes": {"25000": {"XX": {}}}}, "a side 'XX' at strike 25000"),
        (lambda raw: {**raw, "strikes": {"25000": {"CE": []}}}, "is not a JSON object but list"),
    ],
)
def test_a_snapshot_of_the_wrong_shape_is_refused(change, said):
    raw = through_json(stored_snapshot(fed_chain(), account="main", broker="dhan"))
    with pytest.raises(ContractError, match=re.escape(said)):
        parse_snapshot(change(raw))


def test_a_leg_parses_back_into_the_books_market_fields():
    chain = fed_chain()
    leg = chain.legs["25000PE"]
    fields, exchange_time = leg_book_fields(chain.snapshot()["strikes"]["25000"]["PE"])
    assert fields == {"ltp": leg.ltp, "bid_price": leg.bid_price, "ask_price": leg.ask_price,
                      "bid_qty": 65, "ask_qty": 130, "volume": 1_200, "oi": leg.oi,
                      "prev_close": 70.0, "prev_oi": 4_800}  # fmt: skip
    assert exchange_time == leg.exchange_time


# --- the meta record ---------------------------------------------------------------------------


def test_the_meta_record_is_the_snapshots_version_and_readiness():
    snapshot = stored_snapshot(fed_chain(), account="main", broker="dhan")
    meta = parse_meta(through_json(snapshot_meta(snapshot)))
    assert version(meta) == version(snapshot) == (snapshot["run"], snapshot["seq"])
    assert (meta["ready"], meta["reason"], meta["as_of"]) == (True, "6 of 6 legs priced",
                                                               NOW.isoformat())  # fmt: skip


@pytest.mark.parametrize("key", contracts.META_KEYS)
def test_a_meta_record_without_a_required_key_is_refused_naming_it(key):
    meta = through_json(snapshot_meta(stored_snapshot(fed_chain(), account="main", broker="dhan")))
    with pytest.raises(ContractError, match=rf"meta record lacks '{key}'"):
        parse_meta(without(meta, key))


# --- the delta ---------------------------------------------------------------------------------


def test_a_delta_the_book_flushes_parses_as_it_was_sent():
    chain = fed_chain()
    chain.apply_fields("25000CE", {"ltp": 99.95}, observed_at=2.0)
    chain.apply_spot_value(25_020.0, observed_at=2.0)
    delta = chain.flush(NOW + timedelta(seconds=1))
    assert delta is not None
    event = chain_delta_event(underlying="NIFTY", expiry=EXPIRY.isoformat(), delta=delta)
    parsed = parse_chain_delta(through_json(event))
    assert parsed == event
    assert version(parsed) == (chain.run, chain.seq)
    assert parsed["legs"]["25000"]["CE"]["ltp"] == 99.95
    assert parsed["header"] is not None and parsed["header"]["spot"] == 25_020.0


def test_a_delta_that_changes_no_header_field_says_so_with_null():
    chain = fed_chain()
    chain.apply_fields("25000CE", {"volume": 5_000}, observed_at=2.0)
    delta = chain.flush(NOW + timedelta(seconds=1))
    assert delta is not None and delta["header"] is None
    event = chain_delta_event(underlying="NIFTY", expiry=EXPIRY.isoformat(), delta=delta)
    assert parse_chain_delta(through_json(event))["header"] is None


@pytest.mark.parametrize("key", sorted(contracts.CHAIN_DELTA_KEYS))
def test_a_delta_without_a_required_key_is_refused_naming_it(key):
    chain = fed_chain()
    chain.header_dirty = True
    event = chain_delta_event(underlying="NIFTY", expiry=EXPIRY.isoformat(),
                              delta=chain.flush(NOW))  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(ContractError, match=rf"chain.delta message lacks '{key}'"):
        parse_chain_delta(without(dict(event), key))


def test_a_delta_whose_legs_are_not_an_object_is_refused():
    chain = fed_chain()
    chain.header_dirty = True
    event = dict(chain_delta_event(underlying="NIFTY", expiry=EXPIRY.isoformat(),
                                   delta=chain.flush(NOW)))  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(ContractError, match="NIFTY 2026-11-24 has legs that are not a JSON"):
        parse_chain_delta({**event, "legs": []})


# --- the feed status ---------------------------------------------------------------------------


def test_a_feed_status_record_as_the_worker_writes_it_parses():
    record = feed_record(chains=[{"underlying": "NIFTY", "expiry": "2026-11-24", "legs": 6,
                                  "legs_priced": 6, "spot": 25_012.5, "ready": True,
                                  "reason": "6 of 6 legs priced", "seq": 3,
                                  "as_of": NOW.isoformat(), "strikes": 3}])  # fmt: skip
    assert parse_feed_status(through_json(record)) == record


@pytest.mark.parametrize("key", sorted(FEED_STATUS_KEYS))
def test_a_feed_status_without_a_required_key_is_refused_naming_it(key):
    with pytest.raises(ContractError, match=rf"feed status record lacks '{key}'"):
        parse_feed_status(without(feed_record(), key))


def test_a_renamed_feed_status_key_names_both_names():
    with pytest.raises(ContractError, match="lacks 'state' and has 'status' instead"):
        parse_feed_status(renamed(feed_record(), "state", "status"))


def test_a_feed_status_chain_without_a_required_key_is_refused_naming_it():
    chain = {"underlying": "NIFTY", "expiry": "2026-11-24", "strikes": 3, "legs": 6,
             "legs_priced": 6, "spot": None, "ready": False, "why": "no spot", "seq": 0,
             "as_of": None}  # fmt: skip
    pattern = "feed status record of main, a chain in it, lacks 'reason' and has 'why' instead"
    with pytest.raises(ContractError, match=pattern):
        parse_feed_status(feed_record(chains=[chain]))


# --- the REST handover -------------------------------------------------------------------------


def test_a_rest_handover_round_trips_through_json():
    rows = {"25000CE": {"ltp": 120.5, "oi": 4_000, "volume": None}}
    handover = RestHandover("NIFTY", EXPIRY, 1_790_000_000.25, 25_010.0, rows)
    assert RestHandover.from_json(through_json(handover.to_json())) == handover
    assert RestHandover.from_json(through_json(
        RestHandover("NIFTY", EXPIRY, 1.0, None, {}).to_json())).spot is None  # fmt: skip


@pytest.mark.parametrize("key", ["underlying", "expiry", "observed_at", "spot", "rows"])
def test_a_rest_handover_without_a_required_key_is_refused_naming_it(key):
    raw = RestHandover("NIFTY", EXPIRY, 1.0, 25_010.0, {}).to_json()
    with pytest.raises(ContractError, match=rf"handed to the feed worker lacks '{key}'"):
        RestHandover.from_json(without(raw, key))


def test_a_rest_handover_with_an_expiry_that_is_not_a_date_is_refused():
    raw = {**RestHandover("NIFTY", EXPIRY, 1.0, None, {}).to_json(), "expiry": "24/11/2026"}
    with pytest.raises(ContractError, match="expiry '24/11/2026', not a YYYY-MM-DD date"):
        RestHandover.from_json(raw)


# --- end to end: the book → Redis → a reader → a book -----------------------------------------


def test_a_snapshot_written_by_the_book_round_trips_through_redis_and_back_into_a_book(
    clean_redis,
):
    chain = fed_chain()
    snapshot = stored_snapshot(chain, account="main", broker="dhan")

    async def write() -> None:
        client = store.async_client()
        try:
            await store.write_snapshot(client, snapshot)
        finally:
            await client.aclose()

    asyncio.run(write())
    read = store.read_snapshot("NIFTY", EXPIRY)
    assert read == snapshot
    meta = store.read_meta("NIFTY", EXPIRY)
    assert meta == snapshot_meta(snapshot) and version(meta) == version(snapshot)
    # …and back into a book (what the REST repopulate does): the same market state, version
    # and time, so the next flush continues the writer's count.
    specs = [LegSpec(leg.instrument, leg.strike, leg.option_type) for leg in chain.legs.values()]
    again = ChainBook(underlying="NIFTY", expiry=EXPIRY, index_instrument="13", legs=specs,
                      lot_size=65)  # fmt: skip
    seed_book(again, read)
    assert (again.run, again.seq, again.as_of, again.spot) == (chain.run, chain.seq, NOW,
                                                                chain.spot)  # fmt: skip
    for instrument, leg in chain.legs.items():
        seeded = again.legs[instrument]
        for name in ("ltp", "bid_price", "ask_price", "volume", "oi", "prev_oi", "prev_close",
                     "exchange_time"):  # fmt: skip
            assert getattr(seeded, name) == getattr(leg, name), (instrument, name)
    again.apply_fields("25100CE", {"volume": 9_999}, observed_at=NOW.timestamp() + 1)
    delta = again.flush(NOW + timedelta(seconds=1))
    assert delta is not None and version(delta) == (chain.run, chain.seq + 1)


def test_a_stored_snapshot_with_a_renamed_key_fails_its_readers_naming_it(clean_redis):
    raw = through_json(stored_snapshot(fed_chain(), account="main", broker="dhan"))
    store.sync_client().set(store.chain_key("NIFTY", EXPIRY), store.dumps(renamed(raw, "seq", "n")))
    with pytest.raises(ContractError, match="lacks 'seq' and has 'n' instead"):
        store.read_snapshot("NIFTY", EXPIRY)
    with pytest.raises(ContractError, match="lacks 'seq'"):  # the REST repopulate's merge
        ownership.replace_snapshot("NIFTY", EXPIRY, lambda current: current, owner_key="k")


# --- the browser reads the documented names -----------------------------------------------------


def _names(pattern: str, text: str) -> set[str]:
    return set(re.findall(pattern, text))


def test_chain_js_reads_only_the_documented_field_names():
    js = CHAIN_JS.read_text()
    messages = (contracts.SnapshotMessage, contracts.DeltaMessage, contracts.StatusMessage,
                contracts.ErrorMessage)  # fmt: skip
    message_keys = {key for message in messages for key in message.__annotations__}
    assert _names(r"\bmsg\.(\w+)", js) <= message_keys
    assert _names(r"\bdata\??\.(\w+)", js) <= set(contracts.ApiData.__annotations__)
    assert _names(r"\bfresh\??\.(\w+)", js) <= set(FreshnessJSON.__annotations__)
    leg_reads = _names(r"(?:\bleg|\batm\[s\]|\[side\]|\.CE|\.PE)\??\.(\w+)", js)
    quoted = _names(r'"(\w+)"', js[js.index("const SIDE_FIELDS") : js.index("const QTY")])
    assert leg_reads and quoted and leg_reads | quoted <= LEG_KEYS
    assert "chains/contracts.py" in js[:600] and "Wire schema" in js[:600]  # the header points
