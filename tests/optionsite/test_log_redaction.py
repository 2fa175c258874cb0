"""At LOG_LEVEL=DEBUG no secret reaches the output of the product's processes: the feed of
both brokers against the simulator (the DhanHQ token in the feed URL, the Upstox single-use
feed code) and daphne serving the notifier path and the OAuth callback (its access lines and
Django's "Not Found" warnings included)."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from brokers.models import BrokerAccount
from tests.chains.feed.conftest import wait_ready
from tests.processes import daphne, eventually, free_port, product_env, runfeed
from tests.sim_process import DEMO

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

FAKE_NOTIFIER_SECRET = "FAKEnotifierPathSecret-test-only-5f2c9a"
FAKE_OAUTH_CODE = "FAKEoauthCode-test-only-81d3"
# A query/form value that was not masked: key=<anything but the mask>.
UNMASKED = re.compile(r"(?i)\b(?:token|code)=(?!\*\*\*)[^&\s\"']+")


def assert_no_secret(output: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in output, f"{secret!r} is in the output:\n{output[-4000:]}"
    leaked = UNMASKED.findall(output)
    assert not leaked, f"unmasked values {leaked[:5]} in the output:\n{output[-4000:]}"


def test_feed_at_debug_logs_no_token_and_no_feed_code(wired):
    tokens = [
        BrokerAccount.objects.get(name=name).access_token.reveal()
        for name in ("sim-dhan", "sim-upstox")
    ]
    assert DEMO.dhan_token in tokens
    with runfeed("sim-dhan", "sim-upstox", LOG_LEVEL="DEBUG") as feed:
        wait_ready("sim-dhan", timeout=60)
        wait_ready("sim-upstox", timeout=60)
        assert feed.process.poll() is None, feed.output()[-3000:]
        feed.stop()
        output = feed.output()
    assert " DEBUG " in output  # the level was in force
    assert_no_secret(output, *tokens)


def test_daphne_at_debug_logs_no_notifier_secret_and_no_oauth_code():
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    notifier = f"{site}/brokers/upstox/notifier/{FAKE_NOTIFIER_SECRET}/"
    callback = f"{site}/brokers/upstox/callback?code={FAKE_OAUTH_CODE}&state=FAKE-state"
    with daphne(port, LOG_LEVEL="DEBUG", PUBLIC_BASE_URL=site) as web:

        def up() -> bool:
            try:
                return httpx.get(f"{site}/accounts/login/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(up, timeout=30, what="daphne answering")
        httpx.post(notifier, json={"client_id": "x", "access_token": "y"}, timeout=10)
        httpx.get(callback, timeout=10)
        eventually(
            lambda: web.output().count("daphne.access") >= 2,
            what="the access lines of both requests",
        )
        web.stop()
        output = web.output()
    assert '"POST /brokers/upstox/notifier/***/" 404' in output  # daphne's access lines
    assert '"GET /brokers/upstox/callback?code=***&state=FAKE-state" 302' in output
    assert_no_secret(output, FAKE_NOTIFIER_SECRET, FAKE_OAUTH_CODE)


CELERY_LOGGING = """
import django, logging
django.setup()
from optionsite.celery import app
app.log.setup(loglevel="DEBUG")  # what `celery worker` does at start
from celery.utils.log import get_task_logger
get_task_logger("chains.tasks").warning("renewing with token=FAKE-TASK-TOKEN-1234567890")
"""


def test_a_celery_task_logger_redacts_too():
    """Celery would add its own (unfiltered) handlers to its task loggers; optionsite.celery
    keeps the site's logging instead."""
    env = product_env(LOG_LEVEL="DEBUG")
    done = subprocess.run(
        [sys.executable, "-c", CELERY_LOGGING], env=env, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-2000:]
    assert "renewing with token=" in output
    assert_no_secret(output, "FAKE-TASK-TOKEN-1234567890")
