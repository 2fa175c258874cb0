"""The chain page in real Chromium against the whole system on the simulator: log in, open
NIFTY, watch prices change without reloading, switch expiry, see the stale banner when the
simulator stalls and the chain recover when it resumes."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from chains import store
from tests.processes import daphne, eventually, free_port, runfeed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def browser() -> Iterator[object]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def site(sim):
    store.sync_client().flushdb()
    call_command("simaccounts", url=sim.url, stdout=io.StringIO())
    get_user_model().objects.create_user("trader", password="pw-test-only-1")
    port = free_port()
    with runfeed("sim-dhan"), daphne(port, CHAIN_STALE_SECONDS="3") as web:
        eventually(lambda: any(c["ready"] for c in (store.read_feed_status("sim-dhan") or {})
                               .get("chains", [])), timeout=30, what="NIFTY ready")  # fmt: skip
        yield f"http://127.0.0.1:{port}", web
    store.sync_client().flushdb()


def cell_texts(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "cells => cells.map(c => c.textContent)")


def test_live_chain_in_chromium(site, sim, browser):
    url, _ = site
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/chains/NIFTY/")
    assert "/accounts/login/" in page.url  # login required
    page.fill("input[name=username]", "trader")
    page.fill("input[name=password]", "pw-test-only-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/chains/NIFTY/**")
    assert page.locator("#source").inner_text() == "Live"
    rows = page.locator("#rows tr")
    assert rows.count() > 10
    assert page.locator("#rows tr.atm").count() == 1
    # Prices change without a reload.
    before = cell_texts(page, "#rows td[data-f$='.ltp']")
    page.wait_for_function(
        """before => [...document.querySelectorAll("#rows td[data-f$='.ltp']")]
             .some((td, i) => td.textContent !== before[i])""",
        arg=before,
        timeout=15_000,
    )
    # Switch expiry: the other tracked expiry's page streams too.
    first_expiry = page.locator(".expiries a.current").get_attribute("data-expiry")
    page.locator(".expiries a:not(.current)").first.click()
    page.wait_for_load_state()
    assert page.locator(".expiries a.current").get_attribute("data-expiry") != first_expiry
    assert page.locator("#rows tr").count() > 10
    # The simulator stalls: the stale banner appears; it resumes: the chain recovers.
    sim.fault(action="stall")
    page.wait_for_selector("#stale:not([hidden])", timeout=15_000)
    sim.fault(action="resume")
    page.wait_for_selector("#stale[hidden]", state="attached", timeout=15_000)
    assert page.locator("#feed").inner_text() == "Feed: live"
    assert not errors, errors


def test_page_is_complete_without_javascript(site, browser):
    url, _ = site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", "trader")
    page.fill("input[name=password]", "pw-test-only-1")
    page.click("button[type=submit]")
    page.goto(f"{url}/chains/NIFTY/?window=5")
    assert page.locator("#rows tr").count() == 11  # ±5 around ATM
    ltps = cell_texts(page, "#rows td[data-f='CE.ltp']")
    assert all(text not in {"", "–"} for text in ltps)
    context.close()
