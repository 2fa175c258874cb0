"""End to end over real sockets (simulator → runfeed → Redis snapshot): the chain snapshot
carries the index's previous close exactly as the simulated exchange holds it, over both
brokers' feeds (DhanHQ's prev-close packet, Upstox's ltpc ``cp``)."""

from __future__ import annotations

import httpx
import pytest

from chains import store
from chains.analytics import to_index_value
from tests.chains.feed import conftest as feed_fixtures
from tests.processes import eventually, runfeed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.mark.parametrize("account", ["sim-dhan", "sim-upstox"])
def test_the_snapshot_carries_the_simulated_index_previous_close(wired, account):
    with runfeed(account) as feed:
        status = feed_fixtures.wait_ready(account)
        underlying, expiry = status["chains"][0]["underlying"], status["chains"][0]["expiry"]

        def prev_close() -> float | None:
            snapshot = store.read_snapshot(underlying, expiry)
            assert snapshot is not None, "the ready chain has no snapshot"
            return snapshot["spot_prev_close"]

        got = eventually(prev_close, timeout=30, interval=0.2, what="the index's previous close")
        assert feed.process.poll() is None, feed.output()[-2000:]
    state = httpx.get(f"{wired.url}/sim/state", params={"instruments": "1"}).json()
    index = [i for i in state["instruments"]
             if i["kind"] == "index" and i["underlying"] == underlying]  # fmt: skip
    assert len(index) == 1, index
    assert got == to_index_value(index[0]["prev_close"])
