"""A feed worker without coalescing, the benchmarks' naive baseline: one publish per tick.

    python bench/_pertick_feed.py --account NAME     (environment as for manage.py runfeed)

The product's ``FeedWorker`` with one change: every tick that changes a chain is flushed at
once (analytics of that leg, ``seq`` + 1) and its delta sent as its own channel-layer group
message, instead of one coalesced delta per chain every 250 ms. Sending happens in a
background task in arrival order; when it falls behind, the queue of unsent deltas grows, and
beyond ``MAX_QUEUE`` the oldest are dropped (counted) rather than exhausting memory. The
chain's Redis snapshot is still written at most every 250 ms. Counters go into the feed
status as ``pertick_sent``, ``pertick_dropped`` and ``pertick_queue``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from brokers.exceptions import CodecError  # noqa: E402
from brokers.ticks import Tick  # noqa: E402
from chains import store  # noqa: E402
from chains.feed.settings import FeedSettings  # noqa: E402
from chains.feed.worker import FeedWorker  # noqa: E402

MAX_QUEUE = 100_000
SNAPSHOT_EVERY = 0.25


class PerTickWorker(FeedWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: collections.deque[tuple[Any, dict[str, Any]]] = collections.deque()
        self.sent = 0
        self.dropped = 0
        self.wakeup = asyncio.Event()
        self.snapshot_at: dict[Any, float] = {}

    def handle_frame(self, frame: bytes | str, received_at: float) -> None:
        assert self.adapter is not None and self.book is not None
        counters = self.counters
        counters.frames += 1
        counters.last_frame_at = counters.last_traffic_at = received_at
        if isinstance(frame, str):
            counters.decode_errors += 1
            return
        try:
            events = self.adapter.decode(frame)
        except CodecError as exc:
            counters.decode_errors += 1
            events = exc.events
        book, queue = self.book, self.queue
        for event in events:
            if type(event) is not Tick:
                continue
            counters.ticks += 1
            if book.apply(event, received_at):
                queue.extend(book.flush(datetime.now(UTC)))  # no coalescing: flush every tick
        if len(queue) > MAX_QUEUE:
            excess = len(queue) - MAX_QUEUE
            for _ in range(excess):
                queue.popleft()
            self.dropped += excess
        if queue:
            self.wakeup.set()

    async def publish_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                chain, delta = self.queue.popleft()
                try:
                    now = time.monotonic()
                    if now - self.snapshot_at.get(chain.key, 0.0) >= SNAPSHOT_EVERY:
                        self.snapshot_at[chain.key] = now
                        await store.write_snapshot(self.redis, self.publisher.snapshot(chain))
                    await self.layer.group_send(
                        store.group_name(chain.underlying, chain.expiry),
                        {"type": "chain.delta", "underlying": chain.underlying,
                         "expiry": chain.expiry.isoformat(), **delta},
                    )  # fmt: skip
                except RedisError:
                    self.counters.publish_errors += 1
                    continue
                self.sent += 1
                self.counters.deltas += 1

    def status(self) -> dict[str, Any]:
        return {**super().status(), "pertick_sent": self.sent, "pertick_dropped": self.dropped,
                "pertick_queue": len(self.queue)}  # fmt: skip


async def main(account: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = store.async_client()
    worker = PerTickWorker(
        account,
        settings=FeedSettings(**settings.FEED_SETTINGS),
        channel_layer=get_channel_layer(),
        redis=redis,
    )
    publisher = asyncio.create_task(worker.publish_loop(stop))
    try:
        await worker.run(stop)
    finally:
        publisher.cancel()
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--account", required=True)
    asyncio.run(main(parser.parse_args().account))
