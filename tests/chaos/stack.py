"""The whole product on a private Redis, for the chaos tests (tests/chaos) and their benchmark
(bench/chaos.py).

A ``ChaosStack`` owns: its own ``redis-server`` on a free port (``tests.redis_server``), a
temporary SQLite database, the exchange simulator, two ``runfeed`` processes for the same
accounts (the first holds both accounts' locks, the second stands by), daphne, a Celery worker
and the observers (``observers.Observers``: WebSocket clients rebuilding the chains, a
subscriber of the chains' Channels groups, a poller of the API and the status API). Every
product process gets ``REDIS_URL``/``CELERY_BROKER_URL`` on the private Redis through
``product_env``; nothing touches the shared Redis. ``ready()`` brings it to the state every
fault starts from; ``wait_recovered`` records when a fault is over. The faults are in
``faults``, the checks after them in ``checks``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis

from tests.processes import ROOT, Process, free_port, product_env
from tests.redis_server import RedisServer
from tests.sim_process import RunningSimulator, start_simulator

from .observers import Chain, Observers

if TYPE_CHECKING:
    from .checks import FaultReport

# A small market (one weekly, one monthly expiry, 31 strikes): every leg is compared.
SIM_ARGS = ("--seed", "11", "--ping-interval", "1", "--weeklies", "1", "--monthlies", "1",
            "--strikes", "15", "--ticks-per-second", "400")  # fmt: skip
LOCK_TTL = 10.0  # the feed lock's TTL (README: "a Redis lock with a 10 s TTL")
STANDBY_SETTLE = 8.0  # seconds after its start a silent standby runfeed is taken to be polling
DAPHNE = ["-m", "daphne", "optionsite.asgi:application", "-b", "127.0.0.1"]
CELERY_WORKER = ["-m", "celery", "-A", "optionsite", "worker", "--pool", "solo", "--loglevel",
                 "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip

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
# staff: the sampler reads the status API, which is staff-only
user = get_user_model().objects.create_user("chaos", password="chaos-only-" + "x" * 12,
                                            is_staff=True)
client = Client()
client.force_login(user)
print("CHAOS " + json.dumps({{"chains": chains,
                             "cookie": "sessionid=" + client.cookies["sessionid"].value}}))
"""


class StackError(RuntimeError):
    """The stack could not be brought to the state a fault starts from (says what was seen)."""


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
        self.wait(
            lambda: (
                self.holders() == {c.account: first.process.pid for c in self.chains}
                and all(self._ready_live(c.account) for c in self.chains)
            ),
            60,
            "the first runfeed to hold every account, live and ready",
        )
        self._start_feed()
        self.wait(self._web_answers, 60, "daphne to answer")
        self.wait(
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
    def redis_client(self) -> redis.Redis:
        """The harness's own client of the private Redis (reads only)."""
        if self._redis_client is None:
            self._redis_client = self.redis.client(socket_timeout=2, socket_connect_timeout=1)
        return self._redis_client

    def feed_status(self, account: str) -> dict[str, Any] | None:
        """The account's feed status record, None when absent or Redis is down."""
        try:
            raw = self.redis_client.get(f"optionsite:feed:{account}")
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        return json.loads(raw) if raw else None

    def meta(self, chain: Chain) -> dict[str, Any] | None:
        """The chain's snapshot meta record (run, seq, as_of), None when absent or Redis is
        down."""
        try:
            raw = self.redis_client.get(f"optionsite:chain-meta:{chain.underlying}:{chain.expiry}")
        except (redis.ConnectionError, redis.TimeoutError):
            return None
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

    def expect_exit(self, proc: Process) -> None:
        """``proc`` is being stopped or killed on purpose: its exit is no news."""
        self._reported_exits.add(proc.process.pid)

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

    def wait(
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
            f"runfeed {p.process.pid} exited {p.process.returncode}": tail(p.output())
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

        self.wait(
            healthy,
            timeout,
            "one runfeed holding every account, live, ticks "
            "reaching every chain and every client connected",
            last=self.situation,
        )
        self._reported_exits.update(p.process.pid for p in self.retired)
        holder = self.holder()
        standby = next(p for p in self.alive_feeds() if p is not holder)
        self.wait(lambda: self._standing_by(standby), 30, f"runfeed {standby.process.pid} to "
                   "stand by", last=lambda: tail(standby.output()))  # fmt: skip

    def _standing_by(self, proc: Process) -> bool:
        """A standby polling the locks: it says so for every account (or, should its words
        change, it has run long enough to poll); StackError when it exited."""
        if proc.process.poll() is not None:
            raise StackError(f"the standby runfeed {proc.process.pid} exited with "
                             f"{proc.process.returncode}: {tail(proc.output())}")  # fmt: skip
        said = [line for line in proc.output().splitlines() if "standing by" in line.lower()]
        polled = all(any(c.account in line for line in said) for c in self.chains)
        return polled or time.monotonic() - self._started_at[proc.process.pid] >= STANDBY_SETTLE

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


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def tail(log: str, lines: int = 6) -> str:
    """The last lines of a log that say something (tracebacks end with the error)."""
    kept = [line[:300] for line in log.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _rel(at: float | None, origin: float) -> str:
    return "none" if at is None else f"+{at - origin:.1f} s"
