"""Feed pipeline end to end: the highest tick rate runfeed sustains on one core, and its CPU and
RSS at 20,000 ticks/s.

    python bench/pipeline.py [--minutes 10] [--brokers dhan,upstox] [--json]
                             [--rates 10000,20000,...] [--feed-root PATH]

Setup (one run): a temporary SQLite database, Redis database 13, ``manage.py runsim`` pinned
to the second core (universe ``--strikes 60 --weeklies 2 --monthlies 1``: 8 chains, 1,452
instruments) replaying a 100,000-step tape of its market model (``POST /sim/tape``: the model
costs ~8 µs a step, more than the rates measured here leave it), accounts wired as by
``simaccounts``. Per broker, the broker's account tracks every chain (so every market step is
a subscribed instrument's) and ``manage.py runfeed --account ...`` runs pinned to the first
core: decode → chain book → flush every 250 ms → Redis snapshot + channel-layer group_send.

Ramp: the simulator's rate (``POST /sim/rate``) steps up; after 4 s of settling, a 12 s window
is measured from samples aligned on runfeed's own status writes. A rate is **sustained** when
(1) the simulator generated ≥ 97 % of the asked steps (else the run is simulator-limited);
(2) the simulator never found runfeed's socket with more than 4 MB unread (its ``congested``
count) and dropped nothing; (3) runfeed decoded ≥ 98 % of the events the simulator sent in the
window (the backlog, sent − decoded, grew by less than 2 % of them); (4) no publish error. The
first failing rate is bisected once. DhanHQ sends one packet per tick, so events = ticks.
Upstox's feed conflates: each 50 ms frame carries the latest fields of every instrument that
changed, so runfeed receives fewer feed entries than market ticks; the rate reported is the
market's (what the pipeline absorbs) with the feed entries it became.

Soak: ``--minutes`` at 20,000 ticks/s; runfeed's CPU (utime+stime over wall time, 1.0 = one
core) and RSS every 10 s; the sustained criteria over the whole soak; the Redis snapshot's age
when read. RSS is **flat** when the highest RSS of the second half exceeds the highest of the
first half (after the first minute) by under 2 MB.

Baselines, same run, same frames: decode-only and decode + chain-book apply on one core in
this process (frames recorded from the simulator at 40,000 ticks/s with the account's own
subscriptions) — the ceiling without I/O or event loop; and the naive design,
``bench/_pertick_feed.py`` (one flush and one group message per tick, no coalescing), offered
2,000 ticks/s. ``--feed-root`` runs runfeed from another checkout (a proposed change) instead
of this one. Goals: ≥ 100,000 ticks/s sustained; at 20,000 ticks/s under half a core and flat
RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _stack

ACCOUNTS = {"dhan": "sim-dhan", "upstox": "sim-upstox"}
UNDERLYINGS = ["NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"]
SIM_ARGS = ["--strikes", "60", "--weeklies", "2", "--monthlies", "1", "--seed", "11"]
TAPE_STEPS = 100_000
RATES = [10_000, 20_000, 30_000, 40_000, 60_000, 80_000, 100_000, 120_000, 150_000, 200_000]
GOAL_RATE = 100_000
SOAK_RATE = 20_000
CPU_GOAL = 0.5
FLAT_MB = 2.0
SETTLE = 4.0
WINDOW = 12.0
NAIVE_RATE = 2_000
RECORD_RATE = 40_000


# --- measuring ------------------------------------------------------------------------------


class Probe:
    """Aligned samples of the simulator's counters and runfeed's status."""

    def __init__(self, url: str, broker: str, account: str) -> None:
        self.url, self.broker, self.account = url, broker, account
        self.redis = _stack.redis_client()

    def sample(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for runfeed's next status write, then read the simulator at once."""
        first = _stack.feed_status(self.redis, self.account)
        stamp = first and first.get("updated_at")
        deadline = time.monotonic() + timeout
        status = first
        while time.monotonic() < deadline:
            status = _stack.feed_status(self.redis, self.account)
            if status is not None and status.get("updated_at") != stamp:
                break
            time.sleep(0.01)
        at = time.monotonic()
        sim = _stack.sim_state(self.url)
        conns = sim["connections"][self.broker]
        return {
            "at": at,
            "steps": sim["steps"],
            "skipped": sim["skipped_steps"],
            "sent": sum(c["events_sent"] for c in conns),
            "congested": sum(c["congested"] for c in conns),
            "dropped": sum(c.get("dropped_packets", 0) for c in conns),
            "queued": sum(c["queued"] for c in conns),
            "received": status["ticks"] if status else 0,
            "frames": status["frames"] if status else 0,
            "publish_errors": status["publish_errors"] if status else 0,
            "deltas": status["deltas"] if status else 0,
            "state": status["state"] if status else "down",
            "status": status,
        }


def window(a: dict[str, Any], b: dict[str, Any], asked: float) -> dict[str, Any]:
    """Figures between two samples and whether the rate was sustained (see the docstring)."""
    dt = b["at"] - a["at"]
    steps = b["steps"] - a["steps"]
    sent = b["sent"] - a["sent"]
    received = b["received"] - a["received"]
    backlog_growth = (b["sent"] - b["received"]) - (a["sent"] - a["received"])
    simulator_ok = steps >= 0.97 * asked * dt
    checks = {
        "simulator_kept_rate": simulator_ok,
        "no_congestion": b["congested"] == a["congested"] and b["dropped"] == a["dropped"],
        "decoded_98pct": sent > 0 and backlog_growth <= 0.02 * sent,
        "no_publish_errors": b["publish_errors"] == a["publish_errors"],
        "feed_live": b["state"] in ("live", "quiet"),
    }
    return {
        "asked_per_s": asked,
        "seconds": round(dt, 2),
        "market_ticks_per_s": steps / dt,
        "events_sent_per_s": sent / dt,
        "events_decoded_per_s": received / dt,
        "frames_per_s": (b["frames"] - a["frames"]) / dt,
        "deltas_per_s": (b["deltas"] - a["deltas"]) / dt,
        "backlog_growth": backlog_growth,
        "congested": b["congested"] - a["congested"],
        "dropped": b["dropped"] - a["dropped"],
        "checks": checks,
        "sustained": all(checks.values()),
        "simulator_limited": not simulator_ok,
    }


def drain(probe: Probe, timeout: float = 90.0) -> None:
    """Slow the market down until runfeed has caught up with everything sent (after a rate
    it could not sustain), so the next window starts without a backlog."""
    _stack.sim_post(probe.url, "/sim/rate", {"ticks_per_second": 1000})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sample = probe.sample()
        if sample["queued"] == 0 and sample["sent"] - sample["received"] < 2000:
            return
    raise RuntimeError(f"runfeed did not catch up within {timeout}s: {sample}")


def measure(probe: Probe, feed_pid: int, rate: int, seconds: float) -> dict[str, Any]:
    _stack.sim_post(probe.url, "/sim/rate", {"ticks_per_second": rate})
    time.sleep(SETTLE)
    usage = _stack.Usage({"runfeed": feed_pid})
    a = probe.sample()
    usage.start()
    time.sleep(seconds)
    b = probe.sample()
    result = window(a, b, rate)
    result["runfeed_cpu"] = usage.cpu()["runfeed"]
    result["runfeed_rss_mb"] = _stack.rss_mb(feed_pid)
    return result


def ramp(probe: Probe, feed_pid: int, rates: list[int], log: Any) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    best: int | None = None
    failed: int | None = None
    for rate in rates:
        step = measure(probe, feed_pid, rate, WINDOW)
        steps.append(step)
        log(_step_line(step))
        if step["sustained"]:
            best = rate
            continue
        failed = rate
        break
    if best is not None and failed is not None and not steps[-1]["simulator_limited"]:
        drain(probe)
        middle = (best + failed) // 2
        step = measure(probe, feed_pid, middle, WINDOW)
        steps.append(step)
        log(_step_line(step))
        if step["sustained"]:
            best = middle
    limited = bool(steps) and steps[-1]["simulator_limited"] and not steps[-1]["sustained"]
    drain(probe)
    return {"steps": steps, "max_sustained_per_s": best, "first_failing_per_s": failed,
            "stopped_by_simulator": limited}  # fmt: skip


def soak(probe: Probe, feed_pid: int, minutes: float, log: Any) -> dict[str, Any]:
    _stack.sim_post(probe.url, "/sim/rate", {"ticks_per_second": SOAK_RATE})
    time.sleep(SETTLE)
    usage = _stack.Usage({"runfeed": feed_pid})
    first = probe.sample()
    usage.start()
    rss: list[tuple[float, float]] = []
    cpu_by_minute: list[float] = []
    ages: list[float] = []
    end = time.monotonic() + minutes * 60
    minute = _stack.Usage({"runfeed": feed_pid})
    minute.start()
    while time.monotonic() < end:
        time.sleep(min(10.0, max(0.0, end - time.monotonic())))
        rss.append((time.monotonic() - usage.started, _stack.rss_mb(feed_pid)))
        age = snapshot_age(probe.redis)
        if age is not None:
            ages.append(age)
        if time.monotonic() - minute.started >= 60:
            cpu_by_minute.append(minute.cpu()["runfeed"])
            log(f"  soak minute {len(cpu_by_minute)}: CPU {cpu_by_minute[-1]:.2f}, "
                f"RSS {rss[-1][1]:.1f} MB")  # fmt: skip
            minute = _stack.Usage({"runfeed": feed_pid})
            minute.start()
    last = probe.sample()
    result = window(first, last, SOAK_RATE)
    result["runfeed_cpu"] = usage.cpu()["runfeed"]
    result["cpu_by_minute"] = cpu_by_minute
    after_warmup = [mb for t, mb in rss if t >= 60] or [mb for _, mb in rss]
    half = len(after_warmup) // 2
    growth = max(after_warmup[half:]) - max(after_warmup[: max(half, 1)])
    result["rss_mb"] = {"first": rss[0][1] if rss else None, "last": rss[-1][1] if rss else None,
                        "max": max(mb for _, mb in rss) if rss else None,
                        "growth_second_half": growth, "samples": rss}  # fmt: skip
    result["rss_flat"] = growth < FLAT_MB
    result["snapshot_age_s"] = _spread(ages)
    return result


def snapshot_age(redis: Any) -> float | None:
    """Seconds since the as_of of the first chain snapshot found (how stale a reader's data is)."""
    keys = sorted(redis.scan_iter("optionsite:chain-meta:*", count=100))
    if not keys:
        return None
    meta = json.loads(redis.get(keys[0]) or "null")
    if not meta or not meta.get("as_of"):
        return None
    return time.time() - datetime.fromisoformat(meta["as_of"]).timestamp()


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "max": ordered[-1], "n": len(ordered)}


def _step_line(step: dict[str, Any]) -> str:
    failed = [k for k, ok in step["checks"].items() if not ok]
    verdict = "sustained" if step["sustained"] else f"NOT sustained ({', '.join(failed)})"
    return (
        f"  {step['asked_per_s']:>8,} asked: market {step['market_ticks_per_s']:>9,.0f}/s, "
        f"sent {step['events_sent_per_s']:>8,.0f}/s, decoded {step['events_decoded_per_s']:>8,.0f}/s, "
        f"runfeed CPU {step['runfeed_cpu']:.2f} — {verdict}"
    )


# --- baselines ------------------------------------------------------------------------------


def record_frames(url: str, account: str, rate: int, seconds: float) -> tuple[list[bytes], Any]:
    """Frames of the account's own subscriptions at ``rate``, and the account's plans."""
    from asgiref.sync import async_to_sync
    from websockets.asyncio.client import connect

    from brokers.accounts import account_config
    from brokers.adapters import adapter_for
    from chains.plan import chain_plans

    config = account_config(account)
    plans = chain_plans(account)
    adapter = adapter_for(config)
    index = list({p.index: None for p in plans})
    legs = [leg.ref for p in plans for leg in p.legs]

    async def run() -> list[bytes]:
        feed_url, _ = await adapter.feed_url()
        frames: list[bytes] = []
        async with connect(feed_url, max_size=2**23, max_queue=None) as ws:
            for message in adapter.subscribe(index, legs):
                await ws.send(message)
            await asyncio.sleep(1.0)
            _stack.sim_post(url, "/sim/rate", {"ticks_per_second": rate})
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    frame = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                if isinstance(frame, bytes):
                    frames.append(frame)
            _stack.sim_post(url, "/sim/rate", {"ticks_per_second": 1000})
        await adapter.aclose()
        return frames

    return async_to_sync(run)(), (adapter, plans)


def offline_rates(frames: list[bytes], adapter: Any, plans: Any) -> dict[str, float]:
    """Decode-only and decode + apply, ticks per second on one core (best of 3)."""
    from brokers.ticks import Tick
    from chains.book import FeedBook

    decode = adapter.decode
    ticks = sum(1 for f in frames for e in decode(f) if type(e) is Tick)

    def decode_only() -> None:
        for frame in frames:
            decode(frame)

    def decode_apply() -> None:
        book = FeedBook([p.new_book() for p in plans])
        apply = book.apply
        now = time.time()
        for frame in frames:
            for event in decode(frame):
                if type(event) is Tick:
                    apply(event, now)

    out = {"frames": len(frames), "ticks": ticks}
    for name, run in (("decode_only_per_s", decode_only), ("decode_apply_per_s", decode_apply)):
        best = min(_timed(run) for _ in range(3))
        out[name] = ticks / best
    return out


def _timed(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def naive(stack: _stack.Stack, probe: Probe, feed_core: int, log: Any) -> dict[str, Any]:
    """The per-tick publisher at NAIVE_RATE: what it decodes, sends and drops."""
    proc = stack.start("pertick", ["bench/_pertick_feed.py", "--account", probe.account],
                       cpu_set=[feed_core])  # fmt: skip
    try:
        _wait_live(probe, proc)
        _stack.sim_post(probe.url, "/sim/rate", {"ticks_per_second": NAIVE_RATE})
        time.sleep(SETTLE)
        usage = _stack.Usage({"pertick": proc.pid})
        a = probe.sample()
        usage.start()
        time.sleep(WINDOW)
        b = probe.sample()
        result = window(a, b, NAIVE_RATE)
        sa, sb = a["status"], b["status"]
        dt = b["at"] - a["at"]
        result["group_messages_per_s"] = (sb["pertick_sent"] - sa["pertick_sent"]) / dt
        result["dropped_deltas_per_s"] = (sb["pertick_dropped"] - sa["pertick_dropped"]) / dt
        result["queue_at_end"] = sb["pertick_queue"]
        result["cpu"] = usage.cpu()["pertick"]
        kept_up = (
            result["sustained"]
            and sb["pertick_dropped"] == sa["pertick_dropped"]
            and (sb["pertick_queue"] < NAIVE_RATE)
        )
        result["kept_up"] = kept_up
        log(f"  naive per-tick publisher at {NAIVE_RATE:,}/s: decoded "
            f"{result['events_decoded_per_s']:,.0f}/s, sent {result['group_messages_per_s']:,.0f}"
            f" group messages/s, dropped {result['dropped_deltas_per_s']:,.0f}/s, queue "
            f"{result['queue_at_end']:,}, CPU {result['cpu']:.2f}")  # fmt: skip
        return result
    finally:
        _stack.sim_post(probe.url, "/sim/rate", {"ticks_per_second": 1000})
        stack.stop(proc)


# --- the run --------------------------------------------------------------------------------


def track_only(account: str) -> None:
    """``account`` tracks every chain of every underlying (enabled); the others nothing."""
    from brokers.models import BrokerAccount, Instrument, InstrumentKind, TrackedChain

    TrackedChain.objects.all().delete()
    for other in BrokerAccount.objects.all():
        other.enabled = other.name == account
        other.save(update_fields=["enabled"])
    mine = BrokerAccount.objects.get(name=account)
    for underlying in UNDERLYINGS:
        index = Instrument.objects.get(account=mine, kind=InstrumentKind.INDEX,
                                       underlying=underlying)  # fmt: skip
        TrackedChain.objects.create(account=mine, underlying=underlying, index_instrument=index,
                                    expiries=5)  # fmt: skip


def _wait_live(probe: Probe, proc: _stack.Proc) -> None:
    def live() -> bool:
        status = _stack.feed_status(probe.redis, probe.account)
        return bool(status and status["state"] == "live" and status["ticks"] > 100
                    and all(c["ready"] for c in status["chains"]))  # fmt: skip

    _stack.wait_for(live, timeout=120, what=f"{probe.account} live and populated", proc=proc)


def run_broker(
    stack: _stack.Stack, url: str, broker: str, args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    account = ACCOUNTS[broker]
    track_only(account)
    feed_core, others = args.feed_core, args.other_cores
    probe = Probe(url, broker, account)
    log(f"{broker}: recording frames at {RECORD_RATE:,}/s for the offline baselines")
    frames, (adapter, plans) = record_frames(url, account, RECORD_RATE, 3.0)
    os.sched_setaffinity(0, {feed_core})  # the baselines on runfeed's core, alone
    offline = offline_rates(frames, adapter, plans)
    os.sched_setaffinity(0, set(others))
    del frames
    log(f"  offline, one core: decode {offline['decode_only_per_s']:,.0f} ticks/s, decode + "
        f"apply {offline['decode_apply_per_s']:,.0f} ticks/s ({offline['ticks']:,} ticks)")  # fmt: skip
    root = args.feed_root or str(_stack.ROOT)
    feed = stack.start(f"runfeed-{broker}", ["manage.py", "runfeed", "--account", account],
                       cpu_set=[feed_core], cwd=root)  # fmt: skip
    try:
        _wait_live(probe, feed)
        legs = sum(c["legs"] for c in _stack.feed_status(probe.redis, account)["chains"])
        log(f"{broker}: runfeed live on core {feed_core}, {legs:,} legs; ramp")
        ramped = ramp(probe, feed.pid, args.rates, log)
        log(f"{broker}: soak at {SOAK_RATE:,}/s for {args.minutes} min")
        soaked = soak(probe, feed.pid, args.minutes, log)
    finally:
        _stack.sim_post(url, "/sim/rate", {"ticks_per_second": 1000})
        stack.stop(feed)
    baseline = naive(stack, probe, feed_core, log) if not args.skip_naive else None
    best = ramped["max_sustained_per_s"]
    return {
        "account": account,
        "legs": legs,
        "ramp": ramped,
        "soak": soaked,
        "offline_one_core": offline,
        "naive_per_tick": baseline,
        "goals": {
            "sustains_100k": best is not None and best >= GOAL_RATE,
            "soak_under_half_core": soaked["runfeed_cpu"] < CPU_GOAL,
            "soak_rss_flat": soaked["rss_flat"],
            "soak_sustained": soaked["sustained"],
        },
    }


def cores() -> tuple[int, list[int]]:
    """(runfeed's core, the others' cores)."""
    available = _stack.cpus()
    return available[0], (available[1:] or available)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak at 20,000 ticks/s")
    parser.add_argument("--brokers", default="dhan,upstox")
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=RATES)
    parser.add_argument("--feed-root", help="run runfeed from this checkout instead")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    feed_core, others = cores()
    args.feed_core, args.other_cores = feed_core, others
    os.sched_setaffinity(0, set(others))  # this process and what it starts stay off runfeed's
    results: dict[str, Any] = {"cores": {"runfeed": feed_core, "others": others}}
    with _stack.Stack() as stack:
        _stack.setup_django(stack)
        _sim, url = _stack.start_simulator(stack, "--ticks-per-second", "1000", *SIM_ARGS,
                                          cpu_set=others)  # fmt: skip
        _stack.wire_accounts(url, {}, expiries=1)
        _stack.sim_post(url, "/sim/tape", {"steps": TAPE_STEPS})
        started = time.monotonic()
        for broker in args.brokers.split(","):
            results[broker] = run_broker(stack, url, broker, args, log)
        results["seconds"] = round(time.monotonic() - started)
    if args.json:
        print(json.dumps({"benchmark": "pipeline", "results": _trim(results)}, indent=2))
        return
    report(results, args)


def _trim(results: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(results, default=str))


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    for broker in args.brokers.split(","):
        r = results[broker]
        ramped, soaked, off, base = r["ramp"], r["soak"], r["offline_one_core"], r["naive_per_tick"]
        print(f"== {broker} ({r['account']}, {r['legs']:,} legs, runfeed on one core)")
        best = ramped["max_sustained_per_s"]
        print(f"max sustained rate      {best or 0:>10,} market ticks/s"
              + (f"  (first failing {ramped['first_failing_per_s']:,})"
                 if ramped["first_failing_per_s"] else "")
              + ("  [stopped by the simulator]" if ramped["stopped_by_simulator"] else ""))  # fmt: skip
        at_best = [s for s in ramped["steps"] if s["asked_per_s"] == best and s["sustained"]]
        if at_best:
            s = at_best[-1]
            print(f"  at that rate          {s['events_decoded_per_s']:>10,.0f} events decoded/s, "
                  f"{s['frames_per_s']:,.0f} frames/s, runfeed CPU {s['runfeed_cpu']:.2f}")  # fmt: skip
        print(f"soak {SOAK_RATE:,}/s, {args.minutes:g} min: CPU {soaked['runfeed_cpu']:.2f} core, "
              f"RSS {soaked['rss_mb']['first']:.1f} → {soaked['rss_mb']['last']:.1f} MB "
              f"(max {soaked['rss_mb']['max']:.1f}, second-half growth "
              f"{soaked['rss_mb']['growth_second_half']:+.1f} MB), "
              f"{'sustained' if soaked['sustained'] else 'NOT sustained'}")  # fmt: skip
        if soaked["snapshot_age_s"]:
            age = soaked["snapshot_age_s"]
            print(
                f"  Redis snapshot age when read: median {age['median']:.2f} s, max {age['max']:.2f} s"
            )
        print(f"baseline, offline one core: decode-only {off['decode_only_per_s']:>10,.0f} ticks/s, "
              f"decode+apply {off['decode_apply_per_s']:,.0f} ticks/s")  # fmt: skip
        if base:
            print(f"baseline, per-tick publish at {NAIVE_RATE:,}/s: decoded "
                  f"{base['events_decoded_per_s']:,.0f}/s, {base['group_messages_per_s']:,.0f} "
                  f"group messages/s, dropped {base['dropped_deltas_per_s']:,.0f}/s, CPU "
                  f"{base['cpu']:.2f} — {'kept up' if base['kept_up'] else 'fell behind'}")  # fmt: skip
        goals = r["goals"]
        print(
            f"goal ≥ {GOAL_RATE:,} ticks/s sustained: {'met' if goals['sustains_100k'] else 'MISSED'}"
        )
        print(f"goal < {CPU_GOAL} core at {SOAK_RATE:,}/s: {'met' if goals['soak_under_half_core'] else 'MISSED'}; "
              f"flat RSS: {'met' if goals['soak_rss_flat'] else 'MISSED'}")  # fmt: skip
        print()
    print(f"({results['seconds']} s)")


if __name__ == "__main__":
    main()
