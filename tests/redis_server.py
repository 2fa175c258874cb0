"""A private ``redis-server`` for tests that stop, restart or lose Redis.

Never stop the shared Redis other tests and engineers use: start one of these on a free port
and point the code under test at ``server.url()`` (override ``REDIS_URL``/``CHANNEL_LAYERS`` for
an in-process test, or pass ``REDIS_URL`` in a subprocess's environment).

    with RedisServer() as server:          # started, answering PING
        ...                                # server.url(db=0), server.client()
        server.stop()                      # an outage: connections are refused
        server.start()                     # back on the same port, empty (no persistence)
        server.restart()                   # both

The server keeps nothing on disk (``--save "" --appendonly no``): a restart loses every key,
the way a Redis without persistence does. Its log is kept for failure messages.

``with use_in_process(server):`` points this test process's Redis users (``REDIS_URL``, the
channel layer, the cache, the shared sync client of ``brokers.connections``) at the server;
a subprocess gets ``REDIS_URL=server.url()`` in its environment instead.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import redis

READY_SECONDS = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on ``port`` (a free one when None), started by ``start()``
    or by entering the context; stopped (and its files removed) on exit."""

    def __init__(self, port: int | None = None, *, executable: str = "redis-server") -> None:
        found = shutil.which(executable)
        if found is None:
            raise RuntimeError(f"{executable} is not installed: apt-get install redis-server")
        self.executable = found
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.log = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0, **options: object) -> redis.Redis:
        """A new synchronous client of this server (close it when done)."""
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, **options)  # type: ignore[arg-type]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers PING; RuntimeError with its log when it
        exits or does not answer within ``READY_SECONDS``. Starting a running server is an
        error (stop it first)."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        probe = self.client(socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + READY_SECONDS
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited on start:\n{self.output()}")
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass  # not listening or still loading: ask again
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not answer PING within "
                        f"{READY_SECONDS:g}s:\n{self.output()}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until it is gone: clients'
        connections are closed and new ones refused. Stopping a stopped server does nothing."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """``stop()`` then ``start()`` on the same port: an empty server, ready."""
        self.stop()
        self.start()

    def output(self) -> str:
        """The server's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def use_in_process(server: RedisServer, *, db: int = 0) -> Iterator[str]:
    """Within the block, this process's Redis users reach ``server`` (database ``db``), whose
    URL it yields: ``REDIS_URL``, every channel layer host (Channels builds its layers afresh
    on the change), the cache's ``LOCATION`` and the process-wide sync client of
    ``brokers.connections`` (rebuilt from ``REDIS_URL`` on first use, closed at the end). The
    async clients read ``REDIS_URL`` when they are made, so they follow by themselves. Needs
    Django's settings configured (a pytest-django run)."""
    from django.conf import settings
    from django.test import override_settings

    from brokers import connections

    url = server.url(db)
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for layer in layers.values():
        hosts = layer.get("CONFIG", {}).get("hosts")
        if hosts:
            layer["CONFIG"]["hosts"] = [
                {**host, "address": url} if isinstance(host, dict) else url for host in hosts
            ]
    caches = copy.deepcopy(settings.CACHES)
    for cache in caches.values():
        if "redis" in cache["BACKEND"].lower():
            cache["LOCATION"] = url
    with override_settings(REDIS_URL=url, CHANNEL_LAYERS=layers, CACHES=caches):
        saved, connections._sync_client = connections._sync_client, None
        try:
            yield url
        finally:
            made, connections._sync_client = connections._sync_client, saved
            if made is not None:
                made.close()
