"""The product's processes for the end-to-end benchmarks (pipeline, fanout, api).

A ``Stack`` owns every process it starts (each in its own session, so a whole process group is
signalled) and a temporary directory with the SQLite database and the logs; leaving the
``with`` block stops them all (SIGTERM, then SIGKILL) and empties Redis database 13, which is
the benchmarks' own (``REDIS_URL``). The benchmark process itself runs Django on the same
temporary database (``setup_django``), so it can wire accounts with ``simaccounts`` and read
what the feed worker wrote.

CPU and RSS come from ``/proc``: ``Usage`` samples a process's utime+stime and VmRSS.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = 13  # the benchmarks' database; never 0 (demo), 14 or 15 (tests)
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin(cpu_set: Iterable[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning the child to ``cpu_set`` (None: no pinning)."""
    if cpu_set is None:
        return None
    chosen = set(cpu_set)
    return lambda: os.sched_setaffinity(0, chosen)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class Stack:
    """Processes of one benchmark run; use as a context manager."""

    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="optionsite-bench-")))
    procs: list[Proc] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return bench_env(self.tmp, **self.extra_env)

    def start(
        self,
        name: str,
        args: list[str],
        *,
        cpu_set: Iterable[int] | None = None,
        env: dict[str, str] | None = None,
        python: bool = True,
        cwd: Path | str = ROOT,
    ) -> Proc:
        log = self.tmp / f"{name}.log"
        handle = log.open("wb")
        command = [sys.executable, *args] if python else args
        popen = subprocess.Popen(
            command, cwd=cwd, env={**self.env, **(env or {})}, stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin(cpu_set),
        )  # fmt: skip
        handle.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def __enter__(self) -> Stack:
        redis_client().flushdb()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        with contextlib.suppress(OSError):
            redis_client().flushdb()


def bench_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of every process: test settings, the temporary SQLite, Redis db 13."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def setup_django(stack: Stack) -> None:
    """Django in this process, on the stack's database, migrated."""
    os.environ.update(stack.env)
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=10)


# --- the simulator --------------------------------------------------------------------------


def start_simulator(
    stack: Stack, *args: str, cpu_set: Iterable[int] | None = None, timeout: float = 60.0
) -> tuple[Proc, str]:
    """``manage.py runsim`` on a free port; returns (process, base URL) once it answers."""
    port = free_port()
    proc = stack.start(
        "simulator",
        ["manage.py", "runsim", "--host", "127.0.0.1", "--port", str(port), *args],
        cpu_set=cpu_set,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            break
        try:
            if httpx.get(f"{url}/sim/state?instruments=0", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the simulator did not start:\n{proc.tail()}")


def sim_state(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/sim/state?instruments=0", timeout=10)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def sim_post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}{path}", json=body, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} {body}: HTTP {response.status_code} {response.text}")
    return response.json()  # type: ignore[no-any-return]


def wire_accounts(url: str, tracking: dict[str, list[str]], *, expiries: int) -> None:
    """simaccounts against the simulator, then each account tracks exactly ``tracking[name]``
    (``expiries`` nearest expiries each); accounts tracking nothing are disabled."""
    import io

    from django.core.management import call_command

    from brokers.models import BrokerAccount, Instrument, InstrumentKind, TrackedChain

    call_command("simaccounts", url=url, stdout=io.StringIO())
    TrackedChain.objects.all().delete()
    for account in BrokerAccount.objects.all():
        mine = tracking.get(account.name, [])
        account.enabled = bool(mine)
        account.save(update_fields=["enabled"])
        for underlying in mine:
            index = Instrument.objects.get(
                account=account, kind=InstrumentKind.INDEX, underlying=underlying
            )
            TrackedChain.objects.create(
                account=account, underlying=underlying, index_instrument=index, expiries=expiries
            )


def feed_status(client: Any, account: str) -> dict[str, Any] | None:
    raw = client.get(f"optionsite:feed:{account}")
    return json.loads(raw) if raw else None


def wait_for(
    check: Callable[[], Any], *, timeout: float, what: str, proc: Proc | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        time.sleep(0.2)
    tail = f"\n{proc.tail()}" if proc is not None else ""
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){tail}")


# --- CPU and memory -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_KB / 1024


@dataclass
class Usage:
    """CPU (fraction of one core) and RSS of processes between ``start()`` and ``sample()``."""

    pids: dict[str, int]
    started: float = 0.0
    cpu0: dict[str, float] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def start(self) -> None:
        self.started = time.monotonic()
        self.cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.rss = {name: [] for name in self.pids}
        self.sample_rss()

    def sample_rss(self) -> None:
        now = time.monotonic() - self.started
        for name, pid in self.pids.items():
            self.rss[name].append((now, rss_mb(pid)))

    def cpu(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        return {
            name: (cpu_seconds(pid) - self.cpu0[name]) / elapsed for name, pid in self.pids.items()
        }
