"""Run the exchange simulator (``manage.py runsim``) in a subprocess for integration tests."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from brokers.dhan.messages import feed_url
from brokers.dhan.rest import DhanRestClient
from brokers.http import NO_RETRY
from brokers.ratelimit import dhan_limiters
from brokers.simulator.app import SimConfig
from brokers.upstox.rest import UpstoxRestClient

ROOT = Path(__file__).resolve().parent.parent
DEMO = SimConfig()
STARTUP_SECONDS = 30.0


@dataclass
class RunningSimulator:
    """A simulator subprocess: its base ``url`` and helpers that talk to its control API."""

    url: str
    process: subprocess.Popen[str] = field(repr=False)
    stderr_path: str = field(repr=False)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:]

    @property
    def dhan_rest(self) -> DhanRestClient:
        """A new Dhan REST client with the demo credentials (no retries); close it after use."""
        return DhanRestClient(
            f"{self.url}/dhan",
            DEMO.dhan_client_id,
            DEMO.dhan_token,
            retry=NO_RETRY,
            limiters=dhan_limiters(chain_interval=0.001),  # the simulator's 429s are tested apart
        )

    @property
    def upstox_rest(self) -> UpstoxRestClient:
        """A new Upstox REST client with the pre-issued demo token (no retries)."""
        return UpstoxRestClient(
            f"{self.url}/upstox", access_token=DEMO.upstox_token, retry=NO_RETRY
        )

    def dhan_feed_url(
        self, *, token: str = DEMO.dhan_token, client_id: str = DEMO.dhan_client_id
    ) -> str:
        return feed_url(f"{self.ws_url}/dhan/feed", token=token, client_id=client_id)

    def fault(self, **body: Any) -> dict[str, Any]:
        """POST ``body`` to /sim/faults; raises AssertionError unless it was applied."""
        response = httpx.post(f"{self.url}/sim/faults", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def state(self, *, instruments: bool = True) -> dict[str, Any]:
        query = "" if instruments else "?instruments=0"
        response = httpx.get(f"{self.url}/sim/state{query}", timeout=10)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def issue_token(self, broker: str) -> str:
        """A fresh access token for ``broker`` ("dhan" or "upstox") from the simulator."""
        response = httpx.post(f"{self.url}/sim/tokens", json={"broker": broker}, timeout=10)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def reset(self) -> None:
        httpx.post(f"{self.url}/sim/reset", timeout=10).raise_for_status()

    def step(self, steps: int) -> None:
        httpx.post(f"{self.url}/sim/step", json={"steps": steps}, timeout=30).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.unlink(self.stderr_path)


def start_simulator(*args: str) -> RunningSimulator:
    """Start ``manage.py runsim --port 0 ARGS``; return once it answers /sim/state.

    Raises RuntimeError with the simulator's stderr when it does not come up in time.
    """
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}
    with tempfile.NamedTemporaryFile("w", prefix="runsim-", suffix=".log", delete=False) as stderr:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runsim", "--host", "127.0.0.1", "--port", "0", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
    deadline = time.monotonic() + STARTUP_SECONDS
    url = None
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while url is None and time.monotonic() < deadline and process.poll() is None:
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
                if line.startswith("Exchange simulator listening on "):
                    url = line.split()[-1]
    while url is not None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/sim/state?instruments=0", timeout=2).status_code == 200:
                return RunningSimulator(url, process, stderr.name)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    log = Path(stderr.name).read_text()
    raise RuntimeError(f"the simulator did not start (args {args}):\n{log[-3000:]}")
