"""REST chains handed to the feed worker by the repopulate task: the worker, the chain's one
writer, merges them newer-wins and publishes them with its own sequence numbers."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer

from brokers.dhan import encode
from chains import ownership, store
from tests.chains.feed.test_worker_steps import EXPIRY, leg_id, ready_worker

pytestmark = [pytest.mark.django_db(transaction=True)]


def handed(observed_at: float, rows: dict, *, spot: float | None = 26_000.0, expiry=EXPIRY):
    return ownership.RestHandover("NIFTY", expiry, observed_at, spot, rows)


@pytest.mark.asyncio
async def test_a_handed_over_rest_chain_is_merged_and_published_by_the_worker(
    tmp_path, redis_client
):
    worker = await ready_worker(tmp_path, redis_client, get_channel_layer())
    ce = leg_id(26_000, "CE")
    ownership.hand_over_rest_chain("main", handed(time.time(), {ce: {"ltp": 120.5, "oi": 4000}}))
    assert await worker.apply_rest_chains() == 1
    assert await worker.flush() == 1
    snapshot = await store.aread_snapshot(redis_client, "NIFTY", EXPIRY)
    assert snapshot["strikes"]["26000"]["CE"]["ltp"] == 120.5
    assert snapshot["spot"] == 26_000.0 and snapshot["seq"] == 1
    assert worker.status()["rest_legs"] == 1
    assert await ownership.take_rest_chains(redis_client, "main") == []  # taken once


@pytest.mark.asyncio
async def test_a_tick_newer_than_the_rest_fetch_is_kept(tmp_path, redis_client):
    worker = await ready_worker(tmp_path, redis_client, get_channel_layer())
    pe = leg_id(25_900, "PE")
    fetched = time.time()
    worker.handle_frame(encode.encode_ticker("NSE_FNO", pe, ltp=44.0, ltt=None), fetched + 0.5)
    ownership.hand_over_rest_chain("main", handed(fetched, {pe: {"ltp": 40.0}}))
    assert await worker.apply_rest_chains() == 0
    chain = next(iter(worker.book.chains.values()))
    assert chain.legs[pe].ltp == 44.0


@pytest.mark.asyncio
async def test_rest_chains_wait_in_the_queue_until_the_worker_is_prepared(tmp_path, redis_client):
    worker = await ready_worker(tmp_path, redis_client, get_channel_layer())
    book, worker.book = worker.book, None  # as between lock acquisition and prepare()
    ownership.hand_over_rest_chain(
        "main", handed(time.time(), {leg_id(26_100, "CE"): {"ltp": 9.0}})
    )
    assert await worker.apply_rest_chains() == 0
    worker.book = book
    assert await worker.apply_rest_chains() == 1


@pytest.mark.asyncio
async def test_a_rest_chain_the_worker_does_not_follow_is_skipped(tmp_path, redis_client):
    worker = await ready_worker(tmp_path, redis_client, get_channel_layer())
    other = handed(time.time(), {"99999": {"ltp": 1.0}}, expiry=EXPIRY + timedelta(days=7))
    ownership.hand_over_rest_chain("main", other)
    assert await worker.apply_rest_chains() == 0
    assert await worker.flush() == 0
