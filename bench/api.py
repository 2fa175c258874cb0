"""The chain JSON API under load: requests/s and latency of a 201-strike chain, 2 daphnes.

    python bench/api.py [--seconds 20] [--json] [--baseline-ref REF | --no-baseline]

Setup: a temporary SQLite database, Redis database 13, ``manage.py runsim`` (``--strikes 100``:
201 strikes, 402 legs a chain) at 2,000 ticks/s, the account sim-dhan tracking NIFTY's nearest
expiry, ``manage.py runfeed`` (the snapshot is rewritten every 250 ms, as in production) and
two daphne processes. The load generator is ``wrk`` (Debian's; one thread per daphne,
connections split between them), closed loop: each connection sends its next request when the
last answer arrived.

Runs, each ``--seconds``, against a fresh pair of daphnes per setup:

* this checkout with ``CHAINS_PUBLIC=1``: ``GET /api/v2/options/live?underlying=NIFTY`` with
  8, 16 (the goal's run: at 500 req/s, 16 connections leave each request 32 ms on average) and
  64 connections, and ``/api/v2/options/expiries`` (a tiny answer that reads the database);
* this checkout with login required (the default) and a logged-in session cookie: the live
  chain with 16 connections;
* the baseline, in the same run: ``--baseline-ref`` (default ``4e9a3ef``, the last commit that
  answered the API through Django's request cycle) checked out with ``git worktree`` into the
  run's temporary folder, its daphnes on the same database, Redis and feed: the live chain
  with 16 connections, public and logged in (``--baseline-ref HEAD`` compares a working
  tree with its last commit).

Reported: requests/s, latency p50/p90/p99 (wrk's), non-2xx answers, MB/s, CPU (1.0 = one
core) of the daphnes, wrk, runfeed, the simulator and Redis: they share this machine's cores.
Then the login ratio: a public and a login-required pair of daphnes up side by side, the live
chain with 16 connections against each in turn, ``--ratio-rounds`` times (``--seconds`` / 2
each): logged-in requests/s over public ones, summed (a change in the machine's load weighs on
both alike).

Goal: ≥ 500 req/s and p99 ≤ 50 ms for the live chain with 16 connections, public and logged in,
and logged-in throughput ≥ 90 % of public (``login_ratio``: the session and the user's state
come from Redis in one round trip, ``chains.sessions``).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _stack

SIM_ARGS = ["--strikes", "100", "--weeklies", "1", "--monthlies", "1", "--seed", "31"]
ACCOUNT = "sim-dhan"
RATE_GOAL = 500.0
P99_GOAL_MS = 50.0
LUA = """
local ports = {%s}
local n = 0
function setup(thread)
   thread.addr = wrk.lookup("127.0.0.1", ports[(n %% #ports) + 1])[1]
   n = n + 1
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(output: str) -> dict[str, Any]:
    """requests/s, latency percentiles (ms), non-2xx count and MB/s from ``wrk --latency``."""

    def ms(text: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(number) * _UNITS[unit]

    latency = {f"p{p}": ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)}
    requests = re.search(r"^\s+(\d+) requests in", output, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: (.*)", output)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "requests": int(requests.group(1)) if requests else None,
        "latency_ms": latency,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket.group(1).strip() if socket else None,
        "mb_per_s": float(transfer.group(1)) * scale[transfer.group(2)] if transfer else None,
    }


def run_wrk(
    path: str, ports: list[int], connections: int, seconds: float, tmp: Path, daphnes: dict,
    cookie: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    script = tmp / "split.lua"
    script.write_text(LUA % ", ".join(f'"{p}"' for p in ports))
    usage = _stack.Usage(daphnes)
    usage.start()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        ["wrk", f"-t{len(ports)}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "--timeout", "10s", "-s", str(script), *(["-H", f"Cookie: {cookie}"] if cookie else []),
         f"http://127.0.0.1:{ports[0]}{path}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = parse_wrk(done.stdout)
    cpu = usage.cpu()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = time.monotonic() - started
    cpu["wrk"] = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / elapsed
    result["cpu"] = cpu
    result["connections"] = connections
    result["path"] = path
    return result


BASELINE_REF = "4e9a3ef"
LIVE = "/api/v2/options/live?underlying=NIFTY"
EXPIRIES = "/api/v2/options/expiries?underlying=NIFTY"
GOAL_RUNS = ("live, 16 connections", "live, 16 connections, logged in")
LOGIN_RATIO_GOAL = 0.9  # logged-in req/s over public req/s, same run


def session_cookie() -> str:
    """A logged-in session of a new user, as a Cookie header value (Django is set up here)."""
    import secrets

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    client = Client()
    client.force_login(user)  # the session a login creates, without a request
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def baseline_checkout(ref: str, tmp: Path) -> Path:
    """``ref`` checked out (detached) in a worktree under ``tmp``; removed by ``drop_checkout``."""
    where = tmp / f"baseline-{ref}"
    subprocess.run(["git", "-C", str(_stack.ROOT), "worktree", "add", "--detach", "--quiet",
                    str(where), ref], check=True)  # fmt: skip
    return where


def drop_checkout(where: Path) -> None:
    subprocess.run(["git", "-C", str(_stack.ROOT), "worktree", "remove", "--force", str(where)],
                   check=False)  # fmt: skip


def start_daphnes(
    stack: _stack.Stack, label: str, root: Path | str, env: dict[str, str], cookie: str | None
) -> tuple[list[int], list[_stack.Proc]]:
    ports, procs = [], []
    for n in range(2):
        port = _stack.free_port()
        procs.append(stack.start(f"daphne-{label}-{n}", ["-m", "daphne", "-b", "127.0.0.1", "-p",
                     str(port), "optionsite.asgi:application"], cwd=root, env=env))  # fmt: skip
        ports.append(port)
    for port, proc in zip(ports, procs, strict=True):
        _stack.wait_for(lambda port=port: _ok(port, LIVE, cookie), timeout=60,
                        what=f"daphne ({label}) answers", proc=proc)  # fmt: skip
    return ports, procs


def interleaved_ratio(
    stack: _stack.Stack, args: argparse.Namespace, cookie: str, others: dict[str, int], log: Any
) -> dict[str, Any]:
    """Logged-in over public throughput (live chain, 16 connections), from ``--ratio-rounds``
    rounds of a run of ``--seconds`` / 2 against each of a public and a login-required pair of
    daphnes up side by side, in alternating order (public first, then logged-in first): a change
    in the machine's load (other work on a shared machine) weighs on both sides alike. Also the
    daphnes' CPU time per request of each side, which the load of other work sways less."""
    seconds = max(1.0, args.seconds / 2)
    public, private = {"CHAINS_PUBLIC": "1"}, {"CHAINS_PUBLIC": "0"}
    public_ports, public_procs = start_daphnes(stack, "ratio-public", _stack.ROOT, public, None)
    login_ports, login_procs = start_daphnes(stack, "ratio-login", _stack.ROOT, private, cookie)
    sides = [
        ("public", public_ports, public_procs, None),
        ("logged_in", login_ports, login_procs, cookie),
    ]
    rates: dict[str, list[float]] = {"public": [], "logged_in": []}
    cpu_ms: dict[str, list[float]] = {"public": [], "logged_in": []}
    for round_ in range(args.ratio_rounds):
        for side, ports, procs, with_cookie in sides if round_ % 2 == 0 else sides[::-1]:
            pids = {f"daphne-{n}": p.pid for n, p in enumerate(procs)} | others
            r = run_wrk(LIVE, ports, 16, seconds, stack.tmp, pids, with_cookie)
            if r["non_2xx"]:
                raise SystemExit(f"{side}: {r['non_2xx']} answers were not 2xx")
            rates[side].append(r["requests_per_s"])
            cores = sum(v for k, v in r["cpu"].items() if k.startswith("daphne"))
            cpu_ms[side].append(1000 * cores / r["requests_per_s"])
    for proc in (*public_procs, *login_procs):
        stack.stop(proc)
    public_rate, login_rate = sum(rates["public"]), sum(rates["logged_in"])
    ratio = round(login_rate / public_rate, 3) if public_rate else 0.0
    per_request = {side: round(sorted(v)[len(v) // 2], 2) for side, v in cpu_ms.items()}
    log(f"  interleaved: public {rates['public']}, logged in {rates['logged_in']} req/s: "
        f"{ratio:.0%}; daphne CPU per request (median) {per_request} ms")  # fmt: skip
    return {"ratio": ratio, "rounds": args.ratio_rounds, "seconds": seconds, **rates,
            "daphne_cpu_ms_per_request": per_request}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help=f"git ref of the baseline's daphnes (default {BASELINE_REF})",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline runs")
    parser.add_argument(
        "--ratio-rounds",
        type=int,
        default=4,
        help="alternating public/logged-in runs for the login ratio (default 4)",
    )
    parser.add_argument(
        "--redis-url",
        default=_stack.REDIS_URL,
        help=f"the Redis database of the run (default {_stack.REDIS_URL})",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()  # fmt: skip
    _stack.REDIS_URL = args.redis_url  # the stack's processes and clients read it when started
    if shutil.which("wrk") is None:
        sys.exit("bench/api.py needs wrk: apt-get install wrk (Debian) and run again.")
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    runs: dict[str, Any] = {}
    with _stack.Stack() as stack:
        _stack.setup_django(stack)
        cookie = session_cookie()
        _, url = _stack.start_simulator(stack, "--ticks-per-second", "2000", *SIM_ARGS)
        _stack.wire_accounts(url, {ACCOUNT: ["NIFTY"]}, expiries=1)
        feed = stack.start("runfeed", ["manage.py", "runfeed", "--account", ACCOUNT])
        redis = _stack.redis_client()
        _stack.wait_for(
            lambda: (s := _stack.feed_status(redis, ACCOUNT)) and s["state"] == "live"
            and all(c["ready"] for c in s["chains"]),
            timeout=120, what="feed live", proc=feed,
        )  # fmt: skip
        others = {"runfeed": feed.pid, "simulator": stack.procs[0].pid,
                  "redis": int(redis.info("server")["process_id"])}  # fmt: skip
        public, private = {"CHAINS_PUBLIC": "1"}, {"CHAINS_PUBLIC": "0"}
        setups: list[tuple[str, Path | str, dict[str, str], str | None, list]] = [
            ("this", _stack.ROOT, public, None, [
                ("live, 8 connections", LIVE, 8), ("live, 16 connections", LIVE, 16),
                ("live, 64 connections", LIVE, 64), ("expiries, 16 connections", EXPIRIES, 16)]),
            ("login", _stack.ROOT, private, cookie, [
                ("live, 16 connections, logged in", LIVE, 16)]),
        ]  # fmt: skip
        baseline = None
        if not args.no_baseline:
            baseline = baseline_checkout(args.baseline_ref, stack.tmp)
            setups.append(("baseline", baseline, public, None, [
                (f"baseline {args.baseline_ref}: live, 16 connections", LIVE, 16)]))  # fmt: skip
            # Its sessions are the database rows this checkout's sessions are kept in.
            setups.append(("baseline-login", baseline, private, cookie, [
                (f"baseline {args.baseline_ref}: live, 16 connections, logged in", LIVE, 16)]))  # fmt: skip
        chain: dict[str, Any] = {}
        try:
            for label, root, env, with_cookie, plan in setups:
                ports, procs = start_daphnes(stack, label, root, env, with_cookie)
                if not chain:
                    body = httpx.get(f"http://127.0.0.1:{ports[0]}{LIVE}", timeout=10)
                    data = body.json()["data"]
                    chain = {"strikes": len(data["strikes"]), "bytes": len(body.content),
                             "legs": sum(len(s) for s in data["strikes"].values())}  # fmt: skip
                    log(f"chain: {chain['strikes']} strikes, {chain['legs']} legs, "
                        f"{chain['bytes']:,} bytes")  # fmt: skip
                pids = {f"daphne-{n}": p.pid for n, p in enumerate(procs)} | others
                for name, path, connections in plan:
                    runs[name] = run_wrk(path, ports, connections, args.seconds, stack.tmp, pids,
                                         with_cookie)  # fmt: skip
                    r = runs[name]
                    log(f"  {name}: {r['requests_per_s']:,.0f} req/s, "
                        f"p99 {r['latency_ms'].get('p99')} ms")  # fmt: skip
                    time.sleep(1.0)
                for proc in procs:
                    stack.stop(proc)
            ratio = interleaved_ratio(stack, args, cookie, others, log)
        finally:
            if baseline is not None:
                drop_checkout(baseline)
    results = {
        "chain": chain,
        "runs": runs,
        "login_ratio": ratio,
        "login_ratio_goal_met": ratio["ratio"] >= LOGIN_RATIO_GOAL,
        "goal_met": {
            name: {
                "requests_per_s": runs[name]["requests_per_s"] >= RATE_GOAL
                and runs[name]["non_2xx"] == 0,
                "p99": runs[name]["latency_ms"].get("p99", 1e9) <= P99_GOAL_MS,
            }
            for name in GOAL_RUNS
        },
    }
    if args.json:
        print(json.dumps({"benchmark": "api", "results": results}, indent=2))
        return
    print(f"{'run':<46}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
          f"{'MB/s':>8}{'daphne CPU':>14}  other CPU")  # fmt: skip
    for name, r in runs.items():
        lat, cpu = r["latency_ms"], r["cpu"]
        web = " + ".join(f"{v:.2f}" for k, v in cpu.items() if k.startswith("daphne"))
        other = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if not k.startswith("daphne"))
        print(f"{name:<46}{r['requests_per_s']:>9,.0f}{lat.get('p50', 0):>9.1f}"
              f"{lat.get('p90', 0):>9.1f}{lat.get('p99', 0):>9.1f}{r['non_2xx']:>9}"
              f"{r['mb_per_s'] or 0:>8.1f}{web:>14}  {other}")  # fmt: skip
    print(f"logged in / public, live chain, 16 connections, {ratio['rounds']} alternating rounds "
          f"of {ratio['seconds']:.0f} s: {sum(ratio['logged_in']):,.0f} / "
          f"{sum(ratio['public']):,.0f} requests/s summed = {ratio['ratio']:.0%}, goal ≥ "
          f"{LOGIN_RATIO_GOAL:.0%}: {'met' if results['login_ratio_goal_met'] else 'MISSED'}; "
          f"daphne CPU per request (median): public {ratio['daphne_cpu_ms_per_request']['public']} "
          f"ms, logged in {ratio['daphne_cpu_ms_per_request']['logged_in']} ms")  # fmt: skip
    for name, met in results["goal_met"].items():
        for what, ok in met.items():
            target = f"≥ {RATE_GOAL:.0f}" if what == "requests_per_s" else f"≤ {P99_GOAL_MS:.0f} ms"
            print(f"goal {what} {target} ({name}): {'met' if ok else 'MISSED'}")


def _ok(port: int, path: str, cookie: str | None = None) -> bool:
    headers = {"Cookie": cookie} if cookie else {}
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=5)
        return response.status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
