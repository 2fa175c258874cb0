"""Intraday history: what recording costs the feed worker, what a chain-day takes on disk, and
how fast the history API answers with 30 days of 8 chains stored.

    python bench/history.py --postgres postgres://USER@HOST:PORT/DB [--minutes 4] [--rate 2000]
                            [--days 30] [--requests 300] [--redis URL] [--skip-recording]
                            [--json]

``--postgres`` names a database the run may connect to; the run creates a database of its own
beside it (``optionsite_bench_history_<pid>``) and drops it at the end.

**Recording cost.** ``manage.py runsim`` (``--strikes 100``: 201 strikes a chain, one weekly
and one monthly expiry) with its exchange clock at 10:00 IST of today (the last weekday) at
real speed, ``--rate`` ticks/s (the simulator is stopped before the storage and query
parts); the account sim-dhan tracks NIFTY and SENSEX (4 chains). Two
``runfeed --account sim-dhan`` processes run side by side against it, on the same ticks, each
with its own Redis database (its own lock and snapshots) and the run's PostgreSQL database: one
with ``HISTORY_RECORDING=1``, one with ``HISTORY_RECORDING=0``. Their recorders follow the
exchange clock (``bench/_runfeed_clock.py``: the ticks' exchange timestamps where the recorder
reads them, else the simulator's clock given as the recorder's; the output says which). After
both are live and the recording one has written its first bars, their CPU (utime+stime, 1.0 =
one core) is measured over ``--minutes`` minutes, i.e. across that many minute boundaries at
which bars are taken and written. Beside it, in this process: the CPU time of taking and packing
one 201-strike bar from a chain book (the recorder's ``capture`` + ``bar_from_captured`` +
``pack_legs``), times the chains, per minute, as a share of the non-recording runfeed's CPU —
the same cost without the noise of two processes on a shared machine. Goal: < 5 % more CPU.

**Storage per chain-day.** Generated days (``bench/_history_data.py``: a moving market, 200
strikes, 376 bars) written with ``history_write``: on PostgreSQL ``pg_total_relation_size`` of
each past day's partition (table, TOAST and primary key) / the chains in it; on SQLite (a
fresh file in a subprocess) the file's growth for one chain-day after ``VACUUM``. Goal: < 2 MB.

**Query latency.** ``--days`` days (today and the days before, IST) × 8 chains (NIFTY,
BANKNIFTY, FINNIFTY, SENSEX × their 2 nearest expiries; where the simulated universe lists one,
a month after it is the second) stored in PostgreSQL through ``history_write``, then
``VACUUM ANALYZE``; one daphne (``CHAINS_PUBLIC=1``) and ``--requests`` sequential requests
per endpoint (keep-alive, a random chain and day each): a full-day ``/history``, a 60-minute
``/oi-change`` window, a replay ``/live?at=``, and (no goal; a fifth as many requests) a
full-day ``/strikes`` series of 6 strikes. Latency is the client's, request sent to answer
read; beside it the daphne's CPU per request (utime+stime over the batch), which depends far
less on what else runs. The plans of the selectors' queries (``EXPLAIN ANALYZE``) are printed.
Goal: p99 < 50 ms.

Redis: database 13 (and 12, for the second runfeed) of ``--redis``, flushed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis as redis_lib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _stack

ACCOUNT = "sim-dhan"
TRACKED = {"sim-dhan": ["NIFTY", "SENSEX"], "sim-upstox": ["BANKNIFTY", "FINNIFTY"]}
SIM_ARGS = ["--strikes", "100", "--weeklies", "1", "--monthlies", "1", "--seed", "17"]
SPOTS = {"NIFTY": (26_000.0, 50.0), "BANKNIFTY": (58_000.0, 100.0),
         "FINNIFTY": (27_500.0, 50.0), "SENSEX": (85_000.0, 100.0)}  # fmt: skip
STRIKES = 200
CPU_GOAL = 0.05
STORAGE_GOAL_MB = 2.0
P99_GOAL_MS = 50.0


def log_to(json_mode: bool) -> Any:
    return (lambda line: print(line, file=sys.stderr, flush=True)) if json_mode else print


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}  # fmt: skip


def ist_today() -> date:
    from brokers.exchange import IST

    return datetime.now(IST).date()


def last_weekday(day: date) -> date:
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


# --- the run's own PostgreSQL database ----------------------------------------------------


def own_database(url: str) -> str:
    """Create ``optionsite_bench_history_<pid>`` on ``url``'s server; its URL."""
    import psycopg

    name = f"optionsite_bench_history_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(url: str, own: str) -> None:
    import psycopg

    name = urlsplit(own).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- recording cost -------------------------------------------------------------------------


def off_redis_url() -> str:
    """Database 12 of the run's Redis: the non-recording runfeed's own."""
    return _stack.REDIS_URL.rsplit("/", 1)[0] + "/12"


def recording_cost(stack: _stack.Stack, url: str, minutes: float, log: Any) -> dict[str, Any]:
    redis_on = _stack.redis_client()
    off_url = off_redis_url()
    redis_off = redis_lib.Redis.from_url(off_url, socket_timeout=10)
    redis_off.flushdb()
    script = str(Path(__file__).with_name("_runfeed_clock.py"))
    feeds = {
        "on": stack.start("runfeed-on", [script, url, "--account", ACCOUNT],
                          env={"HISTORY_RECORDING": "1"}),
        "off": stack.start("runfeed-off", [script, url, "--account", ACCOUNT],
                           env={"HISTORY_RECORDING": "0", "REDIS_URL": off_url,
                                "CELERY_BROKER_URL": off_url}),
    }  # fmt: skip
    clients = {"on": redis_on, "off": redis_off}
    for name, proc in feeds.items():
        _stack.wait_for(
            lambda c=clients[name]: (s := _stack.feed_status(c, ACCOUNT))
            and s["state"] == "live" and all(ch["ready"] for ch in s["chains"]),
            timeout=180, what=f"runfeed ({name}) live", proc=proc,
        )  # fmt: skip
    log("both runfeed processes live; waiting for the first bars")
    _stack.wait_for(
        lambda: (_stack.feed_status(redis_on, ACCOUNT) or {}).get("history_bars", 0) > 0,
        timeout=240, what="the first minute bars written", proc=feeds["on"],
    )  # fmt: skip
    status = {n: _stack.feed_status(c, ACCOUNT) for n, c in clients.items()}
    bars0 = status["on"]["history_bars"]  # type: ignore[index]
    sim0 = _stack.sim_state(url)["clock"]["ist"]
    usage = _stack.Usage({name: proc.pid for name, proc in feeds.items()})
    usage.start()
    deadline = time.monotonic() + 60 * minutes
    while time.monotonic() < deadline:
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        usage.sample_rss()
        for name, proc in feeds.items():
            if not proc.alive():
                raise RuntimeError(f"runfeed ({name}) exited:\n{proc.tail()}")
    cpu = usage.cpu()
    status = {n: _stack.feed_status(c, ACCOUNT) for n, c in clients.items()}
    sim1 = _stack.sim_state(url)["clock"]["ist"]
    on, off = status["on"] or {}, status["off"] or {}
    chains = len(on.get("chains", []))
    recorder_clock = feeds["on"].tail().split("recorder clock: ", 1)[-1].split("\n", 1)[0]
    result = {
        "window_minutes": minutes,
        "simulated_from": sim0,
        "simulated_to": sim1,
        "recorder_clock": recorder_clock,
        "chains": chains,
        "cpu_on": cpu["on"],
        "cpu_off": cpu["off"],
        "extra_cpu": cpu["on"] / cpu["off"] - 1 if cpu["off"] else None,
        "bars_written_in_window": on["history_bars"] - bars0,
        "bars_written_off": off.get("history_bars", 0),
        "history_errors": on.get("history_errors"),
        "rss_mb": {n: max(v for _, v in s) for n, s in usage.rss.items()},
    }
    result["direct"] = direct_cost(chains)
    if cpu["off"]:
        result["direct"]["share_of_runfeed_cpu"] = (
            result["direct"]["seconds_per_minute"] / 60 / cpu["off"]
        )
    return result


def direct_cost(chains: int, repeat: int = 30) -> dict[str, Any]:
    """Taking and packing one 201-strike bar from a chain book, in CPU time of this process: the
    recorder's own steps (``capture`` on the event loop, then ``bar_from_captured`` +
    ``pack_legs`` in the writer's thread; ``bar_from_book`` + ``pack_legs`` for a recorder
    without ``chains.feed.capture``)."""
    from chains.history.bars import bar_from_book, pack_legs
    from tests.chains.history.books import OPEN, make_book, move

    book = make_book(strikes=201, first=16_000.0)  # around its 26,000 spot
    move(book, OPEN + timedelta(seconds=30), seed=3, observed_at=1.0)
    try:
        from chains.feed.capture import bar_from_captured, capture
    except ImportError:
        capture = None  # type: ignore[assignment]
    build, pack = [], []
    for _ in range(repeat):
        started = time.process_time()
        if capture is not None:
            bar = bar_from_captured(capture(book), OPEN)
        else:
            bar = bar_from_book(book, OPEN)
        built = time.process_time()
        pack_legs(bar.legs)
        build.append(built - started)
        pack.append(time.process_time() - built)
    per_bar = statistics.median(build) + statistics.median(pack)
    return {
        "builder": "capture + bar_from_captured" if capture is not None else "bar_from_book",
        "build_ms": 1e3 * statistics.median(build),
        "pack_ms": 1e3 * statistics.median(pack),
        "seconds_per_minute": per_bar * max(chains, 1),
    }


# --- storage --------------------------------------------------------------------------------


def sqlite_storage() -> dict[str, Any]:
    """Run in a subprocess (``--sqlite-storage``): one generated chain-day into a fresh SQLite
    file; the file's growth after VACUUM."""
    tmp = Path(tempfile.mkdtemp(prefix="optionsite-bench-sqlite-"))
    path = tmp / "db.sqlite3"
    os.environ.update({"DJANGO_SETTINGS_MODULE": "tests.settings",
                       "DATABASE_URL": f"sqlite:///{path}"})  # fmt: skip
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    from bench._history_data import chain_day
    from chains.history.store import history_write

    def vacuumed() -> int:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM")
        return path.stat().st_size

    empty = vacuumed()
    day = last_weekday(ist_today())
    bars = chain_day(underlying="NIFTY", expiry=day + timedelta(days=6), day=day,
                     spot=26_000.0, step=50.0, strikes=STRIKES, seed=5)  # fmt: skip
    history_write(bars)
    full = vacuumed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(length(legs)) FROM chains_historybar")
        legs = cursor.fetchone()[0]
    connection.close()
    path.unlink()
    tmp.rmdir()
    return {"bytes_per_chain_day": full - empty, "legs_bytes": legs, "bars": len(bars)}


def postgres_storage(days: list[date]) -> dict[str, Any]:
    from django.db import connection

    from chains.history.store import partition_name

    sizes = []
    with connection.cursor() as cursor:
        for day in days:
            name = partition_name(day)  # a catalog name, not input
            sql = f'SELECT pg_total_relation_size(%s), count(DISTINCT (underlying, expiry)) FROM "{name}"'  # noqa: S608
            cursor.execute(sql, [name])
            total, chains = cursor.fetchone()
            sizes.append(total / chains)
    return {"bytes_per_chain_day": statistics.fmean(sizes), "min": min(sizes),
            "max": max(sizes), "partitions": len(sizes)}  # fmt: skip


# --- query latency --------------------------------------------------------------------------


def fill(days: list[date], chains: list[tuple[str, date]], log: Any) -> dict[str, Any]:
    """Every chain's generated day on each of ``days``, written day by day."""
    from bench._history_data import chain_day, moved
    from chains.history.store import history_write

    template_day = days[-1]
    started = time.monotonic()
    templates = {}
    for n, (underlying, expiry) in enumerate(chains):
        spot, step = SPOTS[underlying]
        templates[(underlying, expiry)] = chain_day(
            underlying=underlying, expiry=expiry, day=template_day, spot=spot, step=step,
            strikes=STRIKES, seed=100 + n,
        )  # fmt: skip
    generated = time.monotonic() - started
    log(f"generated {len(chains)} chain-days in {generated:.0f} s; writing {len(days)} days")
    started = time.monotonic()
    rows = 0
    for day in days:
        batch = [bar for key in chains for bar in moved(templates[key], day=day)]
        rows += history_write(batch)
    written = time.monotonic() - started
    log(f"wrote {rows:,} bars in {written:.0f} s")
    return {"rows": rows, "generate_seconds": generated, "write_seconds": written,
            "write_rows_per_s": rows / written}  # fmt: skip


def latency(port: int, pid: int, plans: dict[str, list[str]]) -> dict[str, Any]:
    """Latency percentiles (ms) per endpoint, and the daphne's CPU per request (ms): what a
    request costs the server whatever else runs on the machine."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for name, paths in plans.items():
            for path in paths[:5]:  # warm up: imports, first connections
                client.get(path)
            samples, failures, sizes = [], 0, []
            cpu0 = _stack.cpu_seconds(pid)
            for path in paths:
                started = time.perf_counter()
                response = client.get(path)
                samples.append(1e3 * (time.perf_counter() - started))
                sizes.append(len(response.content))
                if response.status_code != 200:
                    failures += 1
                    if failures == 1:
                        print(f"{name}: HTTP {response.status_code} {response.text[:300]}",
                              file=sys.stderr)  # fmt: skip
            cpu = 1e3 * (_stack.cpu_seconds(pid) - cpu0) / len(paths)
            out[name] = {"requests": len(paths), "non_200": failures, "server_cpu_ms": cpu,
                         "bytes": statistics.median(sizes), **percentiles(samples)}  # fmt: skip
    return out


def query_plans(
    days: list[date], chains: list[tuple[str, date]], requests: int, seed: int = 9
) -> dict[str, list[str]]:
    rng = random.Random(seed)
    base = "/api/v2/options/"

    def pick() -> str:
        underlying, expiry = rng.choice(chains)
        day = rng.choice(days)
        return f"underlying={underlying}&expiry={expiry.isoformat()}&date={day.isoformat()}"

    def hhmm(minutes_after_open: int) -> str:
        total = 9 * 60 + 15 + minutes_after_open
        return f"{total // 60:02d}:{total % 60:02d}"

    def window() -> str:
        start = rng.randrange(0, 375 - 60)
        return f"from={hhmm(start)}&to={hhmm(start + 60)}"

    def strikes() -> str:
        underlying, expiry = rng.choice(chains)
        spot, step = SPOTS[underlying]
        ks = ",".join(f"{spot + step * rng.randrange(-10, 11):g}" for _ in range(6))
        day = rng.choice(days)
        return (f"underlying={underlying}&expiry={expiry.isoformat()}&date={day.isoformat()}"
                f"&strikes={ks}&fields=oi,ltp")  # fmt: skip

    return {
        "history, full day": [f"{base}history?{pick()}" for _ in range(requests)],
        "oi-change, 60 min": [f"{base}oi-change?{pick()}&{window()}" for _ in range(requests)],
        "replay (live?at=)": [
            f"{base}live?{pick()}&at={hhmm(rng.randrange(0, 376))}" for _ in range(requests)
        ],
        # no goal, and ~1 s a request: fewer of them
        "strikes, 6 × full day": [
            f"{base}strikes?{strikes()}" for _ in range(max(20, requests // 5))
        ],
    }


GOAL_QUERIES = ("history, full day", "oi-change, 60 min", "replay (live?at=)")


def explain(days: list[date], chains: list[tuple[str, date]]) -> dict[str, str]:
    """The plans of the selectors' queries (for the record, and to see a missed goal's why)."""
    from django.db import connection

    from brokers.exchange import IST
    from chains.models import HistoryBar

    underlying, expiry = chains[0]
    day = days[len(days) // 2]
    at = datetime(day.year, day.month, day.day, 12, 0, tzinfo=IST)
    queries = {
        "window": HistoryBar.objects.filter(underlying=underlying, expiry=expiry, day=day,
                                            minute__gte=at - timedelta(hours=1), minute__lte=at)
        .order_by("minute").defer("legs"),
        "as_of": HistoryBar.objects.filter(underlying=underlying, expiry=expiry, day=day,
                                           minute__lte=at).order_by("-minute")[:1],
        "expiries": HistoryBar.objects.filter(underlying=underlying, day=day)
        .values_list("expiry", flat=True),
    }  # fmt: skip
    plans = {}
    with connection.cursor() as cursor:
        for name, query in queries.items():
            sql, params = query.query.sql_with_params()
            cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", params)
            plans[name] = "\n".join(row[0] for row in cursor.fetchall())
    return plans


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres", help="postgres://USER@HOST:PORT/DB (a database to connect to)"
    )
    parser.add_argument("--minutes", type=float, default=4.0, help="recording window (minutes)")
    parser.add_argument("--rate", type=int, default=2000, help="simulator ticks/s")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--redis", default=_stack.REDIS_URL, help="Redis URL (database 13)")
    parser.add_argument("--skip-recording", action="store_true")
    parser.add_argument("--sqlite-storage", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()  # fmt: skip
    if args.sqlite_storage:
        print(json.dumps(sqlite_storage()))
        return
    pg = args.postgres or os.environ.get("DATABASE_URL", "")
    if not pg.startswith(("postgres://", "postgresql://")):
        sys.exit("bench/history.py needs PostgreSQL: --postgres postgres://USER@HOST:PORT/DB")
    if args.days > 30:
        sys.exit("--days: at most 30 (HISTORY_DAYS, the retention the API serves)")
    log = log_to(args.json)
    _stack.REDIS_URL = args.redis
    results: dict[str, Any] = {}
    own = own_database(pg)
    try:
        with _stack.Stack(extra_env={"DATABASE_URL": own, "HISTORY_DAYS": "30"}) as stack:
            _stack.setup_django(stack)
            today = ist_today()
            sim_day = last_weekday(today)
            _, url = _stack.start_simulator(
                stack, "--ticks-per-second", str(args.rate), "--start", "10:00", "--date",
                sim_day.isoformat(), "--speed", "1", *SIM_ARGS,
            )  # fmt: skip
            _stack.wire_accounts(url, TRACKED, expiries=2)
            if not args.skip_recording:
                log(f"recording: 2 × runfeed, {args.rate} ticks/s, {args.minutes:g} minutes")
                results["recording"] = recording_cost(stack, url, args.minutes, log)
                for proc in [p for p in stack.procs if p.name.startswith("runfeed")]:
                    stack.stop(proc)
                redis_lib.Redis.from_url(off_redis_url(), socket_timeout=10).flushdb()
            from chains import selectors

            chains = []
            for underlying in sorted(SPOTS):
                expiries = selectors.expiries(selectors.tracked_chain(underlying))[:2]
                if len(expiries) == 1:  # monthlies only: the next month's beside it
                    expiries.append(expiries[0] + timedelta(days=28))
                chains += [(underlying, expiry) for expiry in expiries]
            for proc in list(stack.procs):  # nothing below needs the market: free the cores
                stack.stop(proc)
            days = [today - timedelta(days=n) for n in range(args.days - 1, -1, -1)]
            results["fill"] = fill(days, chains, log)
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE chains_historybar")
            results["storage"] = {"postgres": postgres_storage(days[:-1] or days)}
            done = subprocess.run([sys.executable, __file__, "--sqlite-storage"],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            results["storage"]["sqlite"] = json.loads(done.stdout)
            results["explain"] = explain(days, chains)
            port = _stack.free_port()
            daphne = stack.start("daphne", ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                 "optionsite.asgi:application"], env={"CHAINS_PUBLIC": "1"})  # fmt: skip
            _stack.wait_for(lambda: _answers(port), timeout=60, what="daphne", proc=daphne)
            log(
                f"queries: {args.requests} per endpoint over {len(chains)} chains × {len(days)} days"
            )
            results["queries"] = latency(port, daphne.pid, query_plans(days, chains, args.requests))
            results["chains"] = [f"{u} {e}" for u, e in chains]
            from django.db import connections

            connections.close_all()
    finally:
        drop_database(pg, own)
    report(results, args.json)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v2/options/expiries?underlying=NIFTY",
                         timeout=5).status_code in (200, 503)  # fmt: skip
    except httpx.HTTPError:
        return False


def report(results: dict[str, Any], as_json: bool) -> None:
    rec = results.get("recording")
    storage = results["storage"]
    queries = results["queries"]
    goal = {
        "storage_pg": storage["postgres"]["bytes_per_chain_day"] / 1e6 < STORAGE_GOAL_MB,
        "storage_sqlite": storage["sqlite"]["bytes_per_chain_day"] / 1e6 < STORAGE_GOAL_MB,
        **{f"p99 {n}": queries[n]["p99"] < P99_GOAL_MS for n in GOAL_QUERIES},
    }
    if rec is not None:
        # a window without a bar written measured nothing: not met
        goal["recording_cpu"] = (
            rec["bars_written_in_window"] > 0
            and rec["extra_cpu"] is not None
            and rec["extra_cpu"] < CPU_GOAL
        )
        goal["recording_cpu_direct"] = rec["direct"].get("share_of_runfeed_cpu", 1) < CPU_GOAL
    results["goal_met"] = goal
    if as_json:
        print(json.dumps({"benchmark": "history", "results": results}, indent=2, default=str))
        return
    if rec is not None:
        print(f"recording ({rec['chains']} chains of 201 strikes, {rec['window_minutes']:g} min, "
              f"simulated {rec['simulated_from'][11:19]}–{rec['simulated_to'][11:19]} IST, "
              f"recorder clock: {rec['recorder_clock']}):")  # fmt: skip
        extra = rec["extra_cpu"]
        print(f"  runfeed CPU recording on {rec['cpu_on']:.3f} core, off {rec['cpu_off']:.3f} "
              f"core: {100 * extra:+.1f} %  ({rec['bars_written_in_window']} bars written in "
              f"the window, {rec['bars_written_off']} by the other; errors "
              f"{rec['history_errors']})")  # fmt: skip
        d = rec["direct"]
        print(f"  direct ({d['builder']}): build {d['build_ms']:.2f} ms + pack {d['pack_ms']:.2f} ms a bar → "
              f"{1e3 * d['seconds_per_minute']:.1f} ms a minute = "
              f"{100 * d.get('share_of_runfeed_cpu', float('nan')):.2f} % of runfeed's CPU")  # fmt: skip
    pg, lite = storage["postgres"], storage["sqlite"]
    print(f"storage per chain-day, {STRIKES} strikes: PostgreSQL "
          f"{pg['bytes_per_chain_day'] / 1e6:.2f} MB (partition / chains, {pg['partitions']} "
          f"days, {pg['min'] / 1e6:.2f}–{pg['max'] / 1e6:.2f}); SQLite "
          f"{lite['bytes_per_chain_day'] / 1e6:.2f} MB (packed legs "
          f"{lite['legs_bytes'] / 1e6:.2f} MB)")  # fmt: skip
    fill_ = results["fill"]
    print(f"stored: {fill_['rows']:,} bars ({len(results['chains'])} chains), written at "
          f"{fill_['write_rows_per_s']:,.0f} bars/s")  # fmt: skip
    print(f"{'query':<26}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'KB':>8}"
          f"{'non-200':>9}{'daphne CPU ms/req':>19}")  # fmt: skip
    for name, q in queries.items():
        print(f"{name:<26}{q['p50']:>9.1f}{q['p90']:>9.1f}{q['p99']:>9.1f}{q['max']:>9.1f}"
              f"{q['bytes'] / 1e3:>8.1f}{q['non_200']:>9}{q['server_cpu_ms']:>19.1f}")  # fmt: skip
    for name, plan in results["explain"].items():
        scans = [line.strip() for line in plan.splitlines() if "Scan" in line]
        print(f"plan {name}: {scans[0] if scans else plan.splitlines()[0]}")
    for name, ok in goal.items():
        print(f"goal {name}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
