"""REST repopulation: the newer-wins merge (pure), the optimistic snapshot write (real Redis),
and the service against the real simulator: when it fetches, who writes, what fails."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from brokers.accounts import load_account
from brokers.adapters import InstrumentRef, RestChain
from brokers.exchange import IST
from brokers.models import AccountStatus, BrokerAccount, TrackedChain
from chains import ownership, store
from chains.book import stored_snapshot
from chains.contracts import snapshot_meta
from chains.exceptions import RepopulateFailed, SnapshotContention
from chains.models import ChainSnapshot
from chains.outcomes import Outcome
from chains.ownership import lock_key
from chains.plan import ChainPlan, LegPlan, plan_chains
from chains.repopulate import chains_repopulate, merge_rest_chain
from tests.sim_wiring import tracked_chain

EXPIRY = date(2031, 1, 2)
STRIKES = [100.0, 110.0, 120.0, 130.0, 140.0]
T0 = datetime(2030, 12, 1, 4, 0, tzinfo=UTC)


def plan(window: int | None = None) -> ChainPlan:
    legs = [
        LegPlan(InstrumentRef("NSE_FNO", f"{int(k)}{side}"), k, side)
        for k in STRIKES
        for side in ("CE", "PE")
    ]
    return ChainPlan("NIFTY", EXPIRY, InstrumentRef("IDX_I", "13"), 75, window, legs)


def rest(spot: float = 120.0, bump: float = 0.0, **fields: Any) -> RestChain:
    rows = {}
    for k in STRIKES:
        for side in ("CE", "PE"):
            intrinsic = max(spot - k, 0.0) if side == "CE" else max(k - spot, 0.0)
            rows[f"{int(k)}{side}"] = {
                "ltp": round(intrinsic + 5.0 + bump, 2), "oi": 1000, "prev_close": 6.0,
                "prev_oi": 900, "volume": 500, **fields,
            }  # fmt: skip
    return RestChain(spot, rows)


def stored_at(as_of: datetime, chain: RestChain | None = None, *, p: ChainPlan | None = None):
    """A snapshot as a feed worker stores it, last flushed at ``as_of``."""
    book = (p or plan()).new_book()
    book.apply_rest((chain or rest()).spot, (chain or rest()).rows, as_of.timestamp() - 1)
    book.flush(as_of)
    return stored_snapshot(book, account="main", broker="dhan")


def merge(current: dict | None, chain: RestChain, fetched_at: datetime, p: ChainPlan | None = None):
    return merge_rest_chain(
        plan=p or plan(), current=current, rest=chain, observed_at=fetched_at.timestamp(),
        account="main", broker="dhan", now=fetched_at + timedelta(seconds=2),
    )  # fmt: skip


def leg(snapshot: dict, strike: str, side: str) -> dict:
    return snapshot["strikes"][strike][side]


# --- the merge (pure) ----------------------------------------------------------------------------


def test_rest_rows_newer_than_the_snapshot_replace_prices_and_advance_seq():
    current = stored_at(T0)
    snapshot, delta = merge(current, rest(bump=1.5), T0 + timedelta(minutes=1))
    assert leg(snapshot, "120", "CE")["ltp"] == 6.5
    assert snapshot["seq"] == current["seq"] + 1 == delta["seq"]
    assert snapshot["run"] == current["run"] == delta["run"]  # the stored writer's count goes on
    assert delta["legs"]["120"]["CE"]["ltp"] == 6.5
    assert snapshot["ready"] is True and snapshot["account"] == "main"


def test_a_snapshot_newer_than_the_fetch_is_kept():
    current = stored_at(T0 + timedelta(seconds=30))
    assert merge(current, rest(bump=9.0), T0) is None


def test_fields_the_rest_chain_lacks_keep_their_last_value():
    current = stored_at(T0)
    snapshot, _ = merge(current, rest(bump=1.0, volume=None, oi=None), T0 + timedelta(minutes=1))
    assert leg(snapshot, "110", "PE")["volume"] == 500
    assert leg(snapshot, "110", "PE")["oi"] == 1000
    assert leg(snapshot, "110", "PE")["oi_change"] == 100  # prev_oi carried through the seed


def test_a_rest_chain_that_changes_nothing_writes_nothing():
    current = stored_at(T0)
    assert merge(current, rest(), T0 + timedelta(minutes=1)) is None


def test_without_a_snapshot_the_strike_window_centres_on_the_rest_spot():
    snapshot, _ = merge(None, rest(spot=121.0), T0, p=plan(window=1))
    assert sorted(snapshot["strikes"]) == ["110", "120", "130"]
    assert snapshot["seq"] == 1


def test_the_stored_snapshot_strike_window_is_kept():
    narrow = plan(window=1).narrowed(100.0)  # the feed worker centred on 100: 100 and 110
    current = stored_at(T0, p=narrow)
    snapshot, _ = merge(current, rest(spot=140.0, bump=1.0), T0 + timedelta(minutes=1))
    assert sorted(snapshot["strikes"]) == ["100", "110"]


# --- the optimistic write (real Redis) -----------------------------------------------------------


def test_replace_snapshot_writes_the_chain_and_its_meta_record(clean_redis):
    snapshot = stored_at(T0)
    write = ownership.replace_snapshot("NIFTY", EXPIRY, lambda current: snapshot, owner_key="k")
    assert write.written == snapshot and not write.owned
    assert store.read_snapshot("NIFTY", EXPIRY) == snapshot
    assert store.read_meta("NIFTY", EXPIRY)["seq"] == snapshot["seq"]


def test_replace_snapshot_merges_again_on_what_another_writer_wrote_meanwhile(clean_redis):
    newer = stored_at(T0 + timedelta(minutes=5), rest(bump=3.0))
    other = store.async_client  # a second connection, like a feed worker's
    seen: list[dict | None] = []

    def racing_merge(current: dict | None) -> dict | None:
        seen.append(current)
        if len(seen) == 1:  # a feed worker flushes between our read and our write
            async_to_sync(_write_with_new_client)(other, newer)
        result = merge(current, rest(bump=1.0), T0 + timedelta(minutes=1))
        return None if result is None else result[0]

    write = ownership.replace_snapshot("NIFTY", EXPIRY, racing_merge, owner_key="k")
    assert [s and s["seq"] for s in seen] == [None, newer["seq"]]
    assert write.written is None  # the second merge found the newer snapshot and kept it
    assert store.read_snapshot("NIFTY", EXPIRY) == newer


async def _write_with_new_client(make_client, snapshot: dict) -> None:
    client = make_client()
    await store.write_snapshot(client, snapshot)
    await client.aclose()


def test_replace_snapshot_leaves_a_chain_whose_feed_worker_holds_the_lock(clean_redis):
    clean_redis.set(lock_key("main"), "worker-token")
    write = ownership.replace_snapshot(
        "NIFTY", EXPIRY, lambda current: stored_at(T0), owner_key=lock_key("main")
    )
    assert write.owned and write.written is None
    assert store.read_snapshot("NIFTY", EXPIRY) is None


def test_replace_snapshot_gives_up_when_always_overtaken(clean_redis):
    def always_overtaken(current: dict | None) -> dict:
        other = store.dumps(stored_at(T0 + timedelta(minutes=5)))  # another writer, every time
        clean_redis.set(store.chain_key("NIFTY", EXPIRY), other)
        return stored_at(T0)

    with pytest.raises(SnapshotContention, match="changed 3 times"):
        ownership.replace_snapshot("NIFTY", EXPIRY, always_overtaken, owner_key="k", attempts=3)


@pytest.mark.asyncio
async def test_rest_chains_handed_over_are_taken_once_in_order(clean_redis):
    first = ownership.RestHandover("NIFTY", EXPIRY, T0.timestamp(), 120.0, rest().rows)
    second = ownership.RestHandover("NIFTY", EXPIRY, T0.timestamp() + 60, None, {})
    ownership.hand_over_rest_chain("main", first)
    ownership.hand_over_rest_chain("main", second)
    client = store.async_client()
    try:
        assert await ownership.take_rest_chains(client, "main") == [first, second]
        assert await ownership.take_rest_chains(client, "main") == []
    finally:
        await client.aclose()
    assert not clean_redis.exists(ownership.rest_key("main"))


# --- the service against the simulator -----------------------------------------------------------


def run(**kwargs: Any) -> Outcome:
    outcome = Outcome()
    chains_repopulate(outcome=outcome, **kwargs)
    return outcome


def feed_status(account: str, state: str, *, reported_ago: float = 0.0) -> None:
    """A feed worker's status record, as it wrote it ``reported_ago`` seconds ago."""
    from tests.chains.test_freshness import feed_record

    now = datetime.now(UTC) - timedelta(seconds=reported_ago)
    record = feed_record(now, state=state, account=account, broker="upstox")
    store.sync_client().set(store.feed_key(account), json.dumps(record), ex=60)


def stored_meta(account: str, underlying: str, expiry: date, *, ready: bool) -> None:
    """Only the meta record of the chain's snapshot, as a writer stores it beside one, saying
    whether the chain is ``ready`` (the snapshot itself is not stored)."""
    found = load_account(account)
    plan = next(p for p in plan_chains(found) if (p.underlying, p.expiry) == (underlying, expiry))
    snapshot = stored_snapshot(plan.new_book(), account=account, broker=found.kind)
    snapshot["ready"], snapshot["seq"] = ready, 7
    meta = store.dumps(snapshot_meta(snapshot))
    store.sync_client().set(store.meta_key(underlying, expiry), meta)


@pytest.mark.django_db
@pytest.mark.integration
def test_without_a_feed_the_chain_is_written_saved_and_published(wired):
    wired.fault(action="market", status="closed")  # prices hold still: compare with the truth
    underlying, expiry = tracked_chain("sim-upstox")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(store.group_name(underlying, expiry), channel)
    outcome = run(account="sim-upstox")
    assert "legs from REST written" in outcome.detail
    snapshot = store.read_snapshot(underlying, expiry)
    assert snapshot["ready"] and snapshot["seq"] == 1 and snapshot["account"] == "sim-upstox"
    truth = {i["upstox_key"]: i for i in wired.state()["instruments"] if i["kind"] == "option"}
    for sides in snapshot["strikes"].values():
        for shown in sides.values():
            real = truth[shown["instrument_id"]]
            assert (shown["oi"], shown["ltp"]) == (real["oi"], round(real["ltp"], 2))
    row = ChainSnapshot.objects.get(underlying=underlying, expiry=expiry)
    assert row.seq == 1 and row.data["strikes"] == snapshot["strikes"]
    delta = async_to_sync(layer.receive)(channel)
    assert delta["type"] == "chain.delta" and delta["seq"] == 1


@pytest.mark.django_db
@pytest.mark.integration
def test_dhan_chains_are_fetched_within_its_rate_limit(wired):
    TrackedChain.objects.filter(account__name="sim-dhan").update(expiries=2)
    started = datetime.now(UTC)
    outcome = run(account="sim-dhan")
    assert outcome.detail.count("legs from REST written") == 2
    assert datetime.now(UTC) - started >= timedelta(seconds=2.9)  # one option chain per 3 s
    assert wired.state(instruments=False)["faults"]["rest_errors"] == {}


@pytest.mark.django_db
@pytest.mark.integration
def test_a_live_feed_keeps_its_ready_chains_and_nothing_is_fetched(wired):
    underlying, expiry = tracked_chain("sim-upstox")
    feed_status("sim-upstox", "live")
    stored_meta("sim-upstox", underlying, expiry, ready=True)
    outcome = run(account="sim-upstox")
    assert "fed live, skipped" in outcome.detail
    assert store.read_snapshot(underlying, expiry) is None


@pytest.mark.django_db
@pytest.mark.integration
def test_a_worker_that_stopped_reporting_is_not_trusted_to_keep_the_chain(wired):
    """A killed or frozen worker's record outlives it for seconds; its state still reads
    live, but its heartbeat is old: the chain is fetched."""
    underlying, expiry = tracked_chain("sim-upstox")
    feed_status("sim-upstox", "live", reported_ago=30)
    stored_meta("sim-upstox", underlying, expiry, ready=True)
    outcome = run(account="sim-upstox")
    assert "written" in outcome.detail and "fed live" not in outcome.detail


# Moments of the exchange calendar (IST): a Saturday, Christmas 2026 (a seeded holiday), and a
# Tuesday inside the session.
SATURDAY = datetime(2026, 12, 5, 11, 0, tzinfo=IST)
CHRISTMAS = datetime(2026, 12, 25, 9, 15, tzinfo=IST)
TUESDAY_OPEN = datetime(2026, 12, 1, 11, 0, tzinfo=IST)
TUESDAY_EVENING = datetime(2026, 12, 1, 15, 35, tzinfo=IST)


@pytest.mark.django_db
@pytest.mark.integration
@pytest.mark.parametrize(
    ("now", "force", "said"),
    [(SATURDAY, False, "weekend"), (CHRISTMAS, True, "holiday: Christmas"),
     (TUESDAY_EVENING, False, "after close")],
)  # fmt: skip
def test_the_beats_runs_skip_a_closed_market_and_say_why(wired, now, force, said):
    underlying, expiry = tracked_chain("sim-upstox")
    outcome = run(account="sim-upstox", calendar=True, now=now, force=force)
    assert f"{underlying} {expiry.isoformat()}: market closed ({said}), skipped" in outcome.detail
    assert store.read_snapshot(underlying, expiry) is None


@pytest.mark.django_db
@pytest.mark.integration
@pytest.mark.parametrize(("now", "force"), [(TUESDAY_OPEN, False), (TUESDAY_EVENING, True)])
def test_the_beats_runs_fetch_while_the_exchange_trades(wired, now, force):
    underlying, expiry = tracked_chain("sim-upstox")
    outcome = run(account="sim-upstox", calendar=True, now=now, force=force)
    assert "legs from REST written" in outcome.detail
    assert store.read_snapshot(underlying, expiry) is not None


@pytest.mark.django_db
@pytest.mark.integration
def test_a_not_ready_chain_is_fetched_although_the_feed_is_live(wired):
    underlying, expiry = tracked_chain("sim-upstox")
    feed_status("sim-upstox", "quiet")
    stored_meta("sim-upstox", underlying, expiry, ready=False)
    outcome = run(account="sim-upstox")
    assert "written" in outcome.detail
    assert store.read_snapshot(underlying, expiry)["ready"]


@pytest.mark.django_db
@pytest.mark.integration
def test_forced_run_hands_the_chain_to_the_feed_worker_that_holds_the_account(wired):
    underlying, expiry = tracked_chain("sim-upstox")
    feed_status("sim-upstox", "live")
    stored_meta("sim-upstox", underlying, expiry, ready=True)
    store.sync_client().set(lock_key("sim-upstox"), "held")
    outcome = run(account="sim-upstox", force=True)
    assert "handed to the running feed worker" in outcome.detail
    assert store.read_snapshot(underlying, expiry) is None  # the one writer writes, not the task
    handed = store.sync_client().lrange(ownership.rest_key("sim-upstox"), 0, -1)
    assert len(handed) == 1 and underlying.encode() in handed[0]
    assert not ChainSnapshot.objects.exists()


@pytest.mark.django_db
@pytest.mark.integration
def test_a_refused_token_fails_the_run_and_marks_the_account(wired):
    wired.fault(action="revoke_token", broker="upstox")
    with pytest.raises(
        RepopulateFailed, match=r"sim-upstox BANKNIFTY .*Upstox rejected the access"
    ):
        run(account="sim-upstox")
    account = BrokerAccount.objects.get(name="sim-upstox")
    assert account.status == AccountStatus.TOKEN_EXPIRED
    assert "log in again" in account.last_error


@pytest.mark.django_db
@pytest.mark.integration
def test_an_account_without_token_fails_the_run_saying_what_to_do(wired):
    account = BrokerAccount.objects.get(name="sim-dhan")
    account.set_access_token("")
    account.save()
    with pytest.raises(RepopulateFailed, match=r"sim-dhan.*no access token: paste the DhanHQ"):
        run()
    assert store.read_snapshot(*tracked_chain("sim-upstox"))["account"] == "sim-upstox"


@pytest.mark.django_db
@pytest.mark.integration
def test_a_transient_broker_failure_fails_the_run_and_keeps_the_account_status(wired):
    wired.fault(action="rest_error", broker="upstox", status=503, seconds=60)
    with pytest.raises(RepopulateFailed, match=r"busy or failing|internal server error"):
        run(account="sim-upstox")
    account = BrokerAccount.objects.get(name="sim-upstox")
    assert account.status == AccountStatus.OK
    assert store.read_snapshot(*tracked_chain("sim-upstox")) is None
