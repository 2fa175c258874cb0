"""The faults of a trading day (tests/chaos/faults.py) against the whole product
(tests/chaos/stack.py), one stack for the module. After each fault: the feed recovers, every
client's rebuilt chain converges to the simulator's truth (and the API's answer), no second
writer ever writes, and no surface says "live" while no tick arrives. The tests run in the
order that costs least; a fault that leaves the stack broken makes the next test's ``stack``
fixture say what it saw.
"""

from __future__ import annotations

import pytest

from . import faults
from .checks import FaultReport
from .claims import LIVE_GRACE, says_market_closed, says_quiet
from .stack import ChaosStack

# Brokers whose feed says which segments are open or closed (Upstox market_info); DhanHQ's
# status packet carries no status, so its chains follow the exchange calendar.
BROKERS_ANNOUNCING_MARKET_STATUS = ("upstox",)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def verdict(report: FaultReport | list[FaultReport], *extra: str) -> None:
    """Fail with every problem of the fault(s), one per line."""
    reports = report if isinstance(report, list) else [report]
    problems = [*extra]
    for each in reports:
        problems += [f"[{each.name}] {p}" for p in each.problems()]
    assert not problems, f"{reports[0].name}:\n- " + "\n- ".join(problems)


def test_market_closed_is_shown_as_closed_not_live(stack: ChaosStack):
    """Upstox says which segments closed (market_info): its chain must read "market closed".
    A DhanHQ status packet (code 7) says only that a status changed, so its chain follows the
    exchange calendar: "market closed" out of hours, "quiet" within them — never "live"."""
    report = faults.market_closed(stack)
    extra = []
    for chain in stack.chains:
        said = report.notes["status_said"].get(chain.name)
        if chain.broker in BROKERS_ANNOUNCING_MARKET_STATUS:
            if not report.notes["closed_shown"][chain.name]:
                extra.append(f"the status API did not say 'market closed' for {chain.name} "
                             f"({chain.broker}) {LIVE_GRACE:g}+ s after the broker announced "
                             f"the close; it said {said}")  # fmt: skip
        elif not report.notes["closed_or_quiet_shown"][chain.name]:
            extra.append(f"the status API said neither 'market closed' nor quiet for "
                         f"{chain.name} ({chain.broker}) {LIVE_GRACE:g}+ s after the broker "
                         f"closed the market; it said {said}")  # fmt: skip
    verdict(report, *extra)


def test_a_30_s_stall_is_quiet_not_live_and_closes_nothing(stack: ChaosStack):
    report = faults.stall(stack, 30.0)
    notes = report.notes
    extra = []
    if notes["closes"] or notes["client_reconnects"]:
        extra.append(
            f"WebSocket clients were closed {notes['closes']} times (codes "
            f"{notes['close_codes']}) and reconnected {notes['client_reconnects']} "
            "times during a stall: waiting for ticks is not an error"
        )
    moved = {a: n for a, n in notes["feed_reconnects"].items() if n}
    if moved:
        extra.append(f"feed workers reconnected during a stall with pings flowing: {moved}")
    for chain, said in notes["said_quiet"].items():
        if not said or not all(says_quiet(s) or says_market_closed(s) for s in said):
            extra.append(
                f"the status API said neither quiet / no ticks nor market closed for {chain} "
                f"during the stall; it said {said}"
            )
    verdict(report, *extra)


def test_six_drops_in_a_row_each_reconnect_at_once(stack: ChaosStack):
    reports = faults.drops(stack, 6)
    extra = []
    for report in reports:
        attempts = report.notes["reconnect_attempt"]
        for chain in stack.chains:
            number = attempts.get(chain.account)
            if number is None:
                extra.append(
                    f"[{report.name}] no 'Reconnecting {chain.account} in …s (attempt "
                    "N)' in the holder's log after the drop"
                )
            elif number != 1:
                extra.append(
                    f"[{report.name}] {chain.account} reconnected as attempt {number}: "
                    "the backoff did not reset after a connection that delivered "
                    "frames"
                )
    verdict(reports, *extra)


def test_concurrent_rest_users_are_never_refused(stack: ChaosStack):
    report = faults.rest_crowd(stack)
    extra = []
    if report.notes["refusals"]:
        extra.append(
            f"{len(report.notes['refusals'])} rate-limit refusals (429/805) while the "
            "standby primed, a repopulate task ran and feedcheck ran at once: "
            + " | ".join(report.notes["refusals"][:6])
        )
    verdict(report, *extra)


def test_the_standby_takes_over_when_the_holder_is_killed(stack: ChaosStack):
    verdict(faults.kill_holder(stack))


def test_a_frozen_holder_woken_after_takeover_writes_nothing(stack: ChaosStack):
    verdict(faults.freeze_holder(stack))


def test_redis_restart_is_survived(stack: ChaosStack):
    verdict(faults.redis_restart(stack, 10.0))
