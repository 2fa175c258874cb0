"""`make demo` on a fresh database: it sets everything up, prints the URL and a login, serves
a live NIFTY chain, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, free_port

pytestmark = pytest.mark.integration


def test_make_demo_serves_a_live_chain_and_stops_cleanly(tmp_path: Path):
    web, sim = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        # A database of its own (this xdist worker's, tests/settings.py), also its Celery
        # broker as in production: the demo's beat must not reach the tests' Celery worker.
        "REDIS_URL": os.environ["TEST_PROCESS_REDIS_URL"],
        "DEMO_PORT": str(web),
        "DEMO_SIM_PORT": str(sim),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the demo runs the product's own settings
    env.pop("CELERY_BROKER_URL", None)  # Celery then uses REDIS_URL, as by default
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(["make", "demo"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        match = None
        while match is None and time.monotonic() < deadline and demo.poll() is None:
            time.sleep(0.5)
            match = re.search(r"Log in as 'demo' with password '([^']+)'", log.read_text())
        assert match, log.read_text()[-3000:]
        url = f"http://127.0.0.1:{web}"
        with httpx.Client(base_url=url, timeout=10) as client:
            login = client.get("/accounts/login/")
            token = login.cookies["csrftoken"]
            client.post("/accounts/login/", data={"username": "demo", "password": match[1],
                        "csrfmiddlewaretoken": token}, headers={"Referer": f"{url}/"})  # fmt: skip
            response = client.get("/api/v2/options/live", params={"underlying": "NIFTY"})
            assert response.status_code == 200, response.text[:500]
            data = response.json()["data"]
            assert data["source"] == "live" and len(data["strikes"]) > 20
            page = client.get("/chains/NIFTY/", follow_redirects=True)
            assert page.status_code == 200 and 'id="rows"' in page.text
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's group
        code = demo.wait(timeout=60)
    output = log.read_text()
    # make itself re-raises the SIGINT it got (as after Ctrl-C); the demo stopped cleanly.
    assert code in (0, -signal.SIGINT), output[-3000:]
    assert "stopping…" in output and "Feed stopped." in output
    assert "did not stop in time" not in output
    with httpx.Client(timeout=2) as client:
        for port in (web, sim):
            with pytest.raises(httpx.ConnectError):
                client.get(f"http://127.0.0.1:{port}/")
