"""Rate limiters, measured on a virtual clock: no test here really sleeps.

The in-process limiters run on virtual time. The limiters shared through Redis run against a
real redis-server of this module's own (a schedule must not be reset halfway by whatever else
uses or flushes the shared test database), with an injected clock, or Redis's own clock where a
test says so; their assertions are on the reserved start times the limiters return, which are
computed, never on how long anything took.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import date

import httpx
import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from brokers.adapters import AccountConfig, adapter_for
from brokers.connections import client_options
from brokers.dhan.adapter import DhanAdapter
from brokers.dhan.rest import DhanRestClient
from brokers.exceptions import BrokerError
from brokers.http import NO_RETRY
from brokers.ratelimit import (
    KEY_PREFIX,
    CombinedLimiter,
    SharedLimiter,
    SharedUniqueRequestLimiter,
    SlidingWindowLimiter,
    SlotBook,
    SpacingLimiter,
    UniqueRequestLimiter,
    Window,
    dhan_limiters,
    shared_dhan_limiters,
    shared_upstox_limiter,
    upstox_limiter,
)
from brokers.secret import Secret
from brokers.upstox.adapter import UpstoxAdapter
from tests.processes import eventually, free_port

EPS = 1e-9


class VirtualTime:
    """A clock and an async sleep on virtual time.

    ``sleep`` parks the caller on a timer heap; a driver task lets every runnable task reach
    its next ``await``, then jumps the clock to the earliest timer and wakes that sleeper.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (self.now + max(delay, 0.0), next(self._seq), wake))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await wake

    async def _drive(self) -> None:
        while True:
            for _ in range(50):  # let every runnable task reach its next await
                await asyncio.sleep(0)
            if not self._timers:
                return
            when, _, wake = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not wake.done():
                wake.set_result(None)


def spacing_ok(starts: list[float], interval: float) -> bool:
    ordered = sorted(starts)
    return all(b - a >= interval - EPS for a, b in itertools.pairwise(ordered))


@pytest.mark.asyncio
async def test_ten_concurrent_callers_start_at_least_one_interval_apart() -> None:
    vt = VirtualTime()
    limiter = SpacingLimiter(rate=5, period=1.0, clock=vt.clock, sleep=vt.sleep)
    starts: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        starts.append(vt.clock())

    await asyncio.gather(*(caller() for _ in range(10)))

    assert len(starts) == 10
    assert spacing_ok(starts, 0.2)
    assert min(starts) == 0.0
    assert max(starts) == pytest.approx(1.8)  # no caller waited longer than needed


@pytest.mark.asyncio
async def test_acquire_returns_the_booked_start_time() -> None:
    vt = VirtualTime(start=100.0)
    limiter = SpacingLimiter(rate=1, period=1.0, clock=vt.clock, sleep=vt.sleep)
    slots = await asyncio.gather(*(limiter.acquire() for _ in range(3)))
    assert sorted(slots) == [100.0, 101.0, 102.0]


@pytest.mark.asyncio
async def test_idle_limiter_lets_the_next_request_start_without_sleeping() -> None:
    vt = VirtualTime()
    limiter = SpacingLimiter(rate=1, period=1.0, clock=vt.clock, sleep=vt.sleep)
    await limiter.acquire()
    vt.advance(5.0)
    await limiter.acquire()
    assert vt.sleeps == []


@pytest.mark.asyncio
async def test_request_soon_after_the_last_waits_only_for_the_rest_of_the_interval() -> None:
    vt = VirtualTime()
    limiter = SpacingLimiter(rate=1, period=1.0, clock=vt.clock, sleep=vt.sleep)
    await limiter.acquire()
    vt.advance(0.7)
    await limiter.acquire()
    assert vt.sleeps == [pytest.approx(0.3)]


@pytest.mark.asyncio
async def test_cancelled_waiter_keeps_later_callers_spaced() -> None:
    vt = VirtualTime()
    limiter = SpacingLimiter(rate=1, period=1.0, clock=vt.clock, sleep=vt.sleep)
    await limiter.acquire()
    doomed = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    doomed.cancel()
    start = await limiter.acquire()
    assert start == pytest.approx(2.0)  # the cancelled slot is left unused, never reused early


@pytest.mark.parametrize("rate", [0, -1, 1.5, True])
def test_spacing_limiter_rejects_a_rate_that_is_not_a_positive_int(rate: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        SpacingLimiter(rate=rate, period=1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("period", [0, -1.0])
def test_spacing_limiter_rejects_a_period_that_is_not_positive(period: float) -> None:
    with pytest.raises(ValueError, match="period"):
        SpacingLimiter(rate=1, period=period)


def test_window_limiter_rejects_a_bad_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        SlidingWindowLimiter(limit=0, period=1.0)


def test_combined_limiter_needs_a_part() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CombinedLimiter()


@pytest.mark.asyncio
async def test_window_limiter_allows_a_burst_then_waits_for_the_window() -> None:
    vt = VirtualTime()
    limiter = SlidingWindowLimiter(limit=3, period=1.0, clock=vt.clock, sleep=vt.sleep)
    starts = await asyncio.gather(*(limiter.acquire() for _ in range(7)))
    assert sorted(starts) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0]


@pytest.mark.asyncio
async def test_combined_limiter_honours_every_part() -> None:
    vt = VirtualTime()
    spacing = SpacingLimiter(rate=10, period=1.0, clock=vt.clock, sleep=vt.sleep)
    window = SlidingWindowLimiter(limit=3, period=1.0, clock=vt.clock, sleep=vt.sleep)
    limiter = CombinedLimiter(spacing, window, clock=vt.clock, sleep=vt.sleep)
    starts = sorted(await asyncio.gather(*(limiter.acquire() for _ in range(7))))

    assert starts == pytest.approx([0.0, 0.1, 0.2, 1.0, 1.1, 1.2, 2.0])
    assert spacing_ok(starts, 0.1)
    for start in starts:
        assert sum(1 for s in starts if start - 1.0 < s <= start) <= 3


@pytest.mark.asyncio
async def test_shared_part_spaces_callers_of_different_combinations() -> None:
    vt = VirtualTime()
    data = SpacingLimiter(rate=5, period=1.0, clock=vt.clock, sleep=vt.sleep)
    chain = UniqueRequestLimiter(interval=3.0, clock=vt.clock, sleep=vt.sleep)
    chain_and_data = CombinedLimiter(chain, data, clock=vt.clock, sleep=vt.sleep)
    starts = await asyncio.gather(chain_and_data.acquire(), data.acquire(), data.acquire())
    # the plain data callers still queue behind the chain request's data slot
    assert sorted(starts) == pytest.approx([0.0, 0.2, 0.4])
    assert await chain_and_data.acquire() == pytest.approx(3.0)


@pytest.mark.asyncio
async def test_distinct_option_chain_requests_start_three_seconds_apart() -> None:
    vt = VirtualTime()
    limiter = UniqueRequestLimiter(interval=3.0, clock=vt.clock, sleep=vt.sleep)
    starts: dict[str, float] = {}

    async def fetch(key: str) -> str:
        async def call() -> str:
            await limiter.acquire()
            starts[key] = vt.clock()
            return key

        return await limiter.run(key, call)

    results = await asyncio.gather(*(fetch(f"expiry-{i}") for i in range(10)))

    assert results == [f"expiry-{i}" for i in range(10)]
    assert spacing_ok(list(starts.values()), 3.0)


@pytest.mark.asyncio
async def test_identical_concurrent_requests_share_one_call() -> None:
    vt = VirtualTime()
    limiter = UniqueRequestLimiter(interval=3.0, clock=vt.clock, sleep=vt.sleep)
    calls = 0

    async def call() -> tuple[str, int]:
        nonlocal calls
        calls += 1
        await limiter.acquire()
        await vt.sleep(0.5)  # the request is on the wire
        return ("chain", calls)

    results = await asyncio.gather(*(limiter.run("NIFTY", call) for _ in range(5)))
    assert calls == 1
    assert results == [("chain", 1)] * 5


@pytest.mark.asyncio
async def test_identical_request_within_the_window_reuses_the_result() -> None:
    vt = VirtualTime()
    limiter = UniqueRequestLimiter(interval=3.0, clock=vt.clock, sleep=vt.sleep)
    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        await limiter.acquire()
        return calls

    assert await limiter.run("NIFTY", call) == 1
    vt.advance(2.9)
    assert await limiter.run("NIFTY", call) == 1
    vt.advance(0.2)  # 3.1 s after it finished: stale
    assert await limiter.run("NIFTY", call) == 2
    assert calls == 2


@pytest.mark.asyncio
async def test_zero_reuse_window_still_shares_in_flight_calls_but_not_results() -> None:
    vt = VirtualTime()
    limiter = UniqueRequestLimiter(interval=3.0, reuse_window=0, clock=vt.clock, sleep=vt.sleep)
    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        await limiter.acquire()
        await vt.sleep(0.1)
        return calls

    assert await asyncio.gather(limiter.run("k", call), limiter.run("k", call)) == [1, 1]
    start = vt.clock()
    assert await limiter.run("k", call) == 2
    assert vt.clock() - start >= 2.9 - EPS  # sent again, and spaced


def test_negative_reuse_window_is_refused() -> None:
    with pytest.raises(ValueError, match="reuse_window"):
        UniqueRequestLimiter(interval=3.0, reuse_window=-1)


@pytest.mark.asyncio
async def test_failed_call_reaches_every_waiter_and_is_not_reused() -> None:
    vt = VirtualTime()
    limiter = UniqueRequestLimiter(interval=3.0, clock=vt.clock, sleep=vt.sleep)
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await limiter.acquire()
        await vt.sleep(0.1)
        raise RuntimeError("broker down")

    results = await asyncio.gather(
        limiter.run("k", failing), limiter.run("k", failing), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)

    async def working() -> str:
        await limiter.acquire()
        return "fresh"

    assert await limiter.run("k", working) == "fresh"


@pytest.mark.asyncio
async def test_cancelling_one_waiter_does_not_cancel_the_shared_call() -> None:
    vt = VirtualTime()
    limiter = UniqueRequestLimiter(interval=3.0, clock=vt.clock, sleep=vt.sleep)

    async def call() -> str:
        await limiter.acquire()
        await vt.sleep(1.0)
        return "chain"

    first = asyncio.ensure_future(limiter.run("k", call))
    second = asyncio.ensure_future(limiter.run("k", call))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "chain"
    with pytest.raises(asyncio.CancelledError):
        await first


def test_dhan_limiters_have_the_documented_rates() -> None:
    limits = dhan_limiters()
    assert limits.data.interval == pytest.approx(0.2)  # type: ignore[attr-defined]
    assert limits.quotes.interval == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert limits.option_chain.interval == pytest.approx(3.5)  # DhanHQ's 3 s, with a margin
    assert limits.option_chain.reuse_window == pytest.approx(3.5)
    assert limits.non_trading.interval == pytest.approx(0.05)  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_upstox_limiter_spaces_at_50_per_second_and_caps_the_minute_at_500() -> None:
    vt = VirtualTime()
    limiter = upstox_limiter(clock=vt.clock, sleep=vt.sleep)
    starts = [await limiter.acquire() for _ in range(501)]
    assert spacing_ok(starts, 0.02)
    assert starts[499] == pytest.approx(9.98)
    assert starts[500] == pytest.approx(60.0)  # the 501st waits for the minute window


@given(gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=30))
def test_sequential_starts_are_spaced_and_never_later_than_needed(gaps: list[float]) -> None:
    async def scenario() -> None:
        vt = VirtualTime()
        limiter = SpacingLimiter(rate=2, period=1.0, clock=vt.clock, sleep=vt.sleep)
        previous: float | None = None
        for gap in gaps:
            vt.advance(gap)
            arrival = vt.clock()
            start = await limiter.acquire()
            expected = arrival if previous is None else max(arrival, previous + 0.5)
            assert start == pytest.approx(expected)
            assert vt.clock() == pytest.approx(start)
            previous = start

    asyncio.run(scenario())


# --- shared through Redis ----------------------------------------------------------------------


class FrozenTime:
    """A clock that moves only when the test moves it, and a sleep that records its delay and
    returns at once: every reservation is computed against the time the test set."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await asyncio.sleep(0)


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of the test's own on ``port`` (no persistence), stopped on exit."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        probe = redis.Redis(port=port, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(probe.ping())
            except redis.ConnectionError:
                return False

        eventually(answers, timeout=20, what=f"redis-server on port {port}")
        probe.close()
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    port = free_port()
    with redis_server(port):
        yield port


@pytest.fixture
def accounts(redis_port: int) -> Iterator[list[str]]:
    """Two fresh account names; their keys are deleted afterwards."""
    names = [f"test-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    yield names
    with redis.Redis(port=redis_port) as client:
        for name in names:
            keys = list(client.scan_iter(f"{KEY_PREFIX}{name}:*"))
            if keys:
                client.delete(*keys)


@pytest_asyncio.fixture
async def clients(redis_port: int) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    """Two Redis clients of their own, as two processes hold."""
    options = client_options()
    first = aioredis.Redis(port=redis_port, **options)  # type: ignore[arg-type]
    second = aioredis.Redis(port=redis_port, **options)  # type: ignore[arg-type]
    yield first, second
    await first.aclose()
    await second.aclose()


def spacings(slots: list[float]) -> list[float]:
    ordered = sorted(slots)
    return [round(b - a, 6) for a, b in itertools.pairwise(ordered)]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_two_processes_of_one_account_reserve_option_chains_3_5_s_apart(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(1000.0)
    books = [SlotBook(accounts[0], broker="dhan", redis=c, clock=time.clock) for c in clients]
    first, second = (shared_dhan_limiters(b, sleep=time.sleep).option_chain for b in books)
    got: dict[str, list[float]] = {"first": [], "second": []}

    async def caller(name: str, limiter: SharedUniqueRequestLimiter) -> None:
        for _ in range(5):
            got[name].append(await limiter.acquire())

    await asyncio.gather(caller("first", first), caller("second", second))

    slots = got["first"] + got["second"]
    assert sorted(slots) == pytest.approx([1000.0 + 3.5 * i for i in range(10)])
    assert len(set(slots)) == 10  # no slot handed out twice
    assert sorted(time.sleeps) == pytest.approx([3.5 * i for i in range(1, 10)])


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_process_waits_only_for_the_rest_of_another_ones_interval(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(50.0)
    first, second = (
        shared_dhan_limiters(
            SlotBook(accounts[0], broker="dhan", redis=c, clock=time.clock), sleep=time.sleep
        ).option_chain
        for c in clients
    )
    assert await first.acquire() == pytest.approx(50.0)
    time.now = 51.0
    assert await second.acquire() == pytest.approx(53.5)
    assert time.sleeps == [pytest.approx(2.5)]
    time.now = 60.0  # idle long enough: the next request starts at once
    assert await first.acquire() == pytest.approx(60.0)
    assert time.sleeps == [pytest.approx(2.5)]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_upstox_windows_hold_across_two_processes_as_in_one(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(0.0)
    shared = [
        shared_upstox_limiter(
            SlotBook(accounts[0], broker="upstox", redis=c, clock=time.clock), sleep=time.sleep
        )
        for c in clients
    ]
    slots: list[float] = []

    async def caller(limiter: SharedLimiter) -> None:
        for _ in range(1000):
            slots.append(await limiter.acquire())

    await asyncio.gather(*(caller(limiter) for limiter in shared))
    slots.append(await shared[0].acquire())

    alone = upstox_limiter(clock=time.clock, sleep=time.sleep)  # the same profile, one process
    expected = [await alone.acquire() for _ in range(2001)]
    assert sorted(slots) == pytest.approx(expected)
    assert expected[499] == pytest.approx(9.98)  # 50/s, spaced
    assert expected[500] == pytest.approx(60.0)  # the 501st waits for the minute window
    assert expected[2000] == pytest.approx(1800.0)  # the 2001st waits for the 30-minute one
    assert min(spacings(slots)) >= 0.02


@pytest.mark.integration
@pytest.mark.asyncio
async def test_accounts_do_not_share_a_budget(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(10.0)
    limiters = [
        shared_dhan_limiters(
            SlotBook(name, broker="dhan", redis=c, clock=time.clock), sleep=time.sleep
        ).option_chain
        for name, c in zip(accounts, clients, strict=True)
    ]
    assert [await limiter.acquire() for limiter in limiters] == [10.0, 10.0]
    assert [await limiter.acquire() for limiter in limiters] == [13.5, 13.5]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_an_option_chain_request_also_books_the_data_class(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(0.0)
    first, second = (
        shared_dhan_limiters(
            SlotBook(accounts[0], broker="dhan", redis=c, clock=time.clock), sleep=time.sleep
        )
        for c in clients
    )
    chain_and_data = CombinedLimiter(first.option_chain, first.data, name="dhan-chain+data")

    assert await chain_and_data.acquire() == 0.0
    assert await second.data.acquire() == pytest.approx(0.2)  # queued behind the chain's slot
    assert await chain_and_data.acquire() == pytest.approx(3.5)
    assert await second.quotes.acquire() == 0.0  # quotes have their own class


@pytest.mark.integration
@pytest.mark.asyncio
async def test_keys_are_per_account_and_class_and_expire(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(0.0)
    book = SlotBook(accounts[0], broker="dhan", redis=clients[0], clock=time.clock)
    limiters = shared_dhan_limiters(book, sleep=time.sleep)
    chain_and_data = CombinedLimiter(limiters.option_chain, limiters.data)
    for _ in range(3):
        await chain_and_data.acquire()  # slots 0, 3.5 and 7

    prefix = f"optionsite:ratelimit:{accounts[0]}:"
    keys = sorted([key.decode() async for key in clients[0].scan_iter(f"{prefix}*")])
    assert keys == [f"{prefix}data", f"{prefix}option-chain"]
    chain_ttl = await clients[0].pttl(f"{prefix}option-chain")
    data_ttl = await clients[0].pttl(f"{prefix}data")
    # Until a window after the last booked start (7 s ahead), plus a second to spare.
    assert 0 < chain_ttl <= (7.0 + 3.5 + 1) * 1000
    assert 0 < data_ttl <= (7.0 + 0.2 + 1) * 1000
    assert await clients[0].zcard(f"{prefix}option-chain") == 1  # only the last start bounds


@pytest.mark.integration
@pytest.mark.asyncio
async def test_redis_time_spaces_two_processes_when_no_clock_is_injected(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(0.0)  # only its sleep: the reservations read Redis's clock
    first, second = (
        shared_dhan_limiters(SlotBook(accounts[0], broker="dhan", redis=c), sleep=time.sleep)
        for c in clients
    )
    slots = []
    for _ in range(3):
        slots.append(await first.option_chain.acquire())
        slots.append(await second.option_chain.acquire())
    assert min(spacings(slots)) >= 3.5
    assert len(time.sleeps) >= 5  # nobody went ahead without waiting for the slot


@pytest.mark.integration
@pytest.mark.asyncio
async def test_identical_requests_of_one_process_still_share_one_call(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    time = FrozenTime(0.0)
    limiter = shared_dhan_limiters(
        SlotBook(accounts[0], broker="dhan", redis=clients[0], clock=time.clock),
        sleep=time.sleep,
        clock=time.clock,
    ).option_chain
    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        await limiter.acquire()
        return calls

    assert await asyncio.gather(*(limiter.run("NIFTY", call) for _ in range(4))) == [1] * 4
    assert await limiter.run("NIFTY", call) == 1  # within the reuse window
    time.now = 3.6
    assert await limiter.run("NIFTY", call) == 2
    assert calls == 2


def test_shared_and_in_process_limiters_cannot_be_combined() -> None:
    book = SlotBook("main", broker="dhan")
    with pytest.raises(ValueError, match="cannot combine limiters shared through Redis"):
        CombinedLimiter(shared_dhan_limiters(book).data, SpacingLimiter(rate=1))


def test_limiters_of_two_accounts_cannot_be_combined() -> None:
    first = shared_dhan_limiters(SlotBook("main", broker="dhan"))
    second = shared_dhan_limiters(SlotBook("other", broker="dhan"))
    with pytest.raises(ValueError, match="different accounts"):
        CombinedLimiter(first.option_chain, second.data)


def test_a_window_needs_a_limit_and_a_period() -> None:
    with pytest.raises(ValueError, match="limit"):
        Window(0, 1.0)
    with pytest.raises(ValueError, match="period"):
        Window(1, 0.0)


@pytest.mark.asyncio
async def test_unreachable_redis_sends_nothing_and_raises_a_transient_error() -> None:
    dead = aioredis.Redis(port=free_port(), **client_options())  # type: ignore[arg-type]
    requests: list[httpx.Request] = []

    def broker(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"data": {"last_price": 1.0, "oc": {}}})

    book = SlotBook("main", broker="dhan", redis=dead)
    client = DhanRestClient(
        "https://dhan.test", "1000", "token", transport=httpx.MockTransport(broker),
        retry=NO_RETRY, limiters=shared_dhan_limiters(book),
    )  # fmt: skip
    try:
        with pytest.raises(BrokerError) as refused:
            await client.option_chain(13, "IDX_I", date(2031, 1, 2))
    finally:
        await client.aclose()
        await dead.aclose()
    assert requests == []
    assert refused.value.permanent is False
    assert refused.value.code == "ratelimit-unavailable"
    assert "account 'main' is shared by every process through Redis" in str(refused.value)
    assert "Check that Redis (REDIS_URL) is running" in str(refused.value)


def config(name: str, kind: str) -> AccountConfig:
    return AccountConfig(
        name=name, kind=kind, client_id="1000", access_token=Secret("token"),
        rest_base_url="https://broker.test", feed_base_url="wss://broker.test",
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.asyncio
async def test_adapters_built_apart_for_one_account_share_its_limits(
    accounts: list[str], clients: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    first, second = (adapter_for(config(accounts[0], "dhan"), redis=c) for c in clients)
    other = adapter_for(config(accounts[1], "dhan"), redis=clients[0])
    assert isinstance(first, DhanAdapter) and isinstance(second, DhanAdapter)
    assert isinstance(other, DhanAdapter)
    try:
        assert first.rest.limiters.non_trading.book.account == accounts[0]  # type: ignore[attr-defined]
        one = await first.rest.limiters.non_trading.acquire()
        two = await second.rest.limiters.non_trading.acquire()
        assert round(two - one, 6) >= 0.05  # 20/s, spaced, across both adapters
        await other.rest.limiters.non_trading.acquire()
    finally:
        for adapter in (first, second, other):
            await adapter.aclose()  # leaves the injected clients open
    names = {key.decode() async for key in clients[1].scan_iter(f"{KEY_PREFIX}test-*")}
    assert f"{KEY_PREFIX}{accounts[0]}:non-trading" in names
    assert f"{KEY_PREFIX}{accounts[1]}:non-trading" in names


@pytest.mark.asyncio
async def test_upstox_adapters_use_the_accounts_shared_limit() -> None:
    adapter = adapter_for(config("main", "upstox"))
    try:
        assert isinstance(adapter, UpstoxAdapter)
        assert isinstance(adapter.rest.limiter, SharedLimiter)
        assert adapter.rest.limiter.book.key("standard") == "optionsite:ratelimit:main:standard"
    finally:
        await adapter.aclose()  # no Redis client was made: nothing was reserved
