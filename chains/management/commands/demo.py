"""python manage.py demo — set up and run optionsite locally (what `make demo` calls).

Makes sure Redis is reachable (REDIS_URL; else a redis-server from PATH with its files under
.local/redis; else apt on Debian as root; else stops with the exact instruction), migrates,
creates the demo login, starts the exchange simulator, wires a Dhan and an Upstox account to
it (``simaccounts``: masters loaded, chains tracked), then starts runfeed, the Celery worker
and beat and daphne, and prints the URL once the NIFTY chain is live and the morning recorded.
Ctrl-C (or SIGTERM) stops every process cleanly; if one dies, the others are stopped and the
exit code says so.

The simulated trading day (``demo_day``): the simulator starts the day at 09:15 IST, runs it at
``DEMO_SPEED`` while the feed worker records every minute, and goes on at real time from the
demo's "now": while the exchange is open, the real time (the simulated clock meets the real one
on today's date); otherwise — a night, a weekend, a holiday — the latest trading day replayed up
to ``DEMO_REPLAY_UNTIL``, said as such. Its clock stands at 09:15 until the feed worker
subscribes, so no minute passes unrecorded while the demo is set up. ``--sim-day`` and
``--sim-until`` choose another day and time.
"""

from __future__ import annotations

import io
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.exchange import IST, SESSION_OPEN
from chains.management.demo_day import DEMO_SPEED, demo_day

DEMO_USER = "demo"
DEMO_HISTORY_DAYS = 200  # trading days (~9 months), within HISTORY_DAILY_DAYS


class Command(BaseCommand):
    help = "Set up and run optionsite on the local exchange simulator (what `make demo` runs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
        parser.add_argument(
            "--sim-port", type=int, default=int(os.environ.get("DEMO_SIM_PORT", "8800"))
        )
        parser.add_argument(
            "--setup-only", action="store_true", help="Prepare everything, start nothing."
        )
        parser.add_argument(
            "--sim-day",
            type=date.fromisoformat,
            default=None,
            metavar="YYYY-MM-DD",
            help="The simulated trading day (default: today while the market is open, else "
            "the latest trading day).",
        )
        parser.add_argument(
            "--sim-until",
            type=clock_time.fromisoformat,
            default=None,
            metavar="HH:MM",
            help="Where the simulated clock stops running fast (IST; default: the real time "
            "while the market is open, else 11:00).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        local = Path(settings.LOCAL_DIR)
        local.mkdir(exist_ok=True)
        self.redis_proc = ensure_redis(settings.REDIS_URL, local / "redis", self.stdout.write)
        call_command("migrate", verbosity=0, interactive=False)
        password = ensure_demo_user(local / "demo-password")
        if options["setup_only"]:
            self.stdout.write("Setup done.")
            self._stop_redis()
            return
        from brokers import calendar

        now = datetime.now(IST)
        holidays = calendar.holidays("NSE", [now.year - 1, now.year])
        try:
            plan = demo_day(now, holidays, day=options["sim_day"], until=options["sim_until"])
        except CommandError:
            self._stop_redis()
            raise
        host, port, sim_port = options["host"], options["port"], options["sim_port"]
        for what, number in (("web", port), ("simulator", sim_port)):
            if not port_free(host, number):
                raise CommandError(
                    f"Port {number} on {host} ({what}) is in use: stop what runs there or choose "
                    "another port (DEMO_PORT=8001 / DEMO_SIM_PORT=8801 make demo)."
                )
        python = sys.executable
        local_dir = str(local)
        supervisor = Supervisor(self.stdout.write)
        url = f"http://{host}:{port}/"
        try:
            callback = use_public_base_url(url.rstrip("/"))
            runsim = [python, "manage.py", "runsim", "--host", host, "--port", str(sim_port)]
            self.stdout.write(
                f"Simulated trading day {plan.day:%a %d %b %Y} ({plan.why}): from 09:15 IST "
                f"at {DEMO_SPEED:g}x until {plan.until:%H:%M:%S}, then real time. The history "
                "shows the simulated exchange's day and minutes (its clock: /sim/state)."
            )
            runsim += plan.runsim_args()
            supervisor.start("simulator", [*runsim, "--upstox-redirect-uri", callback])
            wait_for_port(host, sim_port, timeout=30)
            allow_simulator_host(host, say=self.stdout.write)
            call_command("simaccounts", url=f"http://{host}:{sim_port}", stdout=self.stdout)
            # Months of daily closes from the simulator's history: IV rank shows at once.
            said = io.StringIO()
            call_command("backfillhistory", account="sim-dhan", days=DEMO_HISTORY_DAYS, stdout=said)
            self.stdout.write(f"History backfill: {said.getvalue().splitlines()[-1]}")
            supervisor.start("feed", [python, "manage.py", "runfeed"])
            celery = [python, "-m", "celery", "-A", "optionsite"]
            supervisor.start("worker", [*celery, "worker", "--concurrency", "1", "-l", "INFO"])
            schedule = f"{local_dir}/celerybeat-schedule"
            supervisor.start("beat", [*celery, "beat", "--schedule", schedule, "-l", "INFO"])
            daphne = [python, "-m", "daphne", "-b", host, "-p", str(port)]
            supervisor.start("web", [*daphne, "optionsite.asgi:application"])
            wait_for_port(host, port, timeout=30)
            wait_for_chain("NIFTY", timeout=60, say=self.stdout.write)
            catching = (plan.until - datetime.combine(plan.day, SESSION_OPEN, tzinfo=IST)) / (
                timedelta(seconds=DEMO_SPEED)
            )
            wait_for_catch_up(
                f"http://{host}:{sim_port}", timeout=60 + 3 * catching, say=self.stdout.write
            )
            self.stdout.write(self.style.SUCCESS(f"\noptionsite is running at {url}"))
            self.stdout.write(
                f"Log in as '{DEMO_USER}' with password '{password}' (admin: {url}admin/, "
                f"status: {url}status/, simulator: http://{host}:{sim_port}/sim/state)"
            )
            self.stdout.write("Press Ctrl-C to stop.\n")
            code = supervisor.wait()
        finally:
            supervisor.stop()
            self._stop_redis()
        if code:
            raise CommandError(f"A demo process exited with code {code}; everything was stopped.")

    def _stop_redis(self) -> None:
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            self.redis_proc.wait(timeout=10)


def use_public_base_url(url: str) -> str:
    """Make ``url`` (the demo's own address, no trailing slash) PUBLIC_BASE_URL in this process
    and, through the environment, in every process the demo starts; return the Upstox redirect
    URI the product builds from it, which the demo's simulator is told to expect. So a DEMO_PORT
    other than 8000 logs in to Upstox, and WebSockets are accepted from the demo's origin."""
    from brokers.upstox_login import redirect_uri

    settings.PUBLIC_BASE_URL = url
    os.environ["PUBLIC_BASE_URL"] = url
    return redirect_uri()


def allow_simulator_host(host: str, *, say: Any) -> None:
    """Add the simulator's ``host`` to BROKER_HOST_ALLOWLIST, in this process and (through the
    environment) in every process the demo starts, unless it is already allowed: broker URLs
    outside the allowlist are refused (brokers.endpoints)."""
    from brokers.endpoints import host_allowed

    if host_allowed(host):
        return
    allowlist = [*settings.BROKER_HOST_ALLOWLIST, host.lower()]
    settings.BROKER_HOST_ALLOWLIST = allowlist
    os.environ["BROKER_HOST_ALLOWLIST"] = ",".join(allowlist)
    say(f"The demo adds the simulator's host {host} to BROKER_HOST_ALLOWLIST.")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def wait_for_port(host: str, port: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_free(host, port):
            return
        time.sleep(0.2)
    raise CommandError(f"Nothing listens on {host}:{port} after {timeout:.0f}s.")


def wait_for_chain(underlying: str, *, timeout: float, say: Any) -> None:
    """Wait until a feed worker reports ``underlying`` ready (or say why it is not)."""
    from chains import store

    deadline = time.monotonic() + timeout
    last = "no feed status yet"
    while time.monotonic() < deadline:
        for account in ("sim-dhan", "sim-upstox"):
            status = store.read_feed_status(account)
            if status is None:
                continue
            for chain in status["chains"]:
                if chain["underlying"] == underlying:
                    if chain["ready"] and status["state"] in {"live", "quiet"}:
                        return
                    last = f"{account}: {status['state']}, {chain['reason']}"
        time.sleep(0.5)
    say(f"The {underlying} chain is not live after {timeout:.0f}s ({last}); see /status/.")


def sim_clock(url: str) -> dict[str, Any]:
    """The simulator's clock (``/sim/state``'s ``clock``); CommandError when it does not
    answer."""
    try:
        answer = httpx.get(f"{url}/sim/state", params={"instruments": "0"}, timeout=10)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise CommandError(
            f"The simulator at {url} does not answer ({exc}): see its output above."
        ) from None
    clock: dict[str, Any] = answer.json()["clock"]
    return clock


def wait_for_catch_up(url: str, *, timeout: float, say: Any) -> None:
    """Wait until the simulator at ``url`` has caught up (its clock runs at real time), saying
    the simulated time every few seconds; say so when it has not within ``timeout``."""
    deadline = time.monotonic() + timeout
    told = -math.inf
    while time.monotonic() < deadline:
        clock = sim_clock(url)
        if not clock["catching_up"]:
            say(f"Caught up: the simulated exchange time is {clock['ist'][11:19]} IST.")
            return
        if time.monotonic() - told >= 10:
            told = time.monotonic()
            say(f"Recording the morning: simulated {clock['ist'][11:19]} IST…")
        time.sleep(0.5)
    say(f"The simulator has not caught up after {timeout:.0f}s (a busy machine): see /sim/state.")


def redis_reachable(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def ensure_redis(url: str, folder: Path, say: Any) -> subprocess.Popen[bytes] | None:
    """Return None when REDIS_URL answers, else the redis-server process started for it.

    Raises CommandError with the exact instruction when no Redis can be had.
    """
    if redis_reachable(url):
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in {"127.0.0.1", "localhost"}:
        raise CommandError(f"Redis at {url} does not answer: start it, or fix REDIS_URL.")
    server = shutil.which("redis-server")
    if server is None and Path("/etc/debian_version").exists() and os.geteuid() == 0:
        say("redis-server not found: installing it with apt (Debian, root)…")
        subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], check=True)
        server = shutil.which("redis-server")
    if server is None:
        raise CommandError(
            f"Redis at {url} does not answer and redis-server is not installed. Install it "
            "(Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) "
            "or set REDIS_URL to a running Redis, then run make demo again."
        )
    folder.mkdir(parents=True, exist_ok=True)
    port = str(parts.port or 6379)
    say(f"Starting redis-server on 127.0.0.1:{port} (files in {folder})…")
    listen = ["--bind", "127.0.0.1", "--port", port]
    storage = ["--dir", str(folder), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([server, *listen, *storage, "--logfile", str(folder / "redis.log")])
    deadline = time.monotonic() + 10
    while not redis_reachable(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise CommandError(f"redis-server did not start: see {folder / 'redis.log'}.")
        time.sleep(0.1)
    return proc


def ensure_demo_user(password_file: Path) -> str:
    """Create (or reset) the demo superuser; its random password is kept in a local file."""
    if password_file.exists():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=DEMO_USER)
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return password


class Supervisor:
    """Starts named child processes and stops them together (SIGTERM, then SIGKILL)."""

    def __init__(self, say: Any) -> None:
        self.say = say
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        self.say(f"starting {name}: {' '.join(argv[1:5])} …")
        self.procs[name] = subprocess.Popen(argv, start_new_session=True)

    def wait(self) -> int:
        """Block until Ctrl-C/SIGTERM (returns 0) or a child exits (returns its code or 1)."""
        stop = {"now": False}

        def on_signal(signum: int, frame: Any) -> None:
            stop["now"] = True

        previous = signal.signal(signal.SIGTERM, on_signal)
        try:
            while not stop["now"]:
                for name, proc in self.procs.items():
                    code = proc.poll()
                    if code is not None:
                        self.say(f"{name} exited with code {code}")
                        return code or 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.say("\nstopping…")
        finally:
            signal.signal(signal.SIGTERM, previous)
        return 0

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):  # web first, simulator last
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop in time: killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
