"""The feed worker's single steps against real Redis, the real channel layer and the database:
startup verification, every tick reaching its leg, malformed frames counted and survived,
snapshots and deltas published, snapshots persisted."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command

from brokers.dhan import encode
from brokers.exceptions import FeedConfigError
from brokers.models import AccountStatus, Instrument
from chains import store
from chains.feed.session import FeedSession
from chains.feed.tokens import PermanentFeedError
from chains.feed.worker import FeedWorker
from chains.models import ChainSnapshot
from tests.brokers.factories import dhan_account
from tests.chains.fixtures import EXPIRY, tracked

pytestmark = [pytest.mark.django_db(transaction=True)]
STRIKES = [25_900, 26_000, 26_100]  # one NIFTY chain (tracked(..., expiries=1)) of six legs


@pytest.fixture
def layer():
    return get_channel_layer()


async def ready_worker(tmp_path, redis_client, layer) -> FeedWorker:
    from asgiref.sync import sync_to_async

    await sync_to_async(tracked)(tmp_path, "dhan", expiries=1, strikes=STRIKES)
    worker = FeedWorker("main", channel_layer=layer, redis=redis_client)
    await worker.verify()
    assert await worker.lock.acquire()  # the one writer of its chains
    await worker.prepare()
    return worker


def leg_id(strike: int, option: str) -> str:
    return str(40000 + STRIKES.index(strike) * 2 + (option == "PE"))


# --- startup verification (the predecessor's silent failure) -----------------------------------


def test_runfeed_without_accounts_exits_naming_the_fix():
    with pytest.raises(CommandError, match=r"No enabled broker account.*syncaccounts"):
        call_command("runfeed")


def test_runfeed_without_token_exits_naming_the_fix(tmp_path):
    account = tracked(tmp_path, "dhan", expiries=1, strikes=STRIKES)
    account.set_access_token("")
    account.save()
    with pytest.raises(CommandError, match="no access token: paste the DhanHQ access token"):
        call_command("runfeed", "--account", "main")


def test_runfeed_unknown_account(tmp_path):
    with pytest.raises(CommandError, match="No broker account named 'ghost'"):
        call_command("runfeed", "--account", "ghost")


def test_runfeed_disabled_account(tmp_path):
    account = tracked(tmp_path, "dhan", expiries=1, strikes=STRIKES)
    account.enabled = False
    account.save()
    with pytest.raises(CommandError, match="is disabled: enable it"):
        call_command("runfeed", "--account", "main")


def test_runfeed_without_tracked_chains(tmp_path):
    dhan_account()
    with pytest.raises(CommandError, match="tracks no chain: add one in admin"):
        call_command("runfeed", "--account", "main")


def test_runfeed_without_instruments_for_the_chain(tmp_path):
    account = tracked(tmp_path, "dhan", expiries=1, strikes=STRIKES)
    Instrument.objects.filter(account=account, kind="option").delete()
    with pytest.raises(CommandError, match=r"no unexpired options.*loadinstruments --account main"):
        call_command("runfeed", "--account", "main")


# --- frames reach their legs -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_tick_reaches_its_own_leg(tmp_path, redis_client, layer):
    worker = await ready_worker(tmp_path, redis_client, layer)
    at = datetime.now(UTC).replace(microsecond=0)
    ce = leg_id(26_000, "CE")
    worker.handle_frame(encode.encode_ticker("IDX_I", 13, ltp=26_010.5, ltt=at), 1.0)
    worker.handle_frame(
        encode.encode_prev_close("NSE_FNO", ce, prev_close=100.0, prev_oi=5000), 1.0
    )
    worker.handle_frame(encode.encode_oi("NSE_FNO", ce, oi=6500), 1.1)
    worker.handle_frame(encode.encode_ticker("NSE_FNO", ce, ltp=112.25, ltt=at), 1.2)
    chain = next(iter(worker.book.chains.values()))
    leg = chain.legs[ce]
    assert (leg.ltp, leg.prev_close, leg.oi, leg.prev_oi) == (112.25, 100.0, 6500, 5000)
    assert chain.spot == 26_010.5
    assert worker.counters.ticks == 4


@pytest.mark.asyncio
async def test_malformed_frame_is_counted_and_skipped(tmp_path, redis_client, layer):
    worker = await ready_worker(tmp_path, redis_client, layer)
    good = encode.encode_ticker("NSE_FNO", leg_id(25_900, "PE"), ltp=55.5, ltt=None)
    worker.handle_frame(good + b"\x63" + struct.pack("<H", 9) + b"\x02" * 5, 1.0)  # unknown code
    worker.handle_frame(good[:9], 1.1)  # truncated
    worker.handle_frame("text?", 1.2)
    assert worker.counters.decode_errors == 3
    chain = next(iter(worker.book.chains.values()))
    assert chain.legs[leg_id(25_900, "PE")].ltp == 55.5  # the good packet before the bad one


@pytest.mark.asyncio
async def test_token_disconnect_is_permanent(tmp_path, redis_client, layer):
    worker = await ready_worker(tmp_path, redis_client, layer)
    with pytest.raises(PermanentFeedError, match="enter a new access token") as err:
        worker.handle_frame(encode.encode_disconnect(reason_code=807), 1.0)
    assert err.value.status == AccountStatus.TOKEN_EXPIRED


@pytest.mark.asyncio
async def test_flush_publishes_delta_and_snapshot(tmp_path, redis_client, layer):
    worker = await ready_worker(tmp_path, redis_client, layer)
    channel = await layer.new_channel()
    group = store.group_name("NIFTY", EXPIRY)
    await layer.group_add(group, channel)
    ce = leg_id(26_100, "CE")
    worker.handle_frame(encode.encode_ticker("IDX_I", 13, ltp=26_000.0, ltt=None), 1.0)
    worker.handle_frame(encode.encode_ticker("NSE_FNO", ce, ltp=80.5, ltt=None), 1.0)
    assert await worker.flush() == 1
    message = await layer.receive(channel)
    assert message["type"] == "chain.delta"
    assert message["seq"] == 1
    assert message["legs"]["26100"]["CE"]["ltp"] == 80.5
    assert message["header"]["spot"] == 26_000.0
    snapshot = await store.aread_snapshot(redis_client, "NIFTY", EXPIRY)
    assert snapshot["seq"] == 1
    assert snapshot["strikes"]["26100"]["CE"]["ltp"] == 80.5
    assert snapshot["account"] == "main"
    assert await worker.flush() == 0  # nothing changed, nothing sent
    await layer.group_discard(group, channel)


@pytest.mark.asyncio
async def test_persist_saves_the_last_known_chain(tmp_path, redis_client, layer):
    from asgiref.sync import sync_to_async

    worker = await ready_worker(tmp_path, redis_client, layer)
    worker.handle_frame(
        encode.encode_ticker("NSE_FNO", leg_id(26_000, "PE"), ltp=91.0, ltt=None), 1.0
    )
    await worker.flush()
    await worker.persist()
    row = await sync_to_async(ChainSnapshot.objects.get)(underlying="NIFTY", expiry=EXPIRY)
    assert row.seq == 1
    assert row.data["strikes"]["26000"]["PE"]["ltp"] == 91.0


@pytest.mark.asyncio
async def test_status_reports_counters(tmp_path, redis_client, layer):
    worker = await ready_worker(tmp_path, redis_client, layer)
    worker.handle_frame(encode.encode_ticker("NSE_FNO", "999999", ltp=1.0, ltt=None), 1.0)
    await worker.write_status()
    status = await store.aread_feed_status(redis_client, "main")
    assert status["frames"] == 1 and status["unrouted"] == 1
    assert status["chains"][0]["legs"] == 6
    assert status["chains"][0]["ready"] is False


@pytest.mark.asyncio
async def test_verify_raises_config_error_for_missing_token(tmp_path, redis_client, layer):
    from asgiref.sync import sync_to_async

    account = await sync_to_async(tracked)(tmp_path, "dhan", expiries=1, strikes=STRIKES)
    account.set_access_token("")
    await sync_to_async(account.save)()
    with pytest.raises(FeedConfigError):
        await FeedWorker("main", channel_layer=layer, redis=redis_client).verify()


# --- a backlog does not starve the worker's other tasks ------------------------------------------


class BacklogSocket:
    """A broker socket with ``frames`` already buffered: ``recv`` never waits, then it closes."""

    def __init__(self, frame: bytes, frames: int) -> None:
        self.frame, self.left = frame, frames

    async def recv(self) -> bytes:
        if not self.left:
            from websockets.exceptions import ConnectionClosedOK

            raise ConnectionClosedOK(None, None)
        self.left -= 1
        return self.frame


@pytest.mark.asyncio
async def test_a_backlog_of_frames_still_lets_flushes_and_status_run(tmp_path, redis_client, layer):
    import asyncio

    from websockets.exceptions import ConnectionClosed

    worker = await ready_worker(tmp_path, redis_client, layer)
    frame = encode.encode_ticker("NSE_FNO", int(leg_id(26_000, "CE")), ltp=101.5, ltt=None)
    total = 400_000  # a few tenths of a second of frames
    seen: list[int] = []

    async def other_task() -> None:  # stands for the flusher and the housekeeping
        while True:
            await asyncio.sleep(0.01)
            seen.append(worker.counters.frames)

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    session = FeedSession(
        account="main", adapter=worker.adapter, settings=worker.settings,
        counters=worker.counters, health=worker.health, handle=worker.handle_frame,
    )  # fmt: skip
    with pytest.raises(ConnectionClosed):
        await session.receive(BacklogSocket(frame, total), asyncio.Event())
    other.cancel()
    assert worker.counters.frames == total
    during = [n for n in seen if 0 < n < total]
    assert len(during) >= 2, f"the other task ran only at {sorted(set(seen))} frames"


# --- supervision ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_task_cancelled_by_something_else_is_a_failure_not_a_silent_end():
    import asyncio

    from chains.feed.supervision import TaskDied, guarded

    async def cancelled_from_inside() -> None:  # as a library's stray cancellation does
        raise asyncio.CancelledError

    with pytest.raises(TaskDied, match="status reporter was cancelled unexpectedly"):
        await guarded("status reporter", cancelled_from_inside(), asyncio.Event(), forever=True)


@pytest.mark.asyncio
async def test_a_task_that_should_run_until_stop_and_returns_is_a_failure():
    import asyncio

    from chains.feed.supervision import TaskDied, guarded

    async def returns() -> None:
        return None

    with pytest.raises(TaskDied, match="flusher ended by itself"):
        await guarded("flusher", returns(), asyncio.Event(), forever=True)
    stop = asyncio.Event()
    stop.set()
    await guarded("flusher", returns(), stop, forever=True)  # asked to stop: fine
    await guarded("REST prime", returns(), asyncio.Event(), forever=False)  # finite work


@pytest.mark.asyncio
async def test_a_cancellation_by_the_group_passes_through():
    import asyncio

    from chains.feed.supervision import guarded

    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(guarded("flusher", forever(), asyncio.Event(), forever=True))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_a_worker_that_lost_its_lock_writes_nothing(tmp_path, redis_client, layer):
    from chains.feed.publisher import LockLost
    from chains.ownership import lock_key

    worker = await ready_worker(tmp_path, redis_client, layer)
    ce = int(leg_id(26_000, "CE"))
    worker.handle_frame(encode.encode_ticker("NSE_FNO", ce, ltp=80.5, ltt=None), 1.0)
    await redis_client.set(lock_key("main"), "another-worker")  # its lock expired and was taken
    with pytest.raises(LockLost, match="another worker holds"):
        await worker.flush()
    chain = next(iter(worker.book.chains.values()))
    assert await store.aread_snapshot(redis_client, chain.underlying, chain.expiry) is None
    assert not await worker.write_status()  # nor its status over the holder's


@pytest.mark.asyncio
async def test_the_feed_status_lives_no_longer_than_the_lock(tmp_path, redis_client, layer):
    worker = await ready_worker(tmp_path, redis_client, layer)
    assert await worker.write_status()
    lock_ttl = await redis_client.pttl(worker.lock.key)
    status_ttl = await redis_client.pttl(store.feed_key("main"))  # read after: expires no later
    assert 0 < status_ttl <= lock_ttl
    status = store.read_feed_status("main")
    assert status["lock_held"] is True and status["heartbeat_seconds"] == 1.0


@pytest.mark.asyncio
async def test_a_lock_whose_key_vanished_is_taken_back_while_it_is_still_held(redis_client):
    from chains.ownership import FeedLock

    lock = FeedLock(redis_client, "main", ttl=10, margin=3)
    assert await lock.acquire() and lock.held()
    await redis_client.delete(lock.key)  # Redis restarted empty
    assert await lock.renew() and lock.take_key_lost()
    assert await redis_client.get(lock.key) == lock.token.encode()
    assert await lock.renew() and not lock.take_key_lost()
    await redis_client.delete(lock.key)  # again, and this time a write finds out first
    assert await lock.write_if_held([("optionsite:test:x", "1", None)])
    assert lock.take_key_lost() and await redis_client.get(lock.key) == lock.token.encode()
    await redis_client.set(lock.key, "another-worker")
    assert not await lock.renew() and not lock.held()
