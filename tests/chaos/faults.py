"""The faults of a trading day. Each function injects one into a ready ``ChaosStack``, waits
for recovery, runs the checks every fault ends with (``checks.finish``) and returns the
``FaultReport``. ``ORDER`` lists them in the order that costs least (the benchmark's)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.processes import Process

from . import checks
from .checks import FaultReport, short
from .claims import LIVE_GRACE
from .stack import LOCK_TTL, ChaosStack, tail

ATTEMPT = re.compile(r"Reconnecting (\S+) in [\d.]+s \(attempt (\d+)\)")
# A broker's rate-limit refusal as the product's logs, feedcheck and the simulator word it.
REFUSAL = re.compile(r"rate limit reached|HTTP 429|DH-904|UDAPI10005|\(805\)|code 805")
TASK_DONE = re.compile(r"Task chains\.repopulate_chains\[\S+\] (succeeded|raised).*")


def market_closed(stack: ChaosStack, seconds: float = LIVE_GRACE + 4) -> FaultReport:
    """(f) the broker says the market closed (Upstox market_info, DhanHQ status packets); what
    the status API said after ``LIVE_GRACE`` is in ``notes``; then the market opens again."""
    assert stack.sim is not None and stack.observers is not None
    report = FaultReport("market closed", time.time())
    stack.sim.fault(action="market", status="closed", dhan_status_packet=True)
    time.sleep(seconds)
    judged = report.started + LIVE_GRACE
    after = [s for s in stack.observers.sampler.between(judged, time.time())
             if s.surface == "status"]  # fmt: skip
    report.notes["status_said"] = _status_said(stack, judged, time.time())
    report.notes["closed_shown"] = {
        c.name: any(s.chain == c for s in after)
        and all(s.market_closed for s in after if s.chain == c)
        for c in stack.chains
    }
    report.notes["closed_or_quiet_shown"] = {
        c.name: any(s.chain == c for s in after)
        and all(s.market_closed or s.quiet for s in after if s.chain == c)
        for c in stack.chains
    }
    stack.sim.fault(action="market", status="open", dhan_status_packet=True)
    report.lifted = time.time()
    stack.wait_recovered(report, report.lifted, timeout=30)
    return checks.finish(stack, report, honest_until=report.lifted)


def stall(stack: ChaosStack, seconds: float = 30.0) -> FaultReport:
    """(e) the simulator sends no ticks for ``seconds`` (sockets open, pings go on): closes,
    reconnects and what the status API said are in ``notes``."""
    assert stack.sim is not None and stack.observers is not None
    before = _quiet_counters(stack)
    report = FaultReport("stall", time.time())
    stack.sim.fault(action="stall", seconds=seconds)
    time.sleep(seconds)
    stack.sim.fault(action="resume")
    report.lifted = time.time()
    after = _quiet_counters(stack)
    clients = stack.observers.clients
    report.notes["closes"] = after["closes"] - before["closes"]
    report.notes["close_codes"] = [
        c.code for client in clients for c in client.closes if c.at > report.started
    ]
    report.notes["client_reconnects"] = after["connects"] - before["connects"]
    report.notes["feed_reconnects"] = {
        a: after["feed"].get(a, 0) - before["feed"].get(a, 0) for a in after["feed"]
    }
    report.notes["said_quiet"] = _status_said(stack, report.started + LIVE_GRACE, report.lifted)
    stack.wait_recovered(report, report.lifted, timeout=30)
    return checks.finish(stack, report, honest_until=report.lifted)


def drop(stack: ChaosStack, number: int = 1) -> FaultReport:
    """(d) one feed drop (the sockets just drop): reconnected and ticking again; the
    reconnect attempt number each account logged is in ``notes``."""
    assert stack.sim is not None
    holder = stack.holder()
    logged = len(holder.output())
    report = FaultReport(f"feed drop {number}", time.time())
    stack.sim.fault(action="drop", close_frame=False)
    report.lifted = report.started
    stack.wait_recovered(report, report.started + 0.3, timeout=45,
                         reconnected_after=report.started)  # fmt: skip
    attempts = {account: int(n) for account, n in ATTEMPT.findall(holder.output()[logged:])}
    report.notes["reconnect_attempt"] = attempts
    checks.honesty(stack, report, report.started, report.recovered or time.time())
    return report


def drops(stack: ChaosStack, count: int = 6) -> list[FaultReport]:
    """``count`` drops in a row, each after the last connection delivered ticks."""
    reports = [drop(stack, n + 1) for n in range(count)]
    checks.single_writer(stack, reports[-1], reports[0].started)
    checks.convergence(stack, reports[-1])
    return reports


def rest_crowd(stack: ChaosStack) -> FaultReport:
    """(g) three REST users of the same accounts at once: the standby's prime (the holder hands
    over with SIGTERM), a forced repopulate task and ``manage.py feedcheck``; every refusal
    (429, 805) the logs show is in ``notes``."""
    assert stack.sim is not None and stack.worker is not None
    from optionsite.celery import app

    holder = stack.holder()
    marks = {name: len(text) for name, text in _logs(stack).items()}
    worker_log = len(stack.worker.output())
    report = FaultReport("REST crowd", time.time(), notes={"old_pid": holder.process.pid})
    stack.expect_exit(holder)
    holder.signal(signal.SIGTERM)
    with app.connection_for_write(stack.redis.url(1)) as connection:
        app.send_task("chains.repopulate_chains", kwargs={"force": True}, connection=connection)
    check = Process(["manage.py", "feedcheck", "--timeout", "10", "--window", "2"], stack.env)
    try:
        report.lifted = report.started
        stack.wait_recovered(report, report.started + 0.5, timeout=40,
                             not_pid=holder.process.pid)  # fmt: skip
        report.notes["feedcheck_exit"] = check.wait(120)
    finally:
        check.stop()
        checked = check.output()
        Path(check.log.name).unlink()
    report.notes["feedcheck"] = tail(checked, 12)
    worker = stack.worker
    done = stack.wait(lambda: TASK_DONE.search(worker.output()[worker_log:]), 90,
                      "the repopulate task to finish")  # fmt: skip
    report.notes["task"] = done.group(0)[:300]
    refusals = [
        f"{name}: {line.strip()[:240]}"
        for name, text in _logs(stack).items()
        for line in text[marks.get(name, 0) :].splitlines()
        if REFUSAL.search(line)
    ]
    refusals += [f"feedcheck: {x.strip()[:240]}" for x in checked.splitlines() if REFUSAL.search(x)]
    report.notes["refusals"] = refusals
    return checks.finish(stack, report)


def kill_holder(stack: ChaosStack) -> FaultReport:
    """(b) kill -9 of the lock holder: the standby takes over."""
    holder = stack.holder()
    report = FaultReport("holder killed", time.time(), notes={"old_pid": holder.process.pid})
    stack.expect_exit(holder)
    holder.signal(signal.SIGKILL)
    holder.wait(10)
    report.lifted = report.started
    stack.wait_recovered(report, report.started, timeout=LOCK_TTL + 30,
                         not_pid=holder.process.pid)  # fmt: skip
    return checks.finish(stack, report)


def freeze_holder(stack: ChaosStack, seconds: float = LOCK_TTL + 5) -> FaultReport:
    """(c) SIGSTOP of the holder past its lock's TTL: the standby takes over; SIGCONT wakes
    the old holder, which must write nothing more (no delta, no snapshot of its run)."""
    assert stack.observers is not None
    holder = stack.holder()
    old_runs = {c.name: (stack.meta(c) or {}).get("run") for c in stack.chains}
    report = FaultReport("holder frozen", time.time(),
                         notes={"old_pid": holder.process.pid, "old_runs": old_runs})  # fmt: skip
    holder.signal(signal.SIGSTOP)
    report.lifted = report.started
    stack.wait_recovered(report, report.started + 0.5, timeout=LOCK_TTL + 30,
                         not_pid=holder.process.pid)  # fmt: skip
    time.sleep(max(0.0, seconds - (time.time() - report.started)))
    woke = time.time()
    holder.signal(signal.SIGCONT)
    time.sleep(5.0)  # the woken process's flushes, renewals and shutdown happen now
    for chain in stack.chains:
        old = old_runs[chain.name]
        late = [d for d in stack.observers.watcher.since(chain, woke) if d.run == old]
        if late:
            report.duplicate_writers.append(
                f"{chain.name}: the woken holder (pid {holder.process.pid}, run {short(old)}) "
                f"sent {len(late)} deltas after SIGCONT (seqs {[d.seq for d in late[:5]]}) "
                "although the standby had taken over"
            )
        meta = stack.meta(chain) or {}
        if old is not None and meta.get("run") == old:
            report.duplicate_writers.append(
                f"{chain.name}: the Redis snapshot is the woken holder's again (run "
                f"{short(old)}, seq {meta.get('seq')}) after SIGCONT"
            )
    return checks.finish(stack, report, honest_until=report.recovered)


def redis_restart(stack: ChaosStack, down: float = 10.0) -> FaultReport:
    """(a) Redis stops for ``down`` seconds and starts again on the same port, empty."""
    report = FaultReport("redis restart", time.time())
    stack.redis.stop()
    time.sleep(down)
    stack.redis.start()
    report.lifted = report.empty_store_since = time.time()
    stack.wait_recovered(report, report.lifted, timeout=30)
    return checks.finish(stack, report)


ORDER: list[tuple[str, Callable[[ChaosStack], Any]]] = [
    ("market closed", market_closed),
    ("stall", stall),
    ("feed drops", drops),
    ("REST crowd", rest_crowd),
    ("holder killed", kill_holder),
    ("holder frozen", freeze_holder),
    ("redis restart", redis_restart),
]


def _quiet_counters(stack: ChaosStack) -> dict[str, Any]:
    assert stack.observers is not None
    return {
        "closes": sum(len(c.closes) for c in stack.observers.clients),
        "connects": sum(c.connects for c in stack.observers.clients),
        "feed": {
            c.account: (stack.feed_status(c.account) or {}).get("reconnects", 0)
            for c in stack.chains
        },
    }


def _status_said(stack: ChaosStack, start: float, end: float) -> dict[str, list[Any]]:
    """What the status API said about each chain in [start, end] (distinct answers)."""
    assert stack.observers is not None
    said: dict[str, list[Any]] = {}
    for sample in stack.observers.sampler.between(start, end):
        if sample.surface == "status":
            seen = said.setdefault(sample.chain.name, [])
            if sample.said not in seen:
                seen.append(sample.said)
    return said


def _logs(stack: ChaosStack) -> dict[str, str]:
    """The logs a refusal would show in: every runfeed's, the Celery worker's, the
    simulator's (which logs each 805 it sends)."""
    assert stack.sim is not None and stack.worker is not None
    logs = {f"runfeed {p.process.pid}": p.output() for p in [*stack.feeds, *stack.retired]}
    logs["celery worker"] = stack.worker.output()
    logs["simulator"] = Path(stack.sim.stderr_path).read_text(errors="replace")
    return logs
