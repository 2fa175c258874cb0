"""Fan-out to browsers: 500 WebSocket clients over 4 chains at 20,000 ticks/s, end to end.

    python bench/fanout.py [--clients 500] [--client-procs 2] [--daphnes 2] [--seconds 60]
                           [--rate 20000] [--skip-baseline] [--json]

Setup: a temporary SQLite database, Redis database 13, ``manage.py runsim`` (universe
``--weeklies 1 --monthlies 1``: 81 strikes, 162 legs a chain) replaying a 100,000-step tape at
``--rate``; the account sim-upstox tracks the nearest expiry of NIFTY, BANKNIFTY, FINNIFTY and
SENSEX (Upstox stamps exchange times to the millisecond; DhanHQ only to the second, too coarse
to time a 500 ms goal); ``manage.py runfeed``; ``--daphnes`` daphne processes with
``CHAINS_PUBLIC=1`` (and ``WS_MAX_SOCKETS_PER_IP=0``: every client is on 127.0.0.1);
``--client-procs`` processes of ``bench/_fanout_client.py`` holding the clients, spread evenly
over the chains and the daphnes. Nothing is pinned: the processes share this machine's cores,
as they would share a small server.

Measured over ``--seconds`` after a 10 s warm-up:

* latency: for every leg of every delta a client receives that carries a new tick (its
  ``exchange_time`` changed; legs re-sent only because the forward moved their greeks are not
  deliveries), receipt time − that ``exchange_time`` (the simulator's tick time): simulator
  batching + the exchange's
  conflation (Upstox frames every 50 ms) + runfeed's 250 ms flush + channel layer + daphne +
  the client — p50/p99/max;
* messages/s and bytes/s the clients receive; CPU of every process (1.0 = one core),
  Redis included;
* channel-layer traffic: group messages the feed sends per second, the channel messages Redis
  stores for them (one per member channel: ``group_send`` writes each subscriber's copy), and
  Redis's network bytes in/out per second;
* final state: the simulator is stalled, everything settles (no snapshot ``seq`` moves for 2 s,
  then 2 s more), and each client's reconstructed chain (seq, as_of, header, every leg) is
  compared with the chain's Redis snapshot by SHA-256 — a client that differs is divergent.

Baseline, same run: ``bench/_pertick_feed.py`` in place of runfeed — one flush and one group
message per tick, the naive design — measured the same way. It cannot send a group message
per tick at this rate and drops the excess (counted), so channel-layer traffic is compared per
tick: group messages sent or dropped for want of capacity, divided by ticks decoded (the
absolute ratio of what each sent is printed too). Goals: p99 ≤ 500 ms, zero divergent
clients, ≥ 10× less channel-layer traffic than the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _stack
from bench._fanout_client import state_digest

ACCOUNT = "sim-upstox"
UNDERLYINGS = ["NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"]
SIM_ARGS = ["--weeklies", "1", "--monthlies", "1", "--seed", "21"]
TAPE_STEPS = 100_000
WARMUP = 10.0
P99_GOAL_MS = 500.0
TRAFFIC_GOAL = 10.0


def chains_tracked() -> list[tuple[str, str]]:
    from brokers.models import BrokerAccount
    from chains.plan import nearest_expiries

    account = BrokerAccount.objects.get(name=ACCOUNT)
    return [(u, nearest_expiries(account, u, 1)[0].isoformat()) for u in UNDERLYINGS]


def redis_counters(redis: Any) -> dict[str, float]:
    stats = redis.info("stats")
    commands = redis.info("commandstats")

    def calls(name: str) -> int:
        return int(commands.get(f"cmdstat_{name}", {}).get("calls", 0))

    return {
        "net_in": stats["total_net_input_bytes"],
        "net_out": stats["total_net_output_bytes"],
        "eval": calls("eval") + calls("evalsha"),
        "zadd": calls("zadd"),
        "bzpopmin": calls("bzpopmin"),
        "zpopmin": calls("zpopmin"),
        "zremrangebyscore": calls("zremrangebyscore"),
        "at": time.monotonic(),
    }


def feed_counters(redis: Any, account: str) -> dict[str, Any]:
    status = _stack.feed_status(redis, account) or {}
    return {"deltas": status.get("deltas", 0), "ticks": status.get("ticks", 0),
            "sent": status.get("pertick_sent", status.get("deltas", 0)),
            "dropped": status.get("pertick_dropped", 0)}  # fmt: skip


def percentile(histogram: dict[int, int], q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * (total - 1)
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen > rank:
            return float(ms)
    return float(max(histogram))


def settle(redis: Any, chains: list[tuple[str, str]], quiet: float = 2.0) -> None:
    """Wait until no chain snapshot's seq moved for ``quiet`` seconds, then ``quiet`` more."""

    def seqs() -> list[Any]:
        out = []
        for underlying, expiry in chains:
            raw = redis.get(f"optionsite:chain-meta:{underlying}:{expiry}")
            out.append(json.loads(raw)["seq"] if raw else None)
        return out

    last, since = seqs(), time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = seqs()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            time.sleep(quiet)
            return
    raise RuntimeError("the chains did not settle within 120 s of the stall")


def redis_digests(
    redis: Any, chains: list[tuple[str, str]]
) -> tuple[dict[str, str], dict[str, int]]:
    """Each chain's digest and seq as its Redis snapshot has them (the truth)."""
    digests, seqs = {}, {}
    for underlying, expiry in chains:
        snap = json.loads(redis.get(f"optionsite:chain:{underlying}:{expiry}"))
        digests[underlying] = state_digest(snap["seq"], snap["as_of"], snap, snap["strikes"])
        seqs[underlying] = snap["seq"]
    return digests, seqs


def await_delivery(outs: list[Path], log: Any, patience: float = 20.0) -> dict[str, Any]:
    """Wait until every client reached its chain's final seq, or no client's seq moved for
    ``patience`` seconds (at most 300 s); returns how long it took and how many reached it."""
    started = time.monotonic()
    best, since = -1, started
    reached = total = 0
    while time.monotonic() - started < 300:
        time.sleep(0.5)
        reached = total = seqs = 0
        for out in outs:
            try:
                progress = json.loads(Path(str(out) + ".progress").read_text())
            except (OSError, ValueError):
                continue
            reached += progress["reached"]
            total += progress["total"]
            seqs += progress["seqs"]
        if total and reached == total:
            break
        if seqs > best:  # some client is still catching up
            best, since = seqs, time.monotonic()
        elif time.monotonic() - since > patience:
            break
    seconds = time.monotonic() - started
    log(f"  {reached}/{total} clients reached the final state {seconds:.1f} s after settling")
    return {"reached": reached, "seconds": round(seconds, 1)}


def run_phase(
    stack: _stack.Stack, sim: tuple[_stack.Proc, str], args: argparse.Namespace,
    feed_args: list[str], feed_cwd: str, label: str, daphnes: list[tuple[_stack.Proc, int]],
    log: Any,
) -> dict[str, Any]:  # fmt: skip
    sim_proc, url = sim
    redis = _stack.redis_client()
    chains = chains_tracked()
    feed = stack.start(f"feed-{label}", feed_args, cwd=feed_cwd)
    _stack.wait_for(
        lambda: (s := _stack.feed_status(redis, ACCOUNT)) and s["state"] == "live"
        and len(s["chains"]) == len(chains) and all(c["ready"] for c in s["chains"]),
        timeout=120, what=f"{label} feed live", proc=feed,
    )  # fmt: skip
    _stack.sim_post(url, "/sim/faults", {"action": "clear"})
    _stack.sim_post(url, "/sim/rate", {"ticks_per_second": args.rate})
    control = stack.tmp / f"control-{label}"
    control.write_text("warmup")
    spec = ",".join(f"{u}={e}" for u, e in chains)
    clients = []
    per_proc = args.clients // args.client_procs
    for n in range(args.client_procs):
        count = per_proc if n < args.client_procs - 1 else args.clients - per_proc * n
        _, port = daphnes[n % len(daphnes)]
        out = stack.tmp / f"clients-{label}-{n}.json"
        proc = stack.start(f"clients-{label}-{n}", [
            "bench/_fanout_client.py", "--base", f"ws://127.0.0.1:{port}",
            "--origin", f"http://127.0.0.1:{port}", "--chains", spec, "--clients", str(count),
            "--first", str(n * per_proc), "--control", str(control), "--out", str(out),
        ])  # fmt: skip
        clients.append((proc, out, count))
    for proc, out, _ in clients:
        _stack.wait_for(lambda out=out: Path(str(out) + ".connected").exists(), timeout=300,
                        what="clients connected", proc=proc)  # fmt: skip
    connected = sum(int(Path(str(out) + ".connected").read_text()) for _, out, _ in clients)
    log(f"{label}: {connected}/{args.clients} clients connected; warm-up {WARMUP:.0f} s")
    time.sleep(WARMUP)
    pids = {"simulator": sim_proc.pid, "feed": feed.pid}
    pids.update({f"daphne-{n}": d.pid for n, (d, _) in enumerate(daphnes)})
    pids.update({f"clients-{n}": p.pid for n, (p, _, _) in enumerate(clients)})
    redis_pid = int(redis.info("server")["process_id"])
    pids["redis"] = redis_pid
    usage = _stack.Usage(pids)
    layer0, feed0 = redis_counters(redis), feed_counters(redis, ACCOUNT)
    usage.start()
    control.write_text("measure")
    time.sleep(args.seconds)
    control.write_text("settle")
    cpu = usage.cpu()
    layer1, feed1 = redis_counters(redis), feed_counters(redis, ACCOUNT)
    rss = {name: _stack.rss_mb(pid) for name, pid in pids.items()}
    _stack.sim_post(url, "/sim/faults", {"action": "stall"})
    log(f"{label}: measured {args.seconds:.0f} s; stalled the simulator, settling")
    settle(redis, chains)
    truth, final = redis_digests(redis, chains)
    control.write_text("settle\n" + json.dumps(final))
    delivered = await_delivery([out for _, out, _ in clients], log)
    control.write_text("report")
    results = []
    for proc, out, _ in clients:
        _stack.wait_for(lambda out=out: out.exists(), timeout=120, what="client results",
                        proc=proc)  # fmt: skip
        results.append(json.loads(out.read_text()))
        stack.stop(proc)
    stack.stop(feed)
    _stack.sim_post(url, "/sim/faults", {"action": "clear"})
    summary = summarise(args, label, results, truth, chains, cpu, rss, layer0, layer1, feed0,
                        feed1)  # fmt: skip
    summary["delivery_after_stall"] = delivered
    return summary


def summarise(args: argparse.Namespace, label: str, results: list[dict[str, Any]],
              truth: dict[str, str], chains: list[tuple[str, str]], cpu: dict[str, float],
              rss: dict[str, float], layer0: dict[str, float], layer1: dict[str, float],
              feed0: dict[str, Any], feed1: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    histogram: dict[int, int] = {}
    for r in results:
        for ms, n in r["histogram"].items():
            histogram[int(ms)] = histogram.get(int(ms), 0) + n
    seconds = layer1["at"] - layer0["at"]
    by_underlying = {u: truth[u] for u, _ in chains}
    clients = [c for r in results for c in r["clients"]]
    divergent = [c for c in clients
                 if c["digest"] != by_underlying[c["url"].split("/")[-1].split("?")[0]]]  # fmt: skip
    group_messages = feed1["sent"] - feed0["sent"]
    demanded = group_messages + feed1["dropped"] - feed0["dropped"]  # the baseline drops some
    ticks = feed1["ticks"] - feed0["ticks"]
    messages = sum(r["messages_measuring"] for r in results)
    return {
        "label": label,
        "seconds": round(seconds, 1),
        "clients": len(clients),
        "connected": sum(c["connected"] for c in clients),
        "client_errors": [c["error"] for c in clients if c["error"]][:5],
        "latency_ms": {
            "p50": percentile(histogram, 0.50),
            "p99": percentile(histogram, 0.99),
            "max": float(max(histogram)) if histogram else None,
            "samples": sum(histogram.values()),
        },
        "client_messages_per_s": messages / seconds,
        "client_legs_per_s": sum(r["legs_measuring"] for r in results) / seconds,
        "client_mb_per_s": sum(r["bytes_measuring"] for r in results) / seconds / 1e6,
        "resync_snapshots": sum(c["snapshots"] - 1 for c in clients if c["snapshots"]),
        "client_seen_gaps": sum(c["gaps"] for c in clients),
        "divergent_clients": len(divergent),
        "feed_ticks_per_s": (feed1["ticks"] - feed0["ticks"]) / seconds,
        "feed_dropped_per_s": (feed1["dropped"] - feed0["dropped"]) / seconds,
        "layer": {
            "group_messages_per_s": group_messages / seconds,
            "group_messages_demanded_per_s": demanded / seconds,
            "group_messages_per_tick": demanded / ticks if ticks else None,
            "channel_messages_per_s": (layer1["zadd"] - layer0["zadd"]) / seconds,
            "eval_calls_per_s": (layer1["eval"] - layer0["eval"]) / seconds,
            "redis_mb_in_per_s": (layer1["net_in"] - layer0["net_in"]) / seconds / 1e6,
            "redis_mb_out_per_s": (layer1["net_out"] - layer0["net_out"]) / seconds / 1e6,
        },
        "cpu": cpu,
        "rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--daphnes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--feed-root", help="run runfeed and daphne from this checkout instead")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    # Every client connects from 127.0.0.1 without a login: no per-address socket cap.
    stack = _stack.Stack(extra_env={"CHAINS_PUBLIC": "1", "WS_MAX_SOCKETS_PER_IP": "0"})
    phases: dict[str, Any] = {}
    with stack:
        _stack.setup_django(stack)
        sim = _stack.start_simulator(stack, "--ticks-per-second", "1000", *SIM_ARGS)
        url = sim[1]
        _stack.wire_accounts(url, {ACCOUNT: UNDERLYINGS}, expiries=1)
        _stack.sim_post(url, "/sim/tape", {"steps": TAPE_STEPS})
        root = args.feed_root or str(_stack.ROOT)
        daphnes = []
        for n in range(args.daphnes):
            port = _stack.free_port()
            proc = stack.start(f"daphne-{n}", ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                               "optionsite.asgi:application"], cwd=root)  # fmt: skip
            daphnes.append((proc, port))
        for proc, port in daphnes:
            _stack.wait_for(lambda port=port: _answers(port), timeout=60, what="daphne", proc=proc)
        feed = ["manage.py", "runfeed", "--account", ACCOUNT]
        phases["coalesced"] = run_phase(stack, sim, args, feed, root, "coalesced", daphnes, log)
        if not args.skip_baseline:
            naive = [str(_stack.ROOT / "bench" / "_pertick_feed.py"), "--account", ACCOUNT]
            phases["per_tick"] = run_phase(stack, sim, args, naive, root, "per_tick", daphnes, log)
    ours, base = phases["coalesced"], phases.get("per_tick")
    ratio = measured_ratio = None
    if base and ours["layer"]["group_messages_per_tick"]:
        # Per tick: the baseline cannot carry 20,000 group messages a second (it drops them),
        # so what it sends understates what its design asks of the channel layer.
        ratio = base["layer"]["group_messages_per_tick"] / ours["layer"]["group_messages_per_tick"]
        measured_ratio = base["layer"]["group_messages_per_s"] / max(
            ours["layer"]["group_messages_per_s"], 1e-9
        )
    p99 = ours["latency_ms"]["p99"]
    results = {
        **phases,
        "channel_traffic_ratio_baseline_over_ours": ratio,
        "channel_traffic_ratio_measured": measured_ratio,
        "goal_met": {
            "p99_le_500ms": p99 is not None and p99 <= P99_GOAL_MS,
            "zero_divergence": ours["divergent_clients"] == 0 and ours["connected"] == args.clients,
            "ten_x_less_channel_traffic": ratio is not None and ratio >= TRAFFIC_GOAL,
        },
        "when": datetime.now(UTC).isoformat(),
    }
    if args.json:
        print(json.dumps({"benchmark": "fanout", "results": results}, indent=2))
        return
    report(results)


def _answers(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def report(results: dict[str, Any]) -> None:
    names = [n for n in ("coalesced", "per_tick") if n in results]
    rows = [
        ("clients connected", lambda p: f"{p['connected']}/{p['clients']}"),
        ("latency p50 ms", lambda p: _num(p["latency_ms"]["p50"])),
        ("latency p99 ms", lambda p: _num(p["latency_ms"]["p99"])),
        ("latency max ms", lambda p: _num(p["latency_ms"]["max"])),
        ("latency samples", lambda p: f"{p['latency_ms']['samples']:,}"),
        ("feed ticks/s", lambda p: f"{p['feed_ticks_per_s']:,.0f}"),
        ("messages/s to clients", lambda p: f"{p['client_messages_per_s']:,.0f}"),
        ("leg updates/s to clients", lambda p: f"{p['client_legs_per_s']:,.0f}"),
        ("MB/s to clients", lambda p: f"{p['client_mb_per_s']:,.1f}"),
        ("resync snapshots", lambda p: f"{p['resync_snapshots']:,}"),
        ("divergent clients", lambda p: f"{p['divergent_clients']}"),
        ("group messages/s sent", lambda p: f"{p['layer']['group_messages_per_s']:,.1f}"),
        ("  + dropped (demanded)", lambda p: f"{p['layer']['group_messages_demanded_per_s']:,.1f}"),
        ("group messages per tick", lambda p: _ratio(p["layer"]["group_messages_per_tick"])),
        (
            "clients at final state",
            lambda p: (
                f"{p['delivery_after_stall']['reached']} after "
                f"{p['delivery_after_stall']['seconds']} s"
            ),
        ),
        ("channel messages/s", lambda p: f"{p['layer']['channel_messages_per_s']:,.0f}"),
        (
            "Redis MB/s in / out",
            lambda p: (
                f"{p['layer']['redis_mb_in_per_s']:.1f} / {p['layer']['redis_mb_out_per_s']:.1f}"
            ),
        ),
        ("feed deltas dropped/s", lambda p: f"{p['feed_dropped_per_s']:,.0f}"),
    ]
    procs = sorted({k for n in names for k in results[n]["cpu"]})
    rows += [(f"CPU {name}", lambda p, name=name: f"{p['cpu'].get(name, 0):.2f}") for name in procs]
    print(f"{'':<28}" + "".join(f"{n:>16}" for n in names))
    for label, cell in rows:
        print(f"{label:<28}" + "".join(f"{cell(results[n]):>16}" for n in names))
    ratio = results["channel_traffic_ratio_baseline_over_ours"]
    if ratio is not None:
        print(
            f"channel-layer traffic per tick, baseline / ours: {ratio:,.0f}× (group messages "
            f"actually sent per second: {results['channel_traffic_ratio_measured']:,.2f}×)"
        )
    for goal, met in results["goal_met"].items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
