"""End to end over real sockets: simulator → runfeed → Redis snapshots and Channels group
messages carry exactly the simulator's true prices, for both brokers; and the feed survives
what real feeds do to it."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from brokers.models import AccountStatus, BrokerAccount, TrackedChain
from chains import store
from chains.models import ChainSnapshot
from tests.chains.feed import conftest as feed_fixtures
from tests.processes import eventually, runfeed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
FIELDS = ("ltp", "bid", "ask", "volume", "oi", "prev_close")


def chains_of(account: str) -> list[tuple[str, str]]:
    status = store.read_feed_status(account) or {}
    return [(c["underlying"], c["expiry"]) for c in status.get("chains", []) if c["ready"]]


def wait_ready(account: str, *, timeout: float = 30) -> list[tuple[str, str]]:
    status = feed_fixtures.wait_ready(account, timeout=timeout)
    return [(c["underlying"], c["expiry"]) for c in status["chains"]]


def true_prices(sim, broker: str) -> dict[str, dict[str, Any]]:
    key = "security_id" if broker == "dhan" else "upstox_key"
    return {str(i[key]): i for i in sim.state()["instruments"] if i["kind"] == "option"}


def assert_matches_truth(snapshot: dict[str, Any], truth: dict[str, dict[str, Any]]) -> int:
    compared = 0
    for strike, sides in snapshot["strikes"].items():
        for side, leg in sides.items():
            real = truth[leg["instrument_id"]]
            assert float(strike) == real["strike"] and side == real["option_type"]
            for field in FIELDS:
                expected = real[field]
                if isinstance(expected, float):
                    expected = round(expected, 2)
                assert leg[field] == expected, (strike, side, field, leg[field], real[field])
            compared += 1
    return compared


@pytest.mark.parametrize("account", ["sim-dhan", "sim-upstox"])
def test_snapshots_and_group_messages_carry_the_true_prices(wired, account):
    broker = account.removeprefix("sim-")
    layer = get_channel_layer()
    with runfeed(account) as feed:
        underlying, expiry = wait_ready(account)[0]
        group = store.group_name(underlying, expiry)

        async def scenario() -> tuple[dict, list[dict], dict]:
            channel = await layer.new_channel()
            await layer.group_add(group, channel)  # before the base snapshot: no delta missed
            redis = store.async_client()
            try:
                base = await store.aread_snapshot(redis, underlying, expiry)
                deltas: list[dict] = []

                async def receive_until(done) -> None:
                    while not done():
                        deltas.append(await asyncio.wait_for(layer.receive(channel), 10))

                await receive_until(lambda: len(deltas) >= 4)
                await asyncio.to_thread(wired.fault, action="stall", seconds=60)
                final = None
                for _ in range(40):  # settle: two reads 0.5 s apart agree
                    first = await store.aread_snapshot(redis, underlying, expiry)
                    await asyncio.sleep(0.5)
                    final = await store.aread_snapshot(redis, underlying, expiry)
                    if first["seq"] == final["seq"]:
                        break
                await receive_until(lambda: deltas[-1]["seq"] >= final["seq"])
                return base, deltas, final
            finally:
                await layer.group_discard(group, channel)
                await redis.aclose()

        base, deltas, final = async_to_sync(scenario)()
        assert feed.process.poll() is None, feed.output()[-2000:]
    seqs = [d["seq"] for d in deltas if d["seq"] > base["seq"]]
    assert seqs == list(range(base["seq"] + 1, final["seq"] + 1))  # consecutive, none missing
    assert all(len(d["legs"]) > 0 for d in deltas)
    state = {k: dict(v) for k, v in base["strikes"].items()}
    for delta in deltas:
        if base["seq"] < delta["seq"] <= final["seq"]:
            for strike, sides in delta["legs"].items():
                state[strike].update(sides)
    assert state == final["strikes"]  # the group messages rebuild the snapshot exactly
    compared = assert_matches_truth(final, true_prices(wired, broker))
    assert compared == sum(len(sides) for sides in final["strikes"].values())


def test_sigterm_persists_snapshots_and_exits_zero(wired):
    feed = runfeed("sim-dhan")
    with feed:
        chains = wait_ready("sim-dhan")
        assert not ChainSnapshot.objects.exists()  # the periodic save is minutes away
        feed.signal(signal.SIGTERM)
        assert feed.wait(30) == 0, feed.output()[-2000:]
        assert "Feed stopped." in feed.output()
        output = feed.output()
    saved = {(s.underlying, s.expiry.isoformat()) for s in ChainSnapshot.objects.all()}
    assert saved == set(chains), output[-3000:]
    assert wired.state(instruments=False)["subscriptions"]["dhan"] == 0  # it unsubscribed


@pytest.mark.parametrize("close_frame", [True, False])
def test_reconnects_after_dropped_connections(wired, close_frame):
    with runfeed("sim-dhan", "sim-upstox"):
        wait_ready("sim-dhan")
        wait_ready("sim-upstox")
        wired.fault(action="drop", close_frame=close_frame)
        for account in ("sim-dhan", "sim-upstox"):
            eventually(
                lambda a=account: (store.read_feed_status(a) or {}).get("reconnects", 0) >= 1,
                what=f"{account} to notice the drop",
            )
            wait_ready(account)


def test_malformed_frames_are_counted_and_survived(wired):
    with runfeed("sim-dhan", "sim-upstox"):
        wait_ready("sim-dhan")
        wait_ready("sim-upstox")
        for kind in ("truncated", "unknown_code"):
            wired.fault(action="malformed", broker="dhan", kind=kind, count=3)
        wired.fault(action="malformed", broker="upstox", kind="garbage", count=2)
        eventually(lambda: store.read_feed_status("sim-dhan")["decode_errors"] >= 6,
                   what="dhan decode errors counted")  # fmt: skip
        eventually(lambda: store.read_feed_status("sim-upstox")["decode_errors"] >= 2,
                   what="upstox decode errors counted")  # fmt: skip
        for account in ("sim-dhan", "sim-upstox"):
            status = store.read_feed_status(account)
            assert status["state"] == "live" and status["reconnects"] == 0


def test_stalled_feed_is_quiet_not_dead(wired):
    with runfeed("sim-dhan", FEED_QUIET_AFTER="1"):
        wait_ready("sim-dhan")
        wired.fault(action="stall", seconds=30)
        status = eventually(lambda: (s := store.read_feed_status("sim-dhan")) and
                            s["state"] == "quiet" and s, what="quiet state")  # fmt: skip
        assert status["reconnects"] == 0
        assert status["last_frame_age"] >= 1
        wired.fault(action="resume")
        eventually(lambda: store.read_feed_status("sim-dhan")["state"] == "live", what="live again")


@pytest.mark.parametrize("broker", ["dhan", "upstox"])
def test_expired_token_stops_then_new_token_resumes_without_restart(wired, broker):
    account_name = f"sim-{broker}"
    with runfeed(account_name) as feed:
        wait_ready(account_name)
        wired.fault(action="expire_token", broker=broker)
        eventually(lambda: BrokerAccount.objects.get(name=account_name).status
                   == AccountStatus.TOKEN_EXPIRED, what="status token_expired")  # fmt: skip
        status = eventually(lambda: (s := store.read_feed_status(account_name))
                            and s["state"] == "token_wait" and s, what="token_wait")  # fmt: skip
        reconnects = status["reconnects"]
        time.sleep(2)  # no hammering while waiting for a person
        assert store.read_feed_status(account_name)["reconnects"] == reconnects
        # An admin saves a new token (the simulator issues a fresh one on request).
        account = BrokerAccount.objects.get(name=account_name)
        account.set_access_token(wired.issue_token(broker))
        account.save()
        wait_ready(account_name)
        assert feed.process.poll() is None


def test_standby_takes_over_when_the_holder_dies(wired):
    with runfeed("sim-dhan") as first:
        wait_ready("sim-dhan")
        holder_pid = store.read_feed_status("sim-dhan")["pid"]
        with runfeed("sim-dhan") as second:
            time.sleep(3)
            assert store.read_feed_status("sim-dhan")["pid"] == holder_pid  # still the first
            assert wired.state(instruments=False)["subscriptions"]["dhan"] > 0
            first.signal(signal.SIGKILL)
            eventually(lambda: (s := store.read_feed_status("sim-dhan")) and s["pid"]
                       == second.process.pid and s["state"] == "live", timeout=25,
                       what="the standby to take over")  # fmt: skip


def test_one_writer_per_chain_between_accounts(wired):
    tracked = list(TrackedChain.objects.filter(enabled=True).values_list("underlying", flat=True))
    assert len(tracked) == len(set(tracked))


@pytest.mark.parametrize("broker", ["dhan", "upstox"])
def test_hot_swap_uses_a_new_token_within_seconds_without_restart(wired, broker):
    account_name = f"sim-{broker}"
    with runfeed(account_name, FEED_TOKEN_POLL_INTERVAL="600") as feed:
        wait_ready(account_name)
        before = store.read_feed_status(account_name)["reconnects"]
        account = BrokerAccount.objects.get(name=account_name)
        old_token = account.access_token.reveal()
        account.set_access_token(wired.issue_token(broker))
        account.save()  # as admin → Broker accounts → Save does
        # The fallback re-read is 600 s away: only the account-saved message can do this.
        eventually(lambda: store.read_feed_status(account_name)["reconnects"] > before,
                   timeout=30, what="the switch to the new token")  # fmt: skip
        wait_ready(account_name)
        # The old token dies at the broker: the feed, on the new one, does not notice.
        wired.fault(action="expire_token", broker=broker, token=old_token)
        time.sleep(2)
        status = store.read_feed_status(account_name)
        assert status["state"] == "live", feed.output()[-3000:]
        assert BrokerAccount.objects.get(name=account_name).status == AccountStatus.OK
        assert feed.process.poll() is None
        assert old_token not in feed.output()


def test_saving_an_account_without_a_new_token_does_not_reconnect(wired):
    with runfeed("sim-dhan"):
        wait_ready("sim-dhan")
        before = store.read_feed_status("sim-dhan")["reconnects"]
        account = BrokerAccount.objects.get(name="sim-dhan")
        account.last_error = "unrelated edit"
        account.save()
        time.sleep(3)
        assert store.read_feed_status("sim-dhan")["reconnects"] == before
