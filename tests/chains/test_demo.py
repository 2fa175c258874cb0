"""`make demo` on a fresh database: it sets everything up, prints the URL and a login, serves
a live chain of every index (every expiry in the switcher), and Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, eventually, free_port

pytestmark = pytest.mark.integration
WAIT = 900.0  # real seconds a condition may take on a loaded machine
INDICES = ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX", "BANKEX", "SENSEX50")


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
        # The URL comes once the simulated morning is recorded: 09:15 to 11:00 at 60x out of
        # hours, up to 09:15 to 15:30 (6 min) while the market is open.
        deadline = time.monotonic() + WAIT
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
            rank = client.get("/api/v2/options/iv-rank", params={"underlying": "NIFTY"})
            assert rank.json()["data"]["days"] >= 100, rank.text[:500]  # backfilled at start
            page = client.get("/chains/NIFTY/", follow_redirects=True)
            assert page.status_code == 200 and 'id="rows"' in page.text
            assert "· W</a>" in page.text and "· M</a>" in page.text  # every expiry, labelled
            for underlying in INDICES:  # every index the exchanges list options on is live

                def live(name: str = underlying) -> bool:
                    answer = client.get("/api/v2/options/live", params={"underlying": name})
                    return answer.status_code == 200 and answer.json()["data"]["source"] == "live"

                eventually(live, timeout=60, what=f"a live {underlying} chain")
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


@pytest.mark.django_db  # the exchange calendar picks the day
def test_the_demo_runs_its_morning_at_speed_and_serves_its_history(tmp_path: Path):
    """`manage.py demo --sim-day D --sim-until 10:30`: the simulated day D runs from 09:15 at
    60x while the real feed worker records every minute, then at real time; the history API,
    asked without a date, answers for D (the feed's trading day, not the server's today)."""
    from cryptography.fernet import Fernet

    from tests.chains.feed.test_history_speed import trading_day

    day = trading_day()  # a past trading day: the demo's night on a weekday
    web, sim = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "REDIS_URL": os.environ["TEST_PROCESS_REDIS_URL"],
        "DJANGO_DEBUG": "1",
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("CELERY_BROKER_URL", None)
    log = tmp_path / "demo.log"
    argv = [sys.executable, "manage.py", "demo", "--port", str(web), "--sim-port", str(sim)]
    argv += ["--sim-day", day.isoformat(), "--sim-until", "10:30"]
    with log.open("w") as out:
        demo = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        match = None
        deadline = time.monotonic() + WAIT
        while match is None and time.monotonic() < deadline and demo.poll() is None:
            time.sleep(0.5)
            match = re.search(r"Log in as 'demo' with password '([^']+)'", log.read_text())
        assert match, log.read_text()[-3000:]
        output = log.read_text()
        assert f"Simulated trading day {day:%a %d %b %Y} (the day asked for" in output
        assert "Caught up: the simulated exchange time is 10:3" in output
        state = httpx.get(f"http://127.0.0.1:{sim}/sim/state", params={"instruments": "0"})
        clock = state.json()["clock"]
        assert clock["catching_up"] is False and clock["speed"] == 1.0
        assert clock["ist"].startswith(f"{day.isoformat()}T10:3")
        url = f"http://127.0.0.1:{web}"
        with httpx.Client(base_url=url, timeout=30) as client:
            login = client.get("/accounts/login/")
            client.post("/accounts/login/", data={"username": "demo", "password": match[1],
                        "csrfmiddlewaretoken": login.cookies["csrftoken"]},
                        headers={"Referer": f"{url}/"})  # fmt: skip

            def series() -> dict:
                response = client.get("/api/v2/options/history", params={"underlying": "NIFTY"})
                assert response.status_code == 200, response.text[:500]
                return response.json()["data"]  # type: ignore[no-any-return]

            deadline = time.monotonic() + WAIT  # the last minutes may still be being written
            while (data := series())["series"][74]["spot"] is None:  # 10:29
                assert time.monotonic() < deadline, data["series"][60:]
                time.sleep(0.5)
            assert data["date"] == day.isoformat()  # the simulated day, not the server's
            rows = data["series"]
            assert rows[0]["time"] == f"{day.isoformat()}T09:15:00+05:30"
            # Every minute from 09:20 to 10:29 is recorded (the first ones after the feed
            # connected at 09:15 may be gaps: the first boundary of a connection is one).
            missing = [r["time"][11:16] for r in rows[5:75] if r["spot"] is None]
            assert missing == [], missing
            change = client.get("/api/v2/options/oi-change", params={
                "underlying": "NIFTY", "from": "09:15", "to": "10:15"})  # fmt: skip
            assert change.status_code == 200, change.text[:500]
            built = change.json()["data"]
            assert built["from_bar"] <= f"{day.isoformat()}T09:20:00+05:30"
            assert built["to_bar"] == f"{day.isoformat()}T10:15:00+05:30"
            assert any(row[side]["change"] for row in built["strikes"] for side in ("CE", "PE"))
            replay = client.get("/api/v2/options/live", params={"underlying": "NIFTY",
                                                                "at": "09:20"})  # fmt: skip
            assert replay.status_code == 200, replay.text[:500]
            assert replay.json()["data"]["source"] == "history"
            assert replay.json()["data"]["as_of"] == f"{day.isoformat()}T09:20:00+05:30"
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
