"""Rate limiters, measured on a virtual clock: no test here really sleeps."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.ratelimit import (
    CombinedLimiter,
    SlidingWindowLimiter,
    SpacingLimiter,
    UniqueRequestLimiter,
    dhan_limiters,
    upstox_limiter,
)

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
    assert limits.option_chain.interval == pytest.approx(3.0)
    assert limits.option_chain.reuse_window == pytest.approx(3.0)
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
