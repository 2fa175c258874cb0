"""The whole product on a private Redis, and the faults of a trading day, for the chaos tests
(tests/chaos) and their benchmark (bench/chaos.py).

A ``ChaosStack`` owns: its own ``redis-server`` on a free port (``tests.redis_server``), a
temporary SQLite database, the exchange simulator, two ``runfeed`` processes for the same
accounts (the first holds both accounts' locks, the second stands by), daphne, a Celery worker
and the observers (``observers.Observers``: WebSocket clients rebuilding the chains, a
subscriber of the chains' Channels groups, a poller of the API and the status API). Every
product process gets ``REDIS_URL``/``CELERY_BROKER_URL`` on the private Redis through
``product_env``; nothing touches the shared Redis.

Each ``fault_*`` method injects one fault, waits for recovery and returns a ``FaultReport``:
when the fault was lifted and when the chains were live again, the seconds during which a
surface said "live" although no tick arrived, the clients that did not converge to the
simulator's truth, and the signs of a second writer. Tests assert on it; the benchmark prints
it. Nothing here asserts.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.processes import ROOT, Process, free_port, product_env
from tests.redis_server import RedisServer
from tests.sim_process import RunningSimulator, start_simulator

from .observers import Chain, Observers, dishonest

# A small market (one weekly, one monthly expiry, 31 strikes): every leg is compared.
SIM_ARGS = (
    "--seed",
    "11",
    "--ping-interval",
    "1",
    "--weeklies",
    "1",
    "--monthlies",
    "1",
    "--strikes",
    "15",
    "--ticks-per-second",
    "400",
)
LOCK_TTL = 10.0  # the feed lock's TTL (README: "a Redis lock with a 10 s TTL")
STANDBY_SETTLE = 5.0  # seconds after its start a standby runfeed is taken to be polling
LIVE_GRACE = 8.0  # "live" = a tick within seconds: a surface may lag the last tick this long
FIELDS = ("ltp", "bid", "ask", "volume", "oi", "prev_close")
DAPHNE = ["-m", "daphne", "optionsite.asgi:application", "-b", "127.0.0.1"]
CELERY_WORKER = ["-m", "celery", "-A", "optionsite", "worker", "--pool", "solo", "--loglevel",
                 "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
REFUSAL = re.compile(r"rate limit reached|HTTP 429|DH-904|UDAPI10005|\(805\)|code 805")
ATTEMPT = re.compile(r"Reconnecting (\S+) in [\d.]+s \(attempt (\d+)\)")

WIRE = """
import json
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from tests.sim_wiring import UNDERLYING, tracked_chain, wire

call_command("migrate", verbosity=0)
class Simulator:
    url = {url!r}
wire(Simulator)
chains = []
for account in UNDERLYING:
    underlying, expiry = tracked_chain(account)
    chains.append({{"account": account, "broker": account.removeprefix("sim-"),
                   "underlying": underlying, "expiry": expiry.isoformat()}})
user = get_user_model().objects.create_user("chaos", password="chaos-only-" + "x" * 12)
client = Client()
client.force_login(user)
print("CHAOS " + json.dumps({{"chains": chains,
                             "cookie": "sessionid=" + client.cookies["sessionid"].value}}))
"""


class StackError(RuntimeError):
    """The stack could not be brought to the state a fault starts from (says what was seen)."""


@dataclass
class FaultReport:
    """What one fault did. Times are epoch seconds (``time.time()``)."""

    name: str
    started: float
    lifted: float | None = None  # the fault ended (Redis answers, kill sent, stall resumed)
    recovered: float | None = None  # every chain had fresh ticks and every feed said live
    recovery_error: str | None = None
    dishonest_seconds: float = 0.0
    dishonest_examples: list[str] = field(default_factory=list)
    divergent: list[str] = field(default_factory=list)
    duplicate_writers: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def recovery_seconds(self) -> float | None:
        if self.recovered is None or self.lifted is None:
            return None
        return max(0.0, self.recovered - self.lifted)

    def problems(self) -> list[str]:
        """Every way this fault broke a rule, one line each (empty: none)."""
        out = []
        if self.recovery_error:
            out.append(f"no recovery: {self.recovery_error}")
        if self.dishonest_examples:
            out.append(
                f"said 'live' with no tick for > {LIVE_GRACE:g} s during "
                f"{self.dishonest_seconds:.1f} s, e.g. " + "; ".join(self.dishonest_examples)
            )
        out += [f"divergent: {d}" for d in self.divergent]
        out += [f"second writer: {d}" for d in self.duplicate_writers]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "recovery_seconds": _round(self.recovery_seconds),
            "recovery_error": self.recovery_error,
            "live_while_no_tick_seconds": round(self.dishonest_seconds, 1),
            "live_claims": self.dishonest_examples,
            "divergent_clients": len(self.divergent),
            "divergent": self.divergent,
            "duplicate_writers": len(self.duplicate_writers),
            "second_writer": self.duplicate_writers,
            **self.notes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class ChaosStack:
    """Use as a context manager; ``ready()`` before each fault."""

    def __init__(self, *, feed_env: dict[str, str] | None = None, clients: int = 4) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="optionsite-chaos-"))
        self.feed_env = feed_env or {}
        self.client_count = clients
        self.redis = RedisServer()
        self.sim: RunningSimulator | None = None
        self.feeds: list[Process] = []
        self.retired: list[Process] = []  # stopped or dead feed processes (their logs)
        self.web: Process | None = None
        self.worker: Process | None = None
        self.web_port = free_port()
        self.chains: list[Chain] = []
        self.cookie = ""
        self.observers: Observers | None = None
        self._redis_client: redis.Redis | None = None
        self._reported_exits: set[int] = set()  # runfeeds the test stopped or killed itself
        self._started_at: dict[int, float] = {}  # runfeed pid → when it was started (monotonic)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return product_env(
            DATABASE_URL=f"sqlite:///{self.tmp / 'db.sqlite3'}",
            REDIS_URL=self.redis.url(0),
            CELERY_BROKER_URL=self.redis.url(1),
            CHAINS_PUBLIC="1",
            **self.feed_env,
        )

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def __enter__(self) -> ChaosStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.redis.start()
        self.sim = start_simulator(*SIM_ARGS)
        self._wire()
        first = self._start_feed()
        self.web = Process([*DAPHNE, "-p", str(self.web_port)], self.env)
        self.worker = Process(CELERY_WORKER, self.env)
        self._wait(
            lambda: (
                self.holders() == {c.account: first.process.pid for c in self.chains}
                and all(self._ready_live(c.account) for c in self.chains)
            ),
            60,
            "the first runfeed to hold every account, live and ready",
        )
        self._start_feed()
        self._wait(self._web_answers, 60, "daphne to answer")
        self._wait(
            lambda: " ready." in self.worker.output(),
            60,
            "the Celery worker to be ready",
            last=lambda: self.worker.output()[-2000:],
        )
        self.observers = Observers(
            web=self.web_url,
            cookie=self.cookie,
            redis_url=self.redis.url(0),
            chains=self.chains,
            clients=self.client_count,
        )
        self.observers.start()
        self.ready()

    def close(self) -> None:
        if self.observers is not None:
            self.observers.stop()
        for proc in [*self.feeds, self.web, self.worker]:
            if proc is not None and proc.process.poll() is None:
                proc.signal(signal.SIGCONT)
                proc.stop()
        if self.sim is not None:
            self.sim.stop()
        self.redis.stop()
        for proc in [*self.feeds, *self.retired, self.web, self.worker]:
            if proc is not None:
                with contextlib.suppress(OSError):
                    Path(proc.log.name).unlink()
        shutil.rmtree(self.redis.dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _wire(self) -> None:
        assert self.sim is not None
        script = WIRE.format(url=self.sim.url)
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("CHAOS ")), None)
        if done.returncode != 0 or line is None:
            raise StackError(
                f"wiring the accounts failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        wired = json.loads(line.removeprefix("CHAOS "))
        self.chains = [Chain(**c) for c in wired["chains"]]
        self.cookie = wired["cookie"]

    def _start_feed(self) -> Process:
        proc = Process(["manage.py", "runfeed"], self.env)
        self.feeds.append(proc)
        self._started_at[proc.process.pid] = time.monotonic()
        return proc

    def _web_answers(self) -> bool:
        try:
            return httpx.get(f"{self.web_url}/api/v2/status", timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    # --- reading the product ------------------------------------------------------------------

    @property
    def r(self) -> redis.Redis:
        if self._redis_client is None:
            self._redis_client = self.redis.client(socket_timeout=2, socket_connect_timeout=1)
        return self._redis_client

    def feed_status(self, account: str) -> dict[str, Any] | None:
        try:
            raw = self.r.get(f"optionsite:feed:{account}")
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        return json.loads(raw) if raw else None

    def meta(self, chain: Chain) -> dict[str, Any] | None:
        raw = self.r.get(f"optionsite:chain-meta:{chain.underlying}:{chain.expiry}")
        return json.loads(raw) if raw else None

    def holders(self) -> dict[str, int | None]:
        """Each account's lock holder as its feed status names it (pid), None when unknown."""
        out: dict[str, int | None] = {}
        for chain in self.chains:
            status = self.feed_status(chain.account)
            out[chain.account] = status.get("pid") if status else None
        return out

    def alive_feeds(self) -> list[Process]:
        for proc in list(self.feeds):
            if proc.process.poll() is not None:
                self.feeds.remove(proc)
                self.retired.append(proc)
        return list(self.feeds)

    def holder(self) -> Process:
        """The one runfeed process holding every account; StackError when there is none."""
        pids = set(self.holders().values())
        found = [p for p in self.alive_feeds() if {p.process.pid} == pids]
        if not found:
            raise StackError(
                f"no single runfeed holds every account: holders {self.holders()}, "
                f"alive {[p.process.pid for p in self.feeds]}"
            )
        return found[0]

    def _ready_live(self, account: str) -> bool:
        status = self.feed_status(account)
        return bool(
            status
            and status.get("state") == "live"
            and status.get("chains")
            and all(c.get("ready") for c in status["chains"])
        )

    def connections(self) -> dict[str, int]:
        """The simulator's open feed connections per broker (one account per broker here)."""
        assert self.sim is not None
        state = self.sim.state(instruments=False)
        return {broker: len(conns) for broker, conns in state["connections"].items()}

    def log_of(self, pid: int) -> str:
        for proc in [*self.feeds, *self.retired]:
            if proc.process.pid == pid:
                return proc.output()
        return ""

    # --- waiting ------------------------------------------------------------------------------

    def _wait(
        self,
        check: Callable[[], Any],
        timeout: float,
        what: str,
        last: Callable[[], Any] | None = None,
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self._check_exits()
            try:
                value = check()
            except (redis.ConnectionError, redis.TimeoutError, httpx.HTTPError) as exc:
                value = None
                seen: Any = f"{type(exc).__name__}: {exc}"
            else:
                seen = value
            if value:
                return value
            if time.monotonic() > deadline:
                shown = last() if last is not None else seen
                raise StackError(
                    f"timed out after {timeout:g} s waiting for {what}; last seen: {shown!r}"
                )
            time.sleep(0.1)

    def _check_exits(self) -> None:
        """StackError with its log when daphne or the Celery worker has exited."""
        for name, proc in (("daphne", self.web), ("the Celery worker", self.worker)):
            if proc is not None and proc.process.poll() is not None:
                raise StackError(
                    f"{name} exited with {proc.process.returncode}:\n{proc.output()[-3000:]}"
                )

    def situation(self) -> dict[str, Any]:
        """What the stack looks like now, for failure messages."""
        feeds = {}
        for chain in self.chains:
            status = self.feed_status(chain.account) or {}
            feeds[chain.account] = {
                k: status.get(k) for k in ("state", "pid", "error", "reconnects", "last_frame_age")
            }
        alive = [p.process.pid for p in self.alive_feeds()]
        exited = {
            f"runfeed {p.process.pid} exited {p.process.returncode}": _tail(p.output())
            for p in self.retired
            if p.process.pid not in self._reported_exits
        }
        return {"feeds": feeds, "alive_runfeeds": alive, **exited}

    def ready(self, timeout: float = 90.0) -> None:
        """Bring the stack to the state every fault starts from: the market open and moving,
        two runfeeds (one holding every account, live and ready, one standing by), ticks
        reaching every chain's group, every client connected with a snapshot."""
        assert self.sim is not None and self.observers is not None
        self.sim.fault(action="clear")
        alive = self.alive_feeds()
        while len(alive) < 2:
            alive.append(self._start_feed())
        if len(alive) > 2:  # a woken holder that went back to standby: two are enough
            holders = set(self.holders().values())
            for extra in [p for p in alive if p.process.pid not in holders][: len(alive) - 2]:
                self._reported_exits.add(extra.process.pid)
                extra.stop()
        observers = self.observers

        def healthy() -> bool:
            pids = set(self.holders().values())
            if len(pids) != 1 or not {p.process.pid for p in self.alive_feeds()} >= pids:
                return False
            now = time.time()
            return (
                all(self._ready_live(c.account) for c in self.chains)
                and all(observers.watcher.since(c, now - 2.0) for c in self.chains)
                and all(c.connected and c.replica.seq is not None for c in observers.clients)
            )

        self._wait(
            healthy,
            timeout,
            "one runfeed holding every account, live, ticks "
            "reaching every chain and every client connected",
            last=self.situation,
        )
        self._reported_exits.update(p.process.pid for p in self.retired)
        # The standby: started, its configuration checked, polling the lock.
        youngest = max(self._started_at[p.process.pid] for p in self.alive_feeds())
        time.sleep(max(0.0, youngest + STANDBY_SETTLE - time.monotonic()))

    def wait_recovered(
        self,
        report: FaultReport,
        since: float,
        *,
        timeout: float = 60.0,
        reconnected_after: float | None = None,
        not_pid: int | None = None,
    ) -> None:
        """Record in ``report`` when every chain had ticks again after ``since`` (a delta with
        legs reached its group) and every account's feed said live (connected after
        ``reconnected_after``, and written by another process than ``not_pid``, when given)
        — or why not within ``timeout``."""
        assert self.observers is not None
        watcher = self.observers.watcher
        live_at: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while True:
            now = time.time()
            for chain in self.chains:
                if chain.account in live_at:
                    continue
                status = self.feed_status(chain.account)
                connected = _epoch(status.get("connected_since")) if status else None
                if (
                    status
                    and status.get("state") == "live"
                    and (reconnected_after is None or (connected or 0) > reconnected_after)
                    and (not_pid is None or status.get("pid") != not_pid)
                ):
                    live_at[chain.account] = now
            ticked = {
                c.name: next((d.at for d in watcher.since(c, since) if d.legs), None)
                for c in self.chains
            }
            if len(live_at) == len({c.account for c in self.chains}) and all(ticked.values()):
                report.recovered = max([*live_at.values(), *ticked.values()])  # type: ignore[list-item]
                return
            if time.monotonic() > deadline:
                report.recovery_error = (
                    f"after {timeout:g} s: feeds live {sorted(live_at)}, first tick per chain "
                    f"{ {k: _rel(v, since) for k, v in ticked.items()} }; {self.situation()}"
                )
                return
            time.sleep(0.1)

    # --- the checks after a fault ---------------------------------------------------------------

    def check_convergence(self, report: FaultReport, *, timeout: float = 20.0) -> None:
        """Stall the market, let everything settle, then every leg of every client's rebuilt
        chain must equal the API's answer and the simulator's truth; the market resumes."""
        assert self.sim is not None and self.observers is not None
        self.sim.fault(action="stall")
        try:
            self._settle()
            truth = self._truth()
            answers = {}
            for chain in self.chains:
                answer = httpx.get(
                    f"{self.web_url}/api/v2/options/live",
                    params={"underlying": chain.underlying, "expiry": chain.expiry},
                    headers={"Cookie": self.cookie},
                    timeout=10,
                )
                data = answer.json().get("data") if answer.status_code in (200, 503) else None
                if not data or not data.get("strikes"):
                    report.divergent.append(
                        f"{chain.name}: the API answered HTTP "
                        f"{answer.status_code} without a chain: "
                        f"{answer.text[:300]}"
                    )
                    continue
                answers[chain] = data
                wrong = _against_truth(data["strikes"], truth[chain.broker])
                if wrong:
                    report.divergent.append(
                        f"{chain.name}: the API answer differs from the "
                        f"simulator in {len(wrong)} legs, e.g. {wrong[:3]}"
                    )
            deadline = time.monotonic() + timeout
            while True:
                behind = self._behind(answers)
                if not behind or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            report.divergent += behind
        finally:
            self.sim.fault(action="resume")

    def _settle(self, quiet: float = 1.0, timeout: float = 15.0) -> None:
        last, since = None, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seqs = [(m or {}).get("seq") for m in map(self.meta, self.chains)]
            if seqs != last:
                last, since = seqs, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)

    def _truth(self) -> dict[str, dict[str, dict[str, Any]]]:
        assert self.sim is not None
        instruments = [i for i in self.sim.state()["instruments"] if i["kind"] == "option"]
        return {
            "dhan": {str(i["security_id"]): i for i in instruments},
            "upstox": {str(i["upstox_key"]): i for i in instruments},
        }

    def _behind(self, answers: dict[Chain, dict[str, Any]]) -> list[str]:
        assert self.observers is not None
        out = []
        for client, copy in self.observers.replicas():
            answer = answers.get(client.chain)
            if answer is None:
                continue
            if copy["seq"] == answer["seq"] and copy["strikes"] == answer["strikes"]:
                continue
            legs = [
                f"{strike} {side}"
                for strike, sides in answer["strikes"].items()
                for side, leg in sides.items()
                if (copy["strikes"].get(strike) or {}).get(side) != leg
            ]
            out.append(
                f"{client.label}: seq {copy['seq']} (API {answer['seq']}), "
                f"{len(legs)} of {sum(map(len, answer['strikes'].values()))} legs differ "
                f"from the API (e.g. {legs[:3]}), connected={copy['connected']}"
            )
        return out

    def check_single_writer(
        self, report: FaultReport, since: float, *, timeout: float = 15.0
    ) -> None:
        """No chain's writer run may come back after another run wrote (flip-flop), in the
        group messages or in what clients saw; the simulator must end with one feed connection
        per account."""
        assert self.observers is not None
        for chain in self.chains:
            runs = self.observers.watcher.runs(chain, since)
            back = _returns(runs)
            if back:
                report.duplicate_writers.append(
                    f"{chain.name}: deltas of run(s) {back} came back after another run wrote "
                    f"(runs in order: {[_short(r) for r in runs]})"
                )
        for client, copy in self.observers.replicas():
            back = _returns(copy["runs"])
            if back:
                report.duplicate_writers.append(
                    f"{client.label} saw run(s) {back} again (runs: {copy['runs']})"
                )
        deadline = time.monotonic() + timeout
        while True:
            counts = self.connections()
            if all(n == 1 for n in counts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for broker, n in counts.items():
            if n != 1:
                report.duplicate_writers.append(
                    f"the simulator has {n} {broker} feed "
                    f"connections for one account, {timeout:g} s "
                    "after recovery (want 1)"
                )

    def check_honesty(self, report: FaultReport, start: float, end: float) -> None:
        assert self.observers is not None
        claims, seconds = dishonest(self.observers, start, end, grace=LIVE_GRACE)
        report.dishonest_seconds = seconds
        firsts: dict[str, Any] = {}
        for claim in claims:
            firsts.setdefault(claim.surface.split(" (")[0].split(" client")[0], claim)
        report.dishonest_examples = [c.describe(report.started) for c in firsts.values()]

    def finish(self, report: FaultReport, *, honest_until: float | None = None) -> FaultReport:
        """The checks every fault ends with: honesty from the start to recovery, a single
        writer since the start, convergence."""
        end = honest_until or report.recovered or time.time()
        self.check_honesty(report, report.started, end)
        self.check_single_writer(report, report.started)
        if report.recovery_error is None:
            self.check_convergence(report)
        return report

    # --- faults -------------------------------------------------------------------------------

    def fault_redis_restart(self, down: float = 10.0) -> FaultReport:
        """(a) Redis stops for ``down`` seconds and starts again on the same port, empty."""
        report = FaultReport("redis restart", time.time())
        self._redis_client = None
        self.redis.stop()
        time.sleep(down)
        self.redis.start()
        report.lifted = time.time()
        self.wait_recovered(report, report.lifted, timeout=30)
        return self.finish(report)

    def fault_kill_holder(self) -> FaultReport:
        """(b) kill -9 of the lock holder: the standby takes over."""
        holder = self.holder()
        report = FaultReport("holder killed", time.time(), notes={"old_pid": holder.process.pid})
        self._reported_exits.add(holder.process.pid)
        holder.signal(signal.SIGKILL)
        holder.wait(10)
        report.lifted = report.started
        self.wait_recovered(
            report, report.started, timeout=LOCK_TTL + 30, not_pid=holder.process.pid
        )
        report.notes["new_pid"] = self.holders()
        return self.finish(report)

    def fault_freeze_holder(self, seconds: float = LOCK_TTL + 5) -> FaultReport:
        """(c) SIGSTOP of the holder past its lock's TTL: the standby takes over; SIGCONT
        wakes the old holder, which must not write again."""
        holder = self.holder()
        old_runs = {c.name: self._run_of(c) for c in self.chains}
        report = FaultReport(
            "holder frozen",
            time.time(),
            notes={"old_pid": holder.process.pid, "old_runs": old_runs},
        )
        holder.signal(signal.SIGSTOP)
        report.lifted = report.started
        self.wait_recovered(
            report, report.started + 0.5, timeout=LOCK_TTL + 30, not_pid=holder.process.pid
        )
        rest = seconds - (time.time() - report.started)
        if rest > 0:
            time.sleep(rest)
        woke = time.time()
        holder.signal(signal.SIGCONT)
        report.notes["woken_at"] = woke
        time.sleep(5.0)  # the woken process: flushes, renewals and its shutdown happen now
        assert self.observers is not None
        for chain in self.chains:
            old = old_runs[chain.name]
            late = [d for d in self.observers.watcher.since(chain, woke) if d.run == old]
            if late:
                report.duplicate_writers.append(
                    f"{chain.name}: the woken holder (pid {holder.process.pid}, run "
                    f"{_short(old)}) sent {len(late)} deltas after SIGCONT (seqs "
                    f"{[d.seq for d in late[:5]]}) although the standby had taken over"
                )
            meta = self.meta(chain) or {}
            if old is not None and meta.get("run") == old:
                report.duplicate_writers.append(
                    f"{chain.name}: the Redis snapshot is the woken holder's again (run "
                    f"{_short(old)}, seq {meta.get('seq')}) after SIGCONT"
                )
        return self.finish(report, honest_until=report.recovered)

    def _run_of(self, chain: Chain) -> str | None:
        return (self.meta(chain) or {}).get("run")

    def fault_drop(self, number: int = 1) -> FaultReport:
        """(d) one feed drop (the socket just drops): reconnect and ticks again."""
        assert self.sim is not None
        holder = self.holder()
        logged = len(holder.output())
        report = FaultReport(f"feed drop {number}", time.time())
        self.sim.fault(action="drop", close_frame=False)
        report.lifted = report.started
        self.wait_recovered(
            report, report.started + 0.3, timeout=45, reconnected_after=report.started
        )
        attempts = {account: int(n) for account, n in ATTEMPT.findall(holder.output()[logged:])}
        report.notes["reconnect_attempt"] = attempts
        self.check_honesty(report, report.started, report.recovered or time.time())
        return report

    def fault_drops(self, count: int = 6) -> list[FaultReport]:
        reports = [self.fault_drop(n + 1) for n in range(count)]
        self.check_single_writer(reports[-1], reports[0].started)
        self.check_convergence(reports[-1])
        return reports

    def fault_stall(self, seconds: float = 30.0) -> FaultReport:
        """(e) the simulator stops sending ticks for ``seconds`` (sockets open, pings go on)."""
        assert self.sim is not None and self.observers is not None
        before = self._quiet_counters()
        report = FaultReport("stall", time.time())
        self.sim.fault(action="stall", seconds=seconds)
        time.sleep(seconds)
        self.sim.fault(action="resume")
        report.lifted = time.time()
        after = self._quiet_counters()
        report.notes["closes"] = after["closes"] - before["closes"]
        report.notes["close_codes"] = [
            c.code for cl in self.observers.clients for c in cl.closes if c.at > report.started
        ]
        report.notes["client_reconnects"] = after["connects"] - before["connects"]
        report.notes["feed_reconnects"] = {
            a: after["feed"].get(a, 0) - before["feed"].get(a, 0) for a in after["feed"]
        }
        report.notes["said_quiet"] = self._said_during(report.started + LIVE_GRACE, report.lifted)
        self.wait_recovered(report, report.lifted, timeout=30)
        return self.finish(report, honest_until=report.lifted)

    def _quiet_counters(self) -> dict[str, Any]:
        assert self.observers is not None
        return {
            "closes": sum(len(c.closes) for c in self.observers.clients),
            "connects": sum(c.connects for c in self.observers.clients),
            "feed": {
                c.account: (self.feed_status(c.account) or {}).get("reconnects", 0)
                for c in self.chains
            },
        }

    def _said_during(self, start: float, end: float) -> dict[str, list[Any]]:
        """What the status API said about each chain in [start, end] (distinct answers)."""
        assert self.observers is not None
        said: dict[str, list[Any]] = {}
        for sample in self.observers.sampler.between(start, end):
            if sample.surface != "status":
                continue
            seen = said.setdefault(sample.chain.name, [])
            if sample.said not in seen:
                seen.append(sample.said)
        return said

    def fault_market_closed(self, seconds: float = LIVE_GRACE + 4) -> FaultReport:
        """(f) the broker says the market closed (Upstox market_info, DhanHQ status packets)."""
        assert self.sim is not None and self.observers is not None
        report = FaultReport("market closed", time.time())
        self.sim.fault(action="market", status="closed", dhan_status_packet=True)
        time.sleep(seconds)
        after_grace = [
            s
            for s in self.observers.sampler.between(report.started + LIVE_GRACE, time.time())
            if s.surface == "status"
        ]
        report.notes["status_said"] = self._said_during(report.started + LIVE_GRACE, time.time())
        report.notes["closed_shown"] = {
            c.name: any(s.chain == c for s in after_grace)
            and all(s.market_closed for s in after_grace if s.chain == c)
            for c in self.chains
        }
        report.notes["closed_or_quiet_shown"] = {
            c.name: any(s.chain == c for s in after_grace)
            and all(s.market_closed or s.quiet for s in after_grace if s.chain == c)
            for c in self.chains
        }
        self.sim.fault(action="market", status="open", dhan_status_packet=True)
        report.lifted = time.time()
        self.wait_recovered(report, report.lifted, timeout=30)
        return self.finish(report, honest_until=report.lifted)

    def refusal_marks(self) -> dict[str, int]:
        """Where each log ends now (for ``refusals_since``)."""
        assert self.sim is not None
        logs = self._logs()
        return {name: len(text) for name, text in logs.items()}

    def _logs(self) -> dict[str, str]:
        assert self.sim is not None
        logs = {f"runfeed {p.process.pid}": p.output() for p in [*self.feeds, *self.retired]}
        if self.worker is not None:
            logs["celery worker"] = self.worker.output()
        logs["simulator"] = Path(self.sim.stderr_path).read_text(errors="replace")
        return logs

    def refusals_since(self, marks: dict[str, int]) -> list[str]:
        """Rate-limit refusals (HTTP 429, DhanHQ 805) in the logs since ``marks``."""
        found = []
        for name, text in self._logs().items():
            for line in text[marks.get(name, 0) :].splitlines():
                if REFUSAL.search(line):
                    found.append(f"{name}: {line.strip()[:240]}")
        return found

    def fault_rest_crowd(self) -> FaultReport:
        """(g) three REST users of the same accounts at once: the standby's prime (the holder
        hands over with SIGTERM), a forced repopulate task and ``manage.py feedcheck``."""
        assert self.sim is not None
        from optionsite.celery import app

        holder = self.holder()
        marks = self.refusal_marks()
        sim_before = _sim_refusals(self.sim.state(instruments=False))
        worker_log = len(self.worker.output()) if self.worker else 0
        report = FaultReport("REST crowd", time.time(), notes={"old_pid": holder.process.pid})
        self._reported_exits.add(holder.process.pid)
        holder.signal(signal.SIGTERM)
        with app.connection_for_write(self.redis.url(1)) as connection:
            app.send_task("chains.repopulate_chains", kwargs={"force": True}, connection=connection)
        check = Process(["manage.py", "feedcheck", "--timeout", "10", "--window", "2"], self.env)
        try:
            report.lifted = report.started
            self.wait_recovered(
                report, report.started + 0.5, timeout=40, not_pid=holder.process.pid
            )
            report.notes["feedcheck_exit"] = check.wait(120)
        finally:
            check.stop()
            checked = check.output()
            Path(check.log.name).unlink()
        report.notes["feedcheck"] = _tail(checked, 12)
        self._wait(
            lambda: re.search(
                r"Task chains\.repopulate_chains\[\S+\] (succeeded|raised)",
                self.worker.output()[worker_log:],
            ),
            90,
            "the repopulate task to finish",
        )
        report.notes["task"] = re.findall(
            r"Task chains\.repopulate_chains\[\S+\] .*", self.worker.output()[worker_log:]
        )[:2]
        refusals = self.refusals_since(marks)
        refusals += [
            f"feedcheck: {x.strip()[:240]}" for x in checked.splitlines() if REFUSAL.search(x)
        ]
        sim_after = _sim_refusals(self.sim.state(instruments=False))
        if sim_before is not None and sim_after is not None:
            report.notes["simulator_refusals"] = sim_after - sim_before
        report.notes["refusals"] = refusals
        return self.finish(report)

    def iter_faults(self) -> Iterator[tuple[str, Callable[[], Any]]]:
        """Every fault in the order that costs least, for the benchmark."""
        yield "market closed", self.fault_market_closed
        yield "stall 30 s", self.fault_stall
        yield "6 drops", self.fault_drops
        yield "REST crowd", self.fault_rest_crowd
        yield "holder killed", self.fault_kill_holder
        yield "holder frozen", self.fault_freeze_holder
        yield "redis restart", self.fault_redis_restart


def _against_truth(strikes: dict[str, Any], truth: dict[str, dict[str, Any]]) -> list[str]:
    wrong = []
    for strike, sides in strikes.items():
        for side, leg in sides.items():
            real = truth.get(str(leg.get("instrument_id")))
            if real is None:
                wrong.append(f"{strike} {side}: instrument {leg.get('instrument_id')} unknown")
                continue
            for name in FIELDS:
                expected = real[name]
                if isinstance(expected, float):
                    expected = round(expected, 2)
                if leg.get(name) != expected:
                    wrong.append(f"{strike} {side} {name}: {leg.get(name)} != {expected}")
    return wrong


def _sim_refusals(state: dict[str, Any]) -> int | None:
    """The simulator's own count of rate-limit refusals, when /sim/state reports one."""
    for path in (("limits", "refused"), ("refused",), ("rate_limited",), ("refusals",)):
        value: Any = state
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int):
            return value
        if isinstance(value, dict):
            return sum(v for v in value.values() if isinstance(v, int))
    return None


def _returns(runs: list[Any]) -> list[str]:
    """Runs that appear again after another run (A, B, A → [A])."""
    seen: list[Any] = []
    back = []
    for run in runs:
        if run in seen and run != seen[-1]:
            back.append(_short(run))
        if not seen or seen[-1] != run:
            seen.append(run)
    return sorted(set(back))


def _short(run: Any) -> str:
    return str(run)[:8] if run is not None else "None"


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _tail(log: str, lines: int = 6) -> str:
    """The last lines of a log that say something (tracebacks end with the error)."""
    kept = [line[:300] for line in log.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _rel(at: float | None, origin: float) -> str:
    return "none" if at is None else f"+{at - origin:.1f} s"
