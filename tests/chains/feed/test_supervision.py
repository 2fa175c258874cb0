"""The feed worker supervised over a trading day's faults, with real processes: a Redis restart,
a frozen holder, a lost lock, repeated drops. Each test names the defect it reproduces."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from typing import Any

import pytest

from brokers.models import BrokerAccount
from chains import ownership, store
from tests.chains.feed.conftest import dhan_connections, status_reader, wait_ready
from tests.processes import eventually, runfeed
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def private_env(server: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": server.url(0), "CELERY_BROKER_URL": server.url(1)}


def test_after_a_redis_restart_the_holder_stands_down_then_feeds_again(wired):
    """Item 1: Redis stopped and restarted → the worker's housekeeping died on the first
    RedisError; the status was never written again and the lock never re-taken."""
    with RedisServer() as server:
        client = server.client()
        read = status_reader(client)
        with runfeed("sim-dhan", **private_env(server)) as feed:
            first = wait_ready("sim-dhan", read=read)
            wired.fault(action="stall", seconds=120)  # a quiet market: no tick rewrites a chain
            server.stop()
            # It cannot renew: it must close its broker socket before the lock could expire.
            eventually(lambda: "stands down" in feed.output(), timeout=30,
                       what="the holder to stand down while Redis is away")  # fmt: skip
            eventually(lambda: dhan_connections(wired) == 0, what="the broker socket closed")
            server.start()
            again = eventually(
                lambda: (s := read("sim-dhan")) and s["state"] in ("live", "quiet") and s,
                what="the feed connected again after the restart",
            )  # fmt: skip
            assert again["pid"] == first["pid"] and feed.process.poll() is None
            assert client.get(ownership.lock_key("sim-dhan")) is not None
            # The status can never outlive the lock it stands for.
            assert 0 < client.pttl(store.feed_key("sim-dhan")) <= 10_000
            # Every chain is in the new Redis although no tick arrived since.
            for chain in first["chains"]:
                key = store.chain_key(chain["underlying"], chain["expiry"])
                eventually(lambda k=key: client.get(k), what=f"{key} written again")
            wired.fault(action="resume")
        client.close()


def test_a_frozen_holder_loses_its_lock_and_writes_nothing_when_it_wakes(wired):
    """A SIGSTOPped holder woke up after the standby took over and went on writing."""
    with runfeed("sim-dhan") as first, runfeed("sim-dhan") as second:
        status = wait_ready("sim-dhan")
        holder, standby = (first, second) if status["pid"] == first.process.pid else (second, first)
        old_run = _snapshot_run(status)
        holder.signal(signal.SIGSTOP)
        taken = eventually(
            lambda: (s := store.read_feed_status("sim-dhan")) and s["pid"]
            == standby.process.pid and s["state"] == "live" and s, timeout=40,
            what="the standby to take over from the frozen holder",
        )  # fmt: skip
        new_run = eventually(lambda: _snapshot_run(taken) != old_run and _snapshot_run(taken),
                             what="the new holder's run in the snapshot")  # fmt: skip
        holder.signal(signal.SIGCONT)
        eventually(lambda: "stands down" in holder.output(), what="the woken holder to stand down")
        # It closed its broker socket: one DhanHQ connection, the new holder's.
        eventually(lambda: dhan_connections(wired) == 1, what="one broker connection")
        assert _snapshot_run(taken) == new_run
        assert store.read_feed_status("sim-dhan")["pid"] == standby.process.pid
        assert holder.process.poll() is None  # standing by, not exited


def test_a_lost_lock_stops_only_its_own_account(wired):
    """Item 6: one shared stop event — a lost lock stopped every account and exited 0."""
    with runfeed("sim-dhan", "sim-upstox") as feed:
        wait_ready("sim-dhan")
        wait_ready("sim-upstox")
        redis = store.sync_client()
        redis.set(ownership.lock_key("sim-dhan"), "another-worker", px=60_000)
        eventually(lambda: "stands down" in feed.output(), what="sim-dhan to stand down")
        upstox = wait_ready("sim-upstox")
        assert upstox["pid"] == feed.process.pid
        redis.delete(ownership.lock_key("sim-dhan"))  # the other holder went away
        wait_ready("sim-dhan")
        assert feed.process.poll() is None


def test_backoff_starts_over_after_a_connection_that_delivered_frames(wired):
    """Item 4: the attempt counter reset only when a session returned normally, so the 4th
    sub-second drop of the day waited up to 8 s, and every reconnect from the 2nd on checked
    the token over REST."""
    with runfeed("sim-dhan") as feed:
        status = wait_ready("sim-dhan")
        for drop in range(1, 7):
            frames = status["frames"]
            eventually(lambda f=frames: store.read_feed_status("sim-dhan")["frames"] > f,
                       what="frames on this connection")  # fmt: skip
            wired.fault(action="drop", close_frame=True)
            eventually(lambda d=drop: store.read_feed_status("sim-dhan")["reconnects"] >= d,
                       what=f"drop {drop} noticed")  # fmt: skip
            status = wait_ready("sim-dhan")
        pattern = r"Reconnecting sim-dhan in [\d.]+s \(attempt (\d+)\)"
        attempts = [int(n) for n in re.findall(pattern, feed.output())]
        assert len(attempts) >= 6 and set(attempts) == {1}, attempts
        assert "Token check of" not in feed.output()
        account = BrokerAccount.objects.get(name="sim-dhan")
        assert account.last_checked_at is None  # no REST token check was made


def _chain(status: dict) -> tuple[str, str]:
    chain = status["chains"][0]
    return chain["underlying"], chain["expiry"]


def _snapshot_run(status: dict) -> str | None:
    raw = store.sync_client().get(store.chain_key(*_chain(status)))
    return json.loads(raw)["run"] if raw else None


class FailingOnce:
    """The channel layer, whose first publish fails in a way nobody planned for."""

    def __init__(self, layer: Any) -> None:
        self.layer, self.failed = layer, False

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("the channel layer broke unexpectedly")
        await self.layer.group_send(group, message)


def test_a_task_that_dies_is_logged_shown_and_its_holding_restarted(wired, caplog):
    """Item 1: no task of the worker was supervised — one that died was only noticed at
    shutdown, and the worker ran on half-alive."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from chains.feed.settings import FeedSettings
    from chains.feed.worker import FeedWorker

    seen: list[dict[str, Any]] = []

    async def scenario() -> dict[str, Any]:
        stop = asyncio.Event()
        redis = store.async_client()
        worker = FeedWorker(
            "sim-dhan", settings=FeedSettings(backoff_base=0.2), redis=redis,
            channel_layer=FailingOnce(get_channel_layer()),
        )  # fmt: skip
        running = asyncio.create_task(worker.run(stop))
        try:
            while True:  # until it failed, said so, and fed again
                status = worker.status()
                seen.append(status)
                if status["crashes"] and status["state"] == "live" and worker.book:
                    chain = next(iter(worker.book.chains.values()))
                    if chain.seq > 0:
                        return status
                assert not running.done(), running
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running
            await redis.aclose()

    with caplog.at_level(logging.ERROR, logger="chains.feed.worker"):
        final = async_to_sync(asyncio.wait_for)(scenario(), 60)
    assert final["crashes"] == 1
    failed = [r for r in caplog.records if "failed (RuntimeError" in r.getMessage()]
    assert failed and failed[0].exc_info is not None  # logged with its traceback
    shown = [s for s in seen if s["state"] == "error"]
    assert shown and "the channel layer broke unexpectedly" in shown[0]["error"]


def test_a_quick_redis_restart_keeps_the_holder_and_rewrites_every_chain(wired):
    """Redis back within the lock's deadline: the holder keeps feeding (same run), takes its
    lock key back and writes every chain again — a quiet chain too, with no tick to do it."""
    with RedisServer() as server:
        client = server.client()
        read = status_reader(client)
        with runfeed("sim-dhan", FEED_QUIET_AFTER="1", **private_env(server)) as feed:
            first = wait_ready("sim-dhan", read=read)
            runs = {c["underlying"] + c["expiry"]: _run_in(client, c) for c in first["chains"]}
            wired.fault(action="stall", seconds=120)
            eventually(lambda: (read("sim-dhan") or {}).get("state") == "quiet",
                       what="the last frames handled")  # fmt: skip
            server.restart()  # empty, a second or so later
            for chain in first["chains"]:
                key = chain["underlying"] + chain["expiry"]
                eventually(lambda c=chain: _run_in(client, c), what=f"{key} written again")
                assert _run_in(client, chain) == runs[key]  # the same writer, not a new one
            assert "stands down" not in feed.output()
            wired.fault(action="resume")
        client.close()


def _run_in(client: Any, chain: dict) -> str | None:
    raw = client.get(store.chain_key(chain["underlying"], chain["expiry"]))
    return json.loads(raw)["run"] if raw else None
