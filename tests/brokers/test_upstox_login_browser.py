"""The daily Upstox login in real Chromium against the simulator: the admin logs in to admin,
clicks "Log in to Upstox", approves at the broker's dialog, lands back with the token stored,
and the running feed resumes with it — no restart."""

from __future__ import annotations

import io
import shutil

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from brokers.models import AccountStatus, BrokerAccount
from chains import store
from tests.processes import daphne, eventually, free_port, runfeed
from tests.sim_process import start_simulator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def feed_state(account: str) -> str | None:
    return (store.read_feed_status(account) or {}).get("state")


def test_admin_logs_in_to_upstox_and_the_feed_resumes():
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    store.sync_client().flushdb()
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    sim = start_simulator("--ping-interval", "1", "--upstox-redirect-uri",
                          f"{site}/brokers/upstox/callback")  # fmt: skip
    try:
        call_command("simaccounts", url=sim.url, stdout=io.StringIO())
        get_user_model().objects.create_superuser("boss", "b@example.invalid", "pw-test-only-2")
        with runfeed("sim-upstox"), daphne(port, PUBLIC_BASE_URL=site):
            eventually(lambda: feed_state("sim-upstox") == "live", timeout=30, what="live feed")
            sim.fault(action="expire_token", broker="upstox")  # 03:30 IST has come
            eventually(lambda: feed_state("sim-upstox") == "token_wait", what="token_wait")
            account = BrokerAccount.objects.get(name="sim-upstox")
            assert account.status == AccountStatus.TOKEN_EXPIRED
            # No ORM inside: Playwright's sync API runs an event loop in this thread.
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page()
                page.goto(f"{site}/admin/")
                page.fill("input[name=username]", "boss")
                page.fill("input[name=password]", "pw-test-only-2")
                page.click("input[type=submit]")
                page.goto(f"{site}/admin/brokers/brokeraccount/{account.pk}/change/")
                page.click("text=Log in to Upstox")
                page.wait_for_url(f"{sim.url}/**")  # at the broker's dialog
                page.click("button[value=approve]")
                page.wait_for_url(f"{site}/admin/brokers/brokeraccount/{account.pk}/change/")
                assert "Logged in to Upstox" in page.content()
                browser.close()
            account.refresh_from_db()
            assert account.status == AccountStatus.OK and account.token_expires_at is not None
            eventually(lambda: feed_state("sim-upstox") == "live", timeout=30,
                       what="the feed to resume with the new token")  # fmt: skip
    finally:
        sim.stop()
        store.sync_client().flushdb()
