"""Broker rate limits are the account's, shared by every process through Redis: against the real
simulator, which enforces DhanHQ's limits and refuses the excess with HTTP 429 DH-904.

Each caller runs in a thread of its own with its own event loop, its own adapter from its own
``adapter_for`` call and so its own Redis client — as the feed worker, a Celery task and an admin
action each do in their own process; what they share is the account's budget in Redis. The
answers are recorded where they enter the process (httpx's transport), not in our code.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from unittest import mock

import httpx
import pytest
import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.db import connections

from brokers.accounts import config_of
from brokers.adapters import InstrumentRef, RestChain, adapter_for
from brokers.connections import async_client, client_options
from brokers.exceptions import BrokerError
from brokers.models import BrokerAccount, TrackedChain
from brokers.ratelimit import SlotBook, shared_dhan_limiters
from chains.feed.worker import FeedWorker
from chains.outcomes import Outcome
from chains.repopulate import chains_repopulate
from tests.brokers.test_ratelimit import redis_server
from tests.processes import free_port
from tests.sim_wiring import tracked_chain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

ACCOUNT = "sim-dhan"
T = TypeVar("T")


@pytest.fixture
def answers() -> Iterator[list[tuple[str, int]]]:
    """(path, HTTP status) of every answer any async HTTP client of this process received."""
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()
    send = httpx.AsyncHTTPTransport.handle_async_request

    async def record(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        response = await send(self, request)
        with lock:
            seen.append((request.url.path, response.status_code))
        return response

    with mock.patch.object(
        httpx.AsyncHTTPTransport, "handle_async_request", autospec=True, side_effect=record
    ):
        yield seen


def refused(answers: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The simulator's refusals among ``answers`` (it answers excess with HTTP 429 DH-904)."""
    return [(path, status) for path, status in answers if status == 429]


def chain_requests(answers: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(path, status) for path, status in answers if path.endswith("/v2/optionchain")]


def run_at_once(callers: dict[str, Callable[[], T]]) -> dict[str, T | Exception]:
    """Run every caller in its own thread, all released together; their results by name."""
    start = threading.Barrier(len(callers))
    results: dict[str, T | Exception] = {}

    def run(name: str, caller: Callable[[], T]) -> None:
        start.wait()
        try:
            results[name] = caller()
        except Exception as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            results[name] = exc
        finally:
            connections.close_all()  # this thread's database connections

    threads = [
        threading.Thread(target=run, args=(name, caller), name=name)
        for name, caller in callers.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def in_own_loop(make: Callable[[], Awaitable[T]]) -> Callable[[], T]:
    """A caller that runs ``make()`` in an event loop of its own (as a process would)."""

    def caller() -> T:
        async def main() -> T:
            return await make()

        return asyncio.run(main())

    return caller


def tracked_index() -> InstrumentRef:
    tracked = TrackedChain.objects.select_related("index_instrument").get(account__name=ACCOUNT)
    index = tracked.index_instrument
    return InstrumentRef(index.segment, index.broker_id)


def test_adapters_of_one_account_in_separate_loops_are_never_refused_an_option_chain(
    wired: Any, answers: list[tuple[str, int]]
) -> None:
    config = config_of(BrokerAccount.objects.get(name=ACCOUNT))
    _underlying, expiry = tracked_chain(ACCOUNT)
    index = tracked_index()

    async def fetch() -> RestChain:
        adapter = adapter_for(config)  # as the feed worker, repopulate and an admin action do
        try:
            return await adapter.option_chain(index, expiry)
        finally:
            await adapter.aclose()

    results = run_at_once(
        {name: in_own_loop(fetch) for name in ("feed worker", "repopulate", "admin action")}
    )

    for name, result in results.items():
        assert isinstance(result, RestChain), (name, result)
        assert result.rows, name
    assert refused(answers) == []
    assert len(chain_requests(answers)) == 3  # each caller's own request reached the broker


def test_feed_worker_prime_and_repopulate_and_an_admin_action_share_the_accounts_budget(
    wired: Any, answers: list[tuple[str, int]]
) -> None:
    config = config_of(BrokerAccount.objects.get(name=ACCOUNT))
    _underlying, expiry = tracked_chain(ACCOUNT)
    index = tracked_index()

    async def feed_worker_prime() -> dict[str, Any]:
        redis = async_client()
        worker = FeedWorker(ACCOUNT, channel_layer=get_channel_layer(), redis=redis)
        try:
            await worker.verify()
            await worker.prepare()
            await worker.prime()
            assert worker.book is not None
            return {key: chain.stats() for key, chain in worker.book.chains.items()}
        finally:
            if worker.adapter is not None:
                await worker.adapter.aclose()
            await redis.aclose()

    def repopulate() -> list[str]:
        outcome = Outcome()
        chains_repopulate(outcome=outcome, account=ACCOUNT, force=True)
        return outcome.lines

    async def admin_action() -> RestChain:
        adapter = adapter_for(config)
        try:
            return await adapter.option_chain(index, expiry)
        finally:
            await adapter.aclose()

    results = run_at_once(
        {
            "feed worker": in_own_loop(feed_worker_prime),
            "repopulate": repopulate,
            "admin action": in_own_loop(admin_action),
        }
    )

    primed = results["feed worker"]
    assert isinstance(primed, dict), primed
    assert all(stats["legs_priced"] > 0 for stats in primed.values()), primed
    lines = results["repopulate"]
    assert isinstance(lines, list), lines
    assert any(expiry.isoformat() in line for line in lines), lines
    assert isinstance(results["admin action"], RestChain), results["admin action"]
    assert refused(answers) == []
    assert len(chain_requests(answers)) == 3


@pytest.mark.asyncio
async def test_a_redis_outage_stops_requests_with_a_transient_error_until_redis_is_back() -> None:
    port = free_port()
    client = aioredis.Redis(port=port, **client_options())  # type: ignore[arg-type]
    limiters = shared_dhan_limiters(SlotBook(ACCOUNT, broker="dhan", redis=client))
    try:
        with redis_server(port) as server:
            await limiters.non_trading.acquire()
            server.terminate()
            server.wait(timeout=20)
            with pytest.raises(BrokerError) as refused:
                await limiters.non_trading.acquire()
        assert refused.value.permanent is False
        assert refused.value.code == "ratelimit-unavailable"
        assert "Check that Redis (REDIS_URL) is running" in str(refused.value)
        with redis_server(port):  # back (empty): the same client reserves again
            await limiters.non_trading.acquire()
    finally:
        await client.aclose()
