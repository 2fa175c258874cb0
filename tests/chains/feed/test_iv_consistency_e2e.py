"""End to end over real sockets (simulator → runfeed → Redis snapshot): every priced leg's IV is
the Black-76 IV of its price on the forward, time to expiry and rate of the snapshot it is in."""

from __future__ import annotations

from typing import Any

import pytest

from chains import store
from tests.chains.feed import conftest as feed_fixtures
from tests.chains.iv_check import iv_mismatches, priced_legs
from tests.processes import eventually, runfeed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
SNAPSHOTS = 12  # distinct flushes checked: the forward moves between most of them


@pytest.mark.parametrize("account", ["sim-dhan", "sim-upstox"])
def test_every_priced_legs_iv_matches_the_snapshots_own_forward(wired, account):
    with runfeed(account) as feed:
        status = feed_fixtures.wait_ready(account)
        underlying, expiry = status["chains"][0]["underlying"], status["chains"][0]["expiry"]
        seen: dict[int, dict[str, Any]] = {}

        def enough() -> bool:
            snapshot = store.read_snapshot(underlying, expiry)
            assert snapshot is not None, "the ready chain has no snapshot"
            seen.setdefault(snapshot["seq"], dict(snapshot))
            return len(seen) >= SNAPSHOTS

        eventually(enough, timeout=60, interval=0.2, what=f"{SNAPSHOTS} flushes")
        assert feed.process.poll() is None, feed.output()[-2000:]
    forwards = {s["forward"] for s in seen.values()}
    assert len(forwards) > 1, "the forward never moved: nothing was tested"
    for seq, snapshot in sorted(seen.items()):
        assert priced_legs(snapshot) > 0
        assert iv_mismatches(snapshot) == [], (seq, snapshot["forward"], snapshot["as_of"], expiry)
        assert snapshot["spot"] == round(round(snapshot["spot"] * 20) / 20, 2)
        assert snapshot["forward"] == round(round(snapshot["forward"] * 20) / 20, 2)
