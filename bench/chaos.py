"""The faults of a trading day, timed: how long until live again, and what people were told.

    python bench/chaos.py [--clients 4] [--drops 6] [--only FAULT ...] [--json]

The stack of the chaos tests (``tests/chaos/stack.py``): a private ``redis-server`` on a free
port, a temporary SQLite database, ``manage.py runsim`` (one weekly and one monthly expiry,
31 strikes, 400 ticks/s), two ``runfeed`` processes for the accounts sim-dhan (NIFTY) and
sim-upstox (BANKNIFTY) — one holds both locks, one stands by — daphne, a Celery worker and
``--clients`` WebSocket clients rebuilding the chains from snapshot + deltas. The feed workers
run with the product's default timings.

Faults, in the order that costs least: market closed (the broker says so), a 30 s stall (no
ticks, sockets open), ``--drops`` feed drops in a row, three REST users at once (the standby's
prime after a SIGTERM handover, a forced repopulate task, ``feedcheck``), kill -9 of the lock
holder, SIGSTOP of the holder past its lock's TTL (then SIGCONT), Redis stopped for 10 s and
started again (empty).

Per fault:

* recovery — from the moment the fault is lifted (Redis answers again; the kill or SIGSTOP; the
  drop; the end of the stall or of the closed market) until every chain's Channels group
  carries ticks again and every account's feed status says live;
* live while no tick — seconds during which any surface (the JSON API, the status API, a
  WebSocket ``status`` message) said "live" although no tick had reached the chain for more
  than 8 s (``LIVE_GRACE``);
* divergent clients — after recovery the market is stalled and every client's rebuilt chain
  must equal the API's answer, which must equal the simulator's truth, leg by leg;
* duplicate writers — a writer run whose deltas come back after another run wrote, a woken
  holder writing, or more than one simulator feed connection per account at the end;
* what the API said in turn from the fault to recovery (its freshness state: the stale state
  a takeover should show meanwhile).

Goals: Redis restart → live ≤ 5 s after Redis answers; holder killed → standby live ≤ 12 s with
the stale state shown meanwhile (no "live"); a drop → live ≤ 2 s; everywhere 0 s of "live"
without ticks, 0 divergent clients, 0 duplicate writers. Exits 0 when goals are missed: it
reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_SECONDS = {"redis restart": 5.0, "holder killed": 12.0, "feed drop": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--drops", type=int, default=6)
    parser.add_argument("--only", nargs="*", metavar="FAULT",
                        help="run only these: 'market closed', stall, 'feed drops', 'REST crowd', "
                        "'holder killed', 'holder frozen', 'redis restart'")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from tests.chaos import faults
    from tests.chaos.claims import LIVE_GRACE
    from tests.chaos.stack import ChaosStack, StackError

    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    arguments = {"stall": (30.0,), "feed drops": (args.drops,), "redis restart": (10.0,)}
    with ChaosStack(clients=args.clients) as stack:
        log(f"stack up in {time.monotonic() - started:.0f} s")
        for name, fault in faults.ORDER:
            if args.only and name not in args.only:
                continue
            try:
                stack.ready()
                result = fault(stack, *arguments.get(name, ()))
            except StackError as exc:
                rows.append({"fault": name, "recovery_error": f"stack not ready: {exc}"})
                log(f"{name}: the stack was not ready: {exc}")
                continue
            for report in result if isinstance(result, list) else [result]:
                row = report.to_json()
                row["goal_seconds"] = _goal(report.name)
                rows.append(row)
                log(
                    f"{report.name}: recovery {_num(row['recovery_seconds'])} s, live while no "
                    f"tick {row['live_while_no_tick_seconds']} s, divergent "
                    f"{row['divergent_clients']}, duplicate writers {row['duplicate_writers']}"
                )
    results = {
        "faults": rows,
        "live_grace_seconds": LIVE_GRACE,
        "goal_met": goals(rows),
        "seconds": round(time.monotonic() - started, 1),
        "when": datetime.now(UTC).isoformat(),
    }
    if args.json:
        print(json.dumps({"benchmark": "chaos", "results": results}, indent=2, default=str))
        return
    print_table(results)


def _goal(name: str) -> float | None:
    return GOAL_SECONDS.get(name.rstrip("0123456789 ").strip())


def goals(rows: list[dict[str, Any]]) -> dict[str, bool]:
    met = {}
    for row in rows:
        goal = row.get("goal_seconds")
        seconds = row.get("recovery_seconds")
        if goal is not None:
            met[f"{row['fault']}: live within {goal:g} s"] = seconds is not None and seconds <= goal
    met["no 'live' without ticks"] = all(r.get("live_while_no_tick_seconds") == 0 for r in rows)
    met["no divergent client"] = all(r.get("divergent_clients") == 0 for r in rows)
    met["no duplicate writer"] = all(r.get("duplicate_writers") == 0 for r in rows)
    met["every fault recovered"] = all(not r.get("recovery_error") for r in rows)
    return met


def print_table(results: dict[str, Any]) -> None:
    header = ("fault", "recovery s", "goal s", "live, no tick s", "divergent", "dup writers")
    widths = (16, 11, 8, 16, 10, 12)
    print(
        "".join(
            f"{h:<{w}}" if n == 0 else f"{h:>{w}}"
            for n, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for row in results["faults"]:
        goal = row.get("goal_seconds")
        cells = (
            row["fault"],
            _num(row.get("recovery_seconds")) if not row.get("recovery_error") else "none",
            "-" if goal is None else f"{goal:g}",
            f"{row.get('live_while_no_tick_seconds', '-')}",
            f"{row.get('divergent_clients', '-')}",
            f"{row.get('duplicate_writers', '-')}",
        )
        print(
            "".join(
                f"{c:<{w}}" if n == 0 else f"{c:>{w}}"
                for n, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    print(
        f"('live, no tick': a surface said live with no tick for > "
        f"{results['live_grace_seconds']:g} s; whole run {results['seconds']:.0f} s)"
    )
    for row in results["faults"]:
        said = "; ".join(f"{chain}: {' → '.join(words)}" for chain, words in
                         (row.get("api_said") or {}).items())  # fmt: skip
        if said and not row["fault"].startswith("feed drop"):
            print(f"  {row['fault']}: the API said {said}")
    for row in results["faults"]:
        details = [
            *([row["recovery_error"]] if row.get("recovery_error") else []),
            *row.get("live_claims", [])[:2],
            *row.get("divergent", [])[:2],
            *row.get("second_writer", [])[:2],
            *row.get("refusals", [])[:3],
        ]
        for line in details:
            print(f"  {row['fault']}: {line[:300]}")
    for goal, met in results["goal_met"].items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
