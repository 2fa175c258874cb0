"""The production layout on this machine, for tests/deploy: Debian's nginx running
deploy/nginx/optionsite.conf (TLS with a certificate made here, /static/ from collectstatic's
output) in front of two daphnes started with the Procfile's own ``web`` command, a feed worker,
the exchange simulator, a private redis-server and a SQLite database of its own.

The daphnes run with the settings deploy/env.example gives a site behind nginx
(DJANGO_BEHIND_TLS_PROXY=1, DJANGO_PROXY_COUNT=1, DJANGO_SERVE_STATIC=0, https redirect and
secure cookies on). nginx is its own process (``nginx -c CONF -p TMP``, ``daemon off``), with
every path under a temporary folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from honcho.environ import parse_procfile

from tests.processes import ROOT, Process, eventually, free_port, product_env
from tests.redis_server import RedisServer
from tests.sim_process import RunningSimulator, start_simulator

NGINX = "/usr/sbin/nginx"
SITE = ROOT / "deploy" / "nginx" / "optionsite.conf"
HOST = "127.0.0.1"
USER, PASSWORD = "trader", "pw-test-only-1"
# A small market: one weekly and one monthly expiry, 15 strikes a side.
SIM_ARGS = ("--seed", "7", "--ping-interval", "1", "--weeklies", "1", "--monthlies", "1",
            "--strikes", "15")  # fmt: skip
# The Procfile's command line, run the way the units run it (bash, exec) from this venv.
RUN_COMMAND = "import os, sys; os.execv('/bin/bash', ['bash', '-c', sys.argv[1]])"
WIRE = """
from django.contrib.auth import get_user_model
from django.core.management import call_command
from tests.sim_wiring import tracked_chain, wire

call_command("migrate", verbosity=0)
class Simulator:
    url = {url!r}
wire(Simulator)
get_user_model().objects.create_user({user!r}, password={password!r})
underlying, expiry = tracked_chain("sim-dhan")
print("DEPLOY", underlying, expiry.isoformat())
"""


class StackError(RuntimeError):
    """A part of the deploy stack did not start; the message carries its output."""


def procfile_command(name: str) -> str:
    return str(parse_procfile((ROOT / "Procfile").read_text()).processes[name])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files in ``folder``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "optionsite deploy test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def render_site(
    *,
    port: int,
    http_port: int,
    web_ports: list[int],
    static_root: Path,
    cert: Path,
    key: Path,
    webroot: Path,
) -> str:
    """deploy/nginx/optionsite.conf with this machine's ports and paths in place of the
    production ones (IPv4 loopback only). AssertionError when a value it replaces is no longer
    in the file: the test must run the file as shipped."""
    text = SITE.read_text()
    replacements = [
        ("listen 80;", f"listen {HOST}:{http_port};"),
        ("    listen [::]:80;\n", ""),
        ("listen 443 ssl http2;", f"listen {HOST}:{port} ssl http2;"),
        ("    listen [::]:443 ssl http2;\n", ""),
        ("server_name options.example.com;", f"server_name {HOST};"),
        ("/etc/letsencrypt/live/options.example.com/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/options.example.com/privkey.pem", str(key)),
        ("server 127.0.0.1:8001 ", f"server {HOST}:{web_ports[0]} "),
        ("server 127.0.0.1:8002 ", f"server {HOST}:{web_ports[1]} "),
        ("alias /srv/optionsite/.local/staticfiles/;", f"alias {static_root}/;"),
        ("root /var/www/html;", f"root {webroot};"),
    ]
    for old, new in replacements:
        assert old in text, f"deploy/nginx/optionsite.conf no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def main_conf(folder: Path, site: Path) -> str:
    """An nginx.conf like Debian's, every path under ``folder``, that includes ``site``."""
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private folders.
    user = "user root root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
worker_processes 1;
{user}
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} info;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {folder / "access.log"};
{temp}
    include {site};
}}
"""


class Nginx:
    """nginx in the foreground as a child process; ``output()`` is its error log."""

    def __init__(self, folder: Path, conf: Path) -> None:
        self.folder = folder
        args = [NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")]
        tested = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=60)
        if tested.returncode != 0:
            raise StackError(f"nginx -t refused the site:\n{tested.stderr}")
        self.log: IO[str] = (folder / "stdout.log").open("w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip

    def output(self) -> str:
        return (self.folder / "error.log").read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)  # graceful: finish, then exit
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


class DeployStack:
    """Use as a context manager. ``url`` is the site through nginx (https)."""

    def __init__(self) -> None:
        if not Path(NGINX).exists():
            raise StackError(
                f"{NGINX} is missing: the deploy tests run Debian's nginx (`make browser` "
                "installs it; by hand: apt-get install nginx)."
            )
        self.tmp = Path(tempfile.mkdtemp(prefix="optionsite-deploy-"))
        self.redis = RedisServer()
        self.sim: RunningSimulator | None = None
        self.port, self.http_port = free_port(), free_port()
        self.web_ports = [free_port(), free_port()]
        self.webs: dict[int, Process] = {}
        self.retired: list[Process] = []
        self.feed: Process | None = None
        self.nginx: Nginx | None = None
        self.static_root = self.tmp / "static"
        self.cert = self.tmp / "cert.pem"
        self.underlying, self.expiry = "", ""

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        return product_env(
            DATABASE_URL=f"sqlite:///{self.tmp / 'db.sqlite3'}",
            REDIS_URL=self.redis.url(0),
            CELERY_BROKER_URL=self.redis.url(1),
            PUBLIC_BASE_URL=self.url,
            DJANGO_ALLOWED_HOSTS=HOST,
            DJANGO_BEHIND_TLS_PROXY="1",
            DJANGO_PROXY_COUNT="1",
            DJANGO_SERVE_STATIC="0",
            DJANGO_STATIC_ROOT=str(self.static_root),
            DJANGO_SECURE_SSL_REDIRECT="1",
            DJANGO_SECURE_COOKIES="1",
            **extra,
        )

    def __enter__(self) -> DeployStack:
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
        self._manage("collectstatic", "--noinput", "--verbosity", "0")
        wire = WIRE.format(url=self.sim.url, user=USER, password=PASSWORD)
        wired = self._manage("shell", "-c", wire)
        line = next((x for x in wired.splitlines() if x.startswith("DEPLOY ")), None)
        if line is None:
            raise StackError(f"wiring the accounts printed no chain:\n{wired[-2000:]}")
        _, self.underlying, self.expiry = line.split()
        self.feed = Process(["manage.py", "runfeed", "--account", "sim-dhan"], self.env())
        for port in self.web_ports:
            self.start_web(port)
        cert, key = self_signed(self.tmp)
        site = self.tmp / "optionsite.conf"
        site.write_text(render_site(port=self.port, http_port=self.http_port,
                                    web_ports=self.web_ports, static_root=self.static_root,
                                    cert=cert, key=key, webroot=self.tmp))  # fmt: skip
        conf = self.tmp / "nginx.conf"
        conf.write_text(main_conf(self.tmp, site))
        self.nginx = Nginx(self.tmp, conf)
        eventually(lambda: listening(self.port), timeout=30, what="nginx to listen")
        eventually(self.chain_ready, timeout=90, what=f"{self.underlying} live and ready")

    def start_web(self, port: int) -> Process:
        """A daphne on ``port``, started with the Procfile's ``web`` command; returns once it
        answers."""
        path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
        web = Process(["-c", RUN_COMMAND, procfile_command("web")],
                      self.env(PORT=str(port), PATH=path))  # fmt: skip
        self.webs[port] = web
        eventually(lambda: listening(port) or web.process.poll() is not None, timeout=60,
                   what=f"daphne on {port}")  # fmt: skip
        if web.process.poll() is not None:
            raise StackError(f"daphne on {port} exited:\n{web.output()[-3000:]}")
        return web

    def kill_web(self, port: int) -> None:
        """kill -9 the daphne on ``port`` (its log is kept until the stack closes)."""
        web = self.webs.pop(port)
        web.signal(signal.SIGKILL)
        web.wait(30)
        self.retired.append(web)

    def chain_ready(self) -> bool:
        raw = self.redis.client().get("optionsite:feed:sim-dhan")
        if raw is None:
            return False
        status = json.loads(raw)
        return status["state"] in {"live", "quiet"} and any(c["ready"] for c in status["chains"])

    def client(self, *, local_address: str = HOST, **options: Any) -> httpx.Client:
        """An https client of the site through nginx, trusting its certificate, connecting
        from ``local_address`` (any 127.x.y.z address is this machine)."""
        transport = httpx.HTTPTransport(verify=self.ssl_context(), local_address=local_address)
        return httpx.Client(base_url=self.url, transport=transport, timeout=30, **options)

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the stack's own certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    def log_in(self, client: httpx.Client) -> None:
        client.get("/accounts/login/").raise_for_status()
        answer = client.post(
            "/accounts/login/",
            data={"username": USER, "password": PASSWORD,
                  "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/accounts/login/"},
        )  # fmt: skip
        assert answer.status_code == 302, answer.text[:2000]

    def access_attempt_addresses(self) -> list[str]:
        """The client addresses django-axes recorded failed logins for."""
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.tmp / "db.sqlite3")) as db:
            rows = db.execute("SELECT ip_address FROM axes_accessattempt").fetchall()
        return [str(row[0]) for row in rows]

    def _manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(),
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"manage.py {args[0]} failed:\n{done.stdout[-2000:]}\n"
                             f"{done.stderr[-3000:]}")  # fmt: skip
        return done.stdout

    def logs(self) -> str:
        """Every process's output, for a failing assertion's message."""
        parts = [f"--- nginx\n{self.nginx.output()[-3000:]}" if self.nginx else ""]
        for name, proc in [*((f"web {p}", w) for p, w in self.webs.items()),
                           *(("retired web", w) for w in self.retired),
                           ("feed", self.feed)]:  # fmt: skip
            if proc is not None:
                parts.append(f"--- {name}\n{proc.output()[-3000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for proc in [*self.webs.values(), self.feed]:
            if proc is not None and proc.process.poll() is None:
                proc.stop()
        for proc in [*self.webs.values(), *self.retired, self.feed]:
            if proc is not None:
                with contextlib.suppress(OSError):
                    Path(proc.log.name).unlink()
        if self.sim is not None:
            self.sim.stop()
        self.redis.stop()
        shutil.rmtree(self.redis.dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
