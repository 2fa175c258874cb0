"""The chain page in real Chromium: against the whole system on the simulator (log in, open
NIFTY, watch prices change without reloading, switch expiry, see the chain go stale when its
feed worker is killed and live again when one runs), and with a scripted WebSocket that walks
the freshness badge through every state the server can send."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
from collections.abc import Iterator

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.management import call_command

from chains import store
from chains.api import api_data
from chains.book import stored_snapshot
from tests.processes import daphne, eventually, free_port, runfeed

from .fixtures import EXPIRY, build_book, tracked

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.browser]
# The processes these tests start (runfeed, daphne) use a Redis database of their own (this
# xdist worker's, tests/settings.py), so that nothing flushing the test database or running a
# sim-dhan feed with its lock can pull keys away from under the page.
REDIS_URL = os.environ["TEST_PROCESS_REDIS_URL"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
AS_OF_TIME = re.compile(r"^(\d\d [A-Z][a-z]{2} )?\d\d:\d\d:\d\d$")


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
def redis_db() -> Iterator[redis.Redis]:
    """The Redis database of the processes a test starts, empty before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def chain_ready(client: redis.Redis) -> bool:
    raw = client.get(store.feed_key("sim-dhan"))
    return raw is not None and any(c["ready"] for c in json.loads(raw)["chains"])


@pytest.fixture
def site(sim, redis_db):
    call_command("simaccounts", url=sim.url, stdout=io.StringIO())
    get_user_model().objects.create_user("trader", password="pw-test-only-1")
    port = free_port()
    with runfeed("sim-dhan", REDIS_URL=REDIS_URL) as feed, daphne(port, REDIS_URL=REDIS_URL) as web:
        eventually(lambda: chain_ready(redis_db), timeout=30, what="NIFTY ready")
        yield f"http://127.0.0.1:{port}", web, feed


def log_in(page, url: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", "trader")
    page.fill("input[name=password]", "pw-test-only-1")
    page.click("button[type=submit]")
    page.wait_for_load_state()


def cell_texts(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "cells => cells.map(c => c.textContent)")


def badge(page) -> str:
    return page.locator("#freshness").inner_text()


def test_live_chain_in_chromium(site, browser):
    url, _, feed = site
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/chains/NIFTY/")
    assert "/accounts/login/" in page.url  # login required
    page.fill("input[name=username]", "trader")
    page.fill("input[name=password]", "pw-test-only-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/chains/NIFTY/**")
    assert badge(page) == "Live"
    assert AS_OF_TIME.match(page.locator("#as-of time").inner_text())
    assert page.locator("#stale").is_hidden()
    rows = page.locator("#rows tr")
    assert rows.count() > 10
    assert page.locator("#rows tr.atm").count() == 1
    # Prices change without a reload.
    before = cell_texts(page, "#rows td[data-f$='.ltp']")
    page.wait_for_function(
        """before => [...document.querySelectorAll("#rows td[data-f$='.ltp']")]
             .some((td, i) => td.textContent !== before[i])""",
        arg=before,
        timeout=60_000,  # a generous bound: a loaded machine (stress-ng beside the suite) is slow
    )
    # Switch expiry: the other tracked expiry's page streams too.
    first_expiry = page.locator(".expiries a.current").get_attribute("data-expiry")
    other = page.locator(".expiries a:not(.current)").first
    other_expiry = other.get_attribute("data-expiry")
    # Follow the link's own address (a pointer click waits for Chromium to scroll and paint,
    # which a loaded test machine can starve for longer than any bound; the page under test is
    # the other expiry's, not the pointer).
    page.goto(url + str(other.get_attribute("href")))
    page.wait_for_selector(f".expiries a.current[data-expiry='{other_expiry}']")
    assert other_expiry != first_expiry
    assert page.locator("#rows tr").count() > 10
    # kill -9 the feed worker: its status record outlives it, its heartbeat does not. The page
    # says "Last known as of …" with why, without a reload — never "Live".
    feed.signal(signal.SIGKILL)
    # The page judges staleness after CHAIN_STALE_SECONDS without news; a loaded machine may
    # take longer to get there, so the wait is generous (a condition, not a timing claim).
    page.wait_for_selector("#stale:not([hidden])", timeout=60_000)
    assert badge(page).startswith("Last known as of ")
    assert "stopped reporting" in page.locator("#stale-reason").inner_text()
    assert page.locator("#feed").inner_text() == "Feed: down"
    # A worker runs again: the chain is live again, without a reload.
    with runfeed("sim-dhan", REDIS_URL=REDIS_URL):
        page.wait_for_selector("#stale[hidden]", state="attached", timeout=30_000)
        page.wait_for_function("document.getElementById('freshness').textContent === 'Live'",
                               timeout=30_000)  # fmt: skip
        assert page.locator("#feed").inner_text() == "Feed: live"
    assert not errors, errors


def test_page_is_complete_without_javascript(site, browser):
    url, _, _ = site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, url)
    page.goto(f"{url}/chains/NIFTY/?window=5")
    assert page.locator("#rows tr").count() == 11  # ±5 around ATM
    ltps = cell_texts(page, "#rows td[data-f='CE.ltp']")
    assert all(text not in {"", "–"} for text in ltps)
    assert badge(page) == "Live"  # the badge and the as-of time are rendered on the server
    assert AS_OF_TIME.match(page.locator("#as-of time").inner_text())
    context.close()


# --- the badge follows the server's status messages ------------------------------------------


@pytest.fixture
def stored_chain(tmp_path, redis_db):
    """A NIFTY chain in Redis with no feed worker, daphne serving it, a user to log in."""
    account = tracked(tmp_path, "dhan")
    snapshot = stored_snapshot(build_book(account, EXPIRY), account=account.name,
                               broker=account.kind)  # fmt: skip
    redis_db.set(store.chain_key("NIFTY", EXPIRY), store.dumps(snapshot))
    redis_db.set(store.meta_key("NIFTY", EXPIRY), store.dumps(store.snapshot_meta(snapshot)))
    get_user_model().objects.create_user("trader", password="pw-test-only-1")
    port = free_port()
    with daphne(port, REDIS_URL=REDIS_URL):
        eventually(lambda: _answers(port), what="daphne")
        yield f"http://127.0.0.1:{port}", snapshot


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def status(state: str, words: str, *, reason: str = "", as_of: str | None = None,
           seconds: int | None = None, feed_state: str = "live", code: str | None = None,
           source: str = "live") -> str:  # fmt: skip
    return json.dumps({"type": "status", "feed_state": feed_state, "source": source, "code": code,
                       "message": reason if code else "",
                       "freshness": {"state": state, "words": words, "reason": reason,
                                     "as_of": as_of, "seconds_since_tick": seconds}})  # fmt: skip


def test_the_badge_follows_status_messages_and_a_closed_socket_is_stale(stored_chain, browser):
    url, snapshot = stored_chain
    snapshot_message = json.dumps({"type": "snapshot", "seq": snapshot["seq"],
                                   "data": api_data(snapshot, source="live")})  # fmt: skip
    sockets: list[object] = []

    def server(ws) -> None:  # the scripted server: the first connection only
        sockets.append(ws)
        if len(sockets) == 1:
            ws.send(snapshot_message)

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route_web_socket(re.compile(r".*/ws/live-options/.*"), server)
    log_in(page, url)
    page.goto(f"{url}/chains/NIFTY/{EXPIRY.isoformat()}/")
    for _ in range(400):  # Playwright calls the route handler while it handles page events
        if sockets:
            break
        page.wait_for_timeout(50)
    assert sockets, "the page opened no WebSocket"
    ws = sockets[0]
    # Rendered stale (no feed worker); the snapshot alone changes nothing.
    page.wait_for_selector("#stale:not([hidden])", state="attached")
    assert badge(page).startswith("Last known as of ")

    def shows(text: str) -> None:
        page.wait_for_function("t => document.getElementById('freshness').textContent === t",
                               arg=text, timeout=30_000)  # fmt: skip

    ws.send(status("live", "Live", as_of=snapshot["as_of"], seconds=1))
    shows("Live")
    assert page.locator("#stale").is_hidden()
    ws.send(status("quiet", "No ticks for 42 s", as_of=snapshot["as_of"], seconds=42,
                   feed_state="quiet", reason="Connected and the market is open, but no ticks "
                   "arrive."))  # fmt: skip
    shows("No ticks for 42 s")
    # It counts up on its own between messages.
    page.wait_for_function(
        """() => { const m = document.getElementById('freshness').textContent
                     .match(/^No ticks for (\\d+) s$/); return m && Number(m[1]) >= 44; }""",
        timeout=30_000,
    )
    assert page.locator("#stale").is_hidden()
    closed = "Market closed: after the 15:30 IST close."
    ws.send(status("closed", "Market closed", as_of=snapshot["as_of"], seconds=900,
                   feed_state="quiet", reason=closed))  # fmt: skip
    shows("Market closed")
    assert page.locator("#stale").is_hidden()
    assert AS_OF_TIME.match(page.locator("#as-of time").inner_text())
    dropped = "The feed of account 'main' lost its connection and is reconnecting."
    ws.send(status("stale", "Last known as of 15:29:58", as_of=snapshot["as_of"],
                   feed_state="backoff", code="feed_down", source="last_known",
                   reason=dropped))  # fmt: skip
    shows("Last known as of 15:29:58")
    page.wait_for_selector("#stale:not([hidden])", state="attached")
    assert "is reconnecting" in page.locator("#stale-reason").inner_text()
    assert page.locator("#feed").inner_text() == "Feed: backoff"
    # A resent snapshot (a resync) and a delta after it do not make a stale chain live.
    ws.send(snapshot_message)
    ws.send(json.dumps({"type": "delta", "seq": snapshot["seq"] + 1, "as_of": snapshot["as_of"],
                        "legs": {"26000": {"CE": {"ltp": 999.99}}}, "header": None}))  # fmt: skip
    page.wait_for_function(
        """() => document.querySelector("tr[data-k='26000'] td[data-f='CE.ltp']")
                   .textContent === '999.99'"""
    )  # both handled, in order
    assert badge(page) == "Last known as of 15:29:58"
    ws.send(status("live", "Live", as_of=snapshot["as_of"], seconds=0))
    shows("Live")
    # A status without a freshness object (an older server) is judged by its feed state.
    ws.send(json.dumps({"type": "status", "feed_state": "quiet", "source": "live", "code": None,
                        "message": ""}))  # fmt: skip
    shows("No recent ticks")
    ws.send(json.dumps({"type": "status", "feed_state": "live", "source": "live", "code": None,
                        "message": ""}))  # fmt: skip
    shows("Live")
    # The socket closes: stale at once, with the last as-of time, not "Live".
    ws.close(code=1011, reason="server gone")
    page.wait_for_selector("#stale:not([hidden])", state="attached", timeout=30_000)
    assert badge(page).startswith("Last known as of ")
    assert "connection to the server is lost" in page.locator("#stale-reason").inner_text()
    assert AS_OF_TIME.match(page.locator("#as-of time").inner_text())
    assert not errors, errors


# --- the Content-Security-Policy in real Chromium ------------------------------------------------
# The chain page streams over its WebSocket (connect-src 'self' covers the page's own ws://
# origin), draws its OI bars, and neither it nor the admin pages trip the policy (Chromium
# reports each refusal on the console). In this file, not their own: a file's tests share one
# pytest-xdist worker, so the chain pages of several browser files never stream at once on
# this 2-core machine (a starved renderer answers nothing for tens of seconds).


def violations(page) -> list[str]:
    """Console lines of this page that report a Content-Security-Policy refusal."""
    found: list[str] = []
    page.on(
        "console",
        lambda message: (
            found.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return found


def test_chain_page_streams_under_the_policy(site, browser):
    url, _, _ = site
    page = browser.new_page()
    refused = violations(page)
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", "trader")
    page.fill("input[name=password]", "pw-test-only-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")  # logged in (LOGIN_REDIRECT_URL) before the chain page
    page.goto(f"{url}/chains/NIFTY/")
    # Attached, not visible: rows outside the ATM window are hidden as the spot moves, and the
    # first row may be one of them.
    page.wait_for_selector("#rows tr", state="attached")
    header = page.evaluate(
        "() => fetch(location.href).then(r => r.headers.get('content-security-policy'))"
    )
    assert "default-src 'self'" in header and "frame-ancestors 'none'" in header
    # The socket connects and prices move without a reload: the policy let the socket through.
    before = page.eval_on_selector_all("#rows td[data-f$='.ltp']", "c => c.map(x => x.textContent)")
    page.wait_for_function(
        """before => [...document.querySelectorAll("#rows td[data-f$='.ltp']")]
             .some((td, i) => td.textContent !== before[i])""",
        arg=before,
        timeout=60_000,  # a generous bound: a loaded machine (stress-ng beside the suite) is slow
    )
    widths = page.eval_on_selector_all(
        "#rows td.oi", "cells => cells.map(c => c.style.getPropertyValue('--w'))"
    )
    assert widths and all(w.endswith("%") for w in widths)
    assert any(w not in ("0%", "0.0%") for w in widths)
    assert refused == []


def test_oi_bars_are_drawn_without_javascript(site, browser):
    """The server-rendered bars take their widths from the stylesheet, not style attributes."""
    url, _, _ = site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    refused = violations(page)
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", "trader")
    page.fill("input[name=password]", "pw-test-only-1")
    page.click("button[type=submit]")
    page.goto(f"{url}/chains/NIFTY/")
    widths = page.eval_on_selector_all(
        "#rows td.oi", "cells => cells.map(c => getComputedStyle(c).getPropertyValue('--w').trim())"
    )
    assert widths and all(w.endswith("%") for w in widths)
    assert any(w != "0%" for w in widths)
    assert refused == []
    context.close()


@pytest.fixture
def boss() -> None:
    # Before the browser: Playwright's sync API runs an event loop in this thread (no ORM then).
    get_user_model().objects.create_superuser("boss", "b@example.invalid", "pw-test-only-2")


def test_admin_pages_work_under_the_policy(site, boss, browser):
    url, _, _ = site
    page = browser.new_page()
    refused = violations(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/admin/")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "pw-test-only-2")
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")
    for path in [
        "/admin/brokers/brokeraccount/",
        "/admin/brokers/brokeraccount/add/",
        "/admin/auth/user/add/",
        "/admin/axes/accessattempt/",
    ]:
        page.goto(f"{url}{path}")
        page.wait_for_load_state("load")
    # The admin's own scripts run: the add form's collapsible fieldsets and the user form's
    # password toggles are wired by static JavaScript (no inline handlers).
    page.goto(f"{url}/admin/auth/user/add/")
    assert page.evaluate("() => typeof window.django !== 'undefined'")
    assert errors == []
    assert refused == []
