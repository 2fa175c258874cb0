"""A browser's live chain through nginx (deploy/nginx/optionsite.conf) in front of two daphnes
survives the daphne holding its WebSocket being killed and restarted: the page reconnects
through nginx to the other daphne, resyncs from the snapshot and its table keeps moving."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from tests.processes import eventually

from .stack import PASSWORD, USER, DeployStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
LTP_CELLS = "#rows td[data-f$='.ltp']"


@pytest.fixture(scope="module")
def stack() -> Iterator[DeployStack]:
    with DeployStack() as running:
        yield running


@pytest.fixture
def browser() -> Iterator[object]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def sockets_opened(output: str, path: str) -> int:
    """How many WebSockets to ``path`` a daphne's access log says it accepted."""
    return len(re.findall(rf"WSCONNECT {re.escape(path)}\b", output))


def wait_for_ltp_change(page) -> None:
    before = page.eval_on_selector_all(LTP_CELLS, "cells => cells.map(c => c.textContent)")
    page.wait_for_function(
        """([selector, before]) => [...document.querySelectorAll(selector)]
             .some((td, i) => td.textContent !== before[i])""",
        arg=[LTP_CELLS, before],
        timeout=90_000,  # a bound for a loaded machine, not a speed claim
    )


def test_page_survives_its_daphne_being_restarted(stack, browser):
    path = f"/ws/live-options/{stack.underlying}"
    context = browser.new_context(ignore_https_errors=True)  # the stack's own certificate
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{stack.url}/accounts/login/")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{stack.url}/chains/{stack.underlying}/")
    page.wait_for_function("() => document.getElementById('freshness').textContent === 'Live'",
                           timeout=60_000)  # fmt: skip
    wait_for_ltp_change(page)
    # The daphne that accepted the page's socket (nginx chose one of the two).
    holder = eventually(
        lambda: [p for p, web in stack.webs.items() if sockets_opened(web.output(), path)],
        timeout=30, what="a daphne to log the page's WebSocket",
    )  # fmt: skip
    assert len(holder) == 1, stack.logs()
    killed = holder[0]
    (other,) = [p for p in stack.webs if p != killed]
    stack.kill_web(killed)
    # The page reconnects through nginx, to the daphne that is left, and is live again.
    eventually(lambda: sockets_opened(stack.webs[other].output(), path) >= 1, timeout=120,
               what="the page's WebSocket on the other daphne")  # fmt: skip
    page.wait_for_function("() => document.getElementById('freshness').textContent === 'Live'",
                           timeout=60_000)  # fmt: skip
    wait_for_ltp_change(page)
    # The killed daphne comes back on its port and serves through nginx again.
    restarted = stack.start_web(killed)
    with stack.client() as client:
        stack.log_in(client)

        def served_by_restarted() -> bool:
            client.get("/api/v2/options/live", params={"underlying": stack.underlying})
            return "/api/v2/options/live" in restarted.output()

        eventually(served_by_restarted, timeout=60, what="nginx to use the restarted daphne")
    wait_for_ltp_change(page)  # the page kept streaming throughout
    assert page.locator("#rows tr").count() > 10
    assert not errors, errors
    context.close()
