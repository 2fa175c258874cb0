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
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.management import call_command

from chains import store
from chains.api import api_data
from chains.book import stored_snapshot
from tests.processes import daphne, eventually, free_port, runfeed

from .fixtures import EXPIRY, LATER, build_book, tracked

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
    # The spot's change since the index's previous close (the simulated feed sends it), signed.
    page.wait_for_function(
        r"""/^[+-][\d,]+\.\d\d \([+-]\d+\.\d\d%\)$/
             .test(document.querySelector('[data-h=spot_change]').textContent)""",
        timeout=30_000,
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
    assert page.locator("#feed").get_attribute("data-state") == "down"
    assert page.locator("#feed").inner_text() == "Feed down"  # words, not the state's name
    # A worker runs again: the chain is live again, without a reload.
    with runfeed("sim-dhan", REDIS_URL=REDIS_URL):
        page.wait_for_selector("#stale[hidden]", state="attached", timeout=30_000)
        page.wait_for_function("document.getElementById('freshness').textContent === 'Live'",
                               timeout=30_000)  # fmt: skip
        page.wait_for_selector("#feed[data-state='live']", state="attached", timeout=30_000)
        assert page.locator("#feed").inner_text() == "Feed connected"
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
    assert page.locator("#feed").get_attribute("data-state") == "backoff"
    assert page.locator("#feed").inner_text() == "Feed reconnecting"
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
    assert page.locator("#feed").inner_text() == "Feed state unknown"  # not "connected"
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


# --- the page on any screen -------------------------------------------------------------------
# Measured, not looked at: every column drawn lies inside the viewport, or inside the table's own
# scroll box (the box scrolls, the page does not); the strike column is on screen.

PLACES = """() => {
  const wrap = document.getElementById("table-wrap"), box = wrap.getBoundingClientRect();
  const drawn = (el) => el.getClientRects().length > 0;
  const heads = [...document.querySelectorAll("#oc thead tr.cols th")].filter(drawn);
  const place = (el) => { const r = el.getBoundingClientRect();
    return { name: el.dataset.col ?? el.textContent.trim(), left: r.left, right: r.right }; };
  const strike = document.querySelector("#rows tr th.strike").getBoundingClientRect();
  const top = document.querySelector("header.top").getBoundingClientRect();
  const head = document.querySelector(".chain-head").getBoundingClientRect();
  const metrics = document.getElementById("metrics").getBoundingClientRect();
  return { width: innerWidth, pageScroll: document.documentElement.scrollWidth - innerWidth,
    boxLeft: box.left + wrap.clientLeft, boxRight: box.left + wrap.clientLeft + wrap.clientWidth,
    scrollLeft: wrap.scrollLeft,
    scrollWidth: wrap.scrollWidth, clientWidth: wrap.clientWidth,
    columns: heads.map(place), strike: { left: strike.left, right: strike.right },
    topBottom: top.bottom, headTop: head.top, metricsRight: metrics.right };
}"""


def places(page) -> dict:
    return page.evaluate(PLACES)


def in_viewport(m: dict, column: dict) -> bool:
    return column["left"] >= -0.5 and column["right"] <= m["width"] + 0.5


def in_scroll_box(m: dict, column: dict) -> bool:
    start = m["boxLeft"] - m["scrollLeft"]  # where the box's scrolled content begins
    return column["left"] >= start - 0.5 and column["right"] <= start + m["scrollWidth"] + 0.5


def open_chain(browser, url: str, *, width: int, height: int, path: str = "/chains/NIFTY/",
               **options: object):  # fmt: skip
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, url)
    page.goto(url + path)
    page.wait_for_selector("#rows tr", state="attached")
    # the socket's snapshot redrew the table with this browser's choices (a live chain)
    page.wait_for_function("document.getElementById('freshness').textContent === 'Live'",
                           timeout=60_000)  # fmt: skip
    return context, page, errors


NSE = ["oi", "oi_change", "volume", "iv", "ltp", "change", "bid_qty", "bid", "ask", "ask_qty"]
PHONE = ["ltp", "change", "oi", "oi_change", "iv"]


def test_the_chain_fits_a_laptop_and_a_phone(site, browser):
    url, _, _ = site
    # 1366 × 768: NSE's ten columns a side, the strike and Δ a side, nothing to scroll.
    context, page, errors = open_chain(
        browser, url, width=1366, height=768, path="/chains/NIFTY/?window=all"
    )  # every strike
    m = places(page)
    names = [c["name"] for c in m["columns"]]
    expected = {f"{side}.{f}" for side in ("CE", "PE") for f in [*NSE, "delta"]}
    assert expected <= set(names) and len(names) == 23, names
    assert m["pageScroll"] <= 0 and m["scrollWidth"] <= m["clientWidth"], m
    outside = [c["name"] for c in m["columns"] if not in_viewport(m, c)]
    assert outside == [], outside
    assert in_viewport(m, m["strike"])
    # Narrower: the table scrolls in its own box, the page does not; the strike column and the
    # header row stay in sight at either end.
    page.set_viewport_size({"width": 900, "height": 700})
    m = places(page)
    assert m["pageScroll"] <= 0 and m["scrollWidth"] > m["clientWidth"], m
    assert [c["name"] for c in m["columns"] if not in_scroll_box(m, c)] == []
    for end in ("0", "wrap.scrollWidth"):
        page.evaluate(f"() => {{ const wrap = document.getElementById('table-wrap'); "
                      f"wrap.scrollLeft = {end}; wrap.scrollTop = 200; }}")  # fmt: skip
        m = places(page)
        strike = m["strike"]
        assert m["boxLeft"] - 0.5 <= strike["left"] and strike["right"] <= m["boxRight"] + 0.5
        header = page.evaluate("""() => {
            const wrap = document.getElementById('table-wrap').getBoundingClientRect();
            const th = document.querySelector('#oc thead tr.cols th.strike')
              .getBoundingClientRect();
            return [wrap.top, th.top, th.bottom]; }""")
        assert header[0] - 0.5 <= header[1] and header[2] <= header[0] + 80  # stuck at the top
    assert not errors, errors
    context.close()
    # 390 × 844, a phone: the strike in the middle, a toggle between calls, puts and both.
    context, page, errors = open_chain(browser, url, width=390, height=844, is_mobile=True,
                                       has_touch=True)  # fmt: skip
    m = places(page)
    assert m["pageScroll"] <= 0, m
    assert m["topBottom"] <= m["headTop"]  # the site header does not overlap the chain's
    assert m["metricsRight"] <= m["width"] + 0.5  # the header figures wrap
    for side, shows, hides in (("calls", "CE", "PE"), ("puts", "PE", "CE")):
        page.check(f"#side-toggle input[value={side}]")
        page.wait_for_function("s => document.getElementById('oc').dataset.side === s", arg=side)
        m = places(page)
        names = [c["name"] for c in m["columns"]]
        assert {f"{shows}.{f}" for f in PHONE} <= set(names), names
        assert not any(n.startswith(hides) for n in names), names
        assert [c["name"] for c in m["columns"] if not in_viewport(m, c)] == []
        assert m["scrollWidth"] <= m["clientWidth"] and in_viewport(m, m["strike"]), m
        assert m["pageScroll"] <= 0
    page.check("#side-toggle input[value=both]")
    page.wait_for_function("() => document.getElementById('oc').dataset.side === 'both'")
    m = places(page)
    assert {"CE.ltp", "CE.oi", "PE.ltp", "PE.oi"} <= {c["name"] for c in m["columns"]}
    assert [c["name"] for c in m["columns"] if not (in_viewport(m, c) or in_scroll_box(m, c))] == []
    assert in_viewport(m, m["strike"]) and m["pageScroll"] <= 0
    # The choice is remembered in this browser.
    page.check("#side-toggle input[value=puts]")
    page.reload()
    page.wait_for_function("() => document.getElementById('oc').dataset.side === 'puts'")
    assert not errors, errors
    context.close()


# --- nothing hidden, themes, columns, keys, replay: a stored chain, no feed worker ------------


@pytest.fixture
def served_chain(tmp_path, redis_db):
    """NIFTY (strikes 25900-26200, lot 75) in Redis, priced on a forward of 26055 with the spot
    at 26043: the spot's ATM (26000) is not the forward's (26100). A feed status record says the
    account is connected (no ticks: quiet, never stale, for the test's length); daphne serves."""
    from tests.chains.test_freshness import feed_record

    account = tracked(tmp_path, "dhan")
    snapshot = stored_snapshot(build_book(account, EXPIRY, forward=26_055.0),
                               account=account.name, broker=account.kind)  # fmt: skip
    redis_db.set(store.chain_key("NIFTY", EXPIRY), store.dumps(snapshot))
    redis_db.set(store.meta_key("NIFTY", EXPIRY), store.dumps(store.snapshot_meta(snapshot)))
    now = datetime.now(UTC)
    # The last tick a minute ago: quiet from the first look, however fast the page opens.
    record = feed_record(now, account=account.name, broker=account.kind, heartbeat_seconds=120,
                         market={"NSE_FNO": "NORMAL_OPEN"},
                         last_tick_at=(now - timedelta(minutes=1)).isoformat())  # fmt: skip
    redis_db.set(store.feed_key(account.name), json.dumps(record), ex=600)
    get_user_model().objects.create_user("trader", password="pw-test-only-1")
    port = free_port()
    with daphne(port, REDIS_URL=REDIS_URL):
        eventually(lambda: _answers(port), what="daphne")
        yield f"http://127.0.0.1:{port}", snapshot


def open_stored(browser, url: str, query: str = "", **options: object):
    """Log in and open the stored chain's page; returns once the script drew the table from
    the socket's snapshot."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, url)
    page.goto(f"{url}/chains/NIFTY/{EXPIRY.isoformat()}/{query}")
    page.wait_for_selector("#oc[data-drawn=live]", state="attached", timeout=30_000)
    return context, page, errors


def drawn_rows(page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.k)")


def drawn_columns(page, side: str = "CE") -> list[str]:
    return page.eval_on_selector_all(
        f"#oc thead tr.cols th[data-col^='{side}.']",
        "cells => cells.filter(c => c.getClientRects().length).map(c => c.dataset.col.slice(3))",
    )


def test_nothing_is_hidden_in_tooltips(served_chain, browser):
    url, snapshot = served_chain
    context, page, errors = open_stored(browser, url, "?window=1")
    # OI build-up: a visible chip in each OI cell (every leg here gained OI at a higher price).
    chips = page.eval_on_selector_all(
        "#rows td.oi",
        "cells => cells.map(c => [c.dataset.b, getComputedStyle(c, '::before').content])",
    )
    assert chips and all(chip == ["long_buildup", '"LB"'] for chip in chips), chips
    assert "LB long build-up" in page.locator("#legend").inner_text()
    # The header: as-of time, market, feed in words, the spot's change (this stored chain has
    # no previous close of the index: a dash and the reason, never an invented 0).
    assert AS_OF_TIME.match(page.locator("#as-of time").inner_text())
    market = page.locator("#market")
    assert market.get_attribute("data-state") == "open"  # the broker's word: NSE_FNO open
    assert market.inner_text() == "Market open"
    assert page.locator("#feed").inner_text() == "Feed connected"
    change = page.locator("[data-h=spot_change]")
    assert change.inner_text() == "\u2013"
    assert "previous close" in str(change.get_attribute("title"))
    words = page.locator("#status-line").inner_text()
    assert "_" not in words and "quiet" not in words.lower(), words
    assert page.locator("#freshness").inner_text().startswith("No ticks for ")
    # ATM nearest the spot (NSE's), the default; ITM shading against the spot.
    assert page.locator("#rows tr.atm").get_attribute("data-k") == "26000"
    assert page.locator("#atm-basis").inner_text() == "spot"
    assert drawn_rows(page) == ["25900", "26000", "26100"]
    itm = page.eval_on_selector_all(
        "#rows td.f-ltp",
        "cells => cells.map(c => [c.dataset.f, c.closest('tr').dataset.k, "
        "c.classList.contains('itm')])",
    )
    for field, strike, shaded in itm:
        assert shaded == ((field == "CE.ltp") == (int(strike) < 26_043)), (field, strike)
    # Forward ATM: chosen, shown, remembered.
    page.select_option("#atm", "forward")
    page.wait_for_function("() => document.querySelector('#rows tr.atm').dataset.k === '26100'")
    assert page.locator("#atm-basis").inner_text() == "forward"
    assert drawn_rows(page) == ["26000", "26100", "26200"]
    page.goto(f"{url}/chains/NIFTY/{EXPIRY.isoformat()}/?window=1")
    page.wait_for_selector("#oc[data-drawn=live]", state="attached")
    assert page.locator("#rows tr.atm").get_attribute("data-k") == "26100"
    assert page.locator("#atm").input_value() == "forward"
    # PCR and totals say what they cover.
    assert page.locator("#metrics").inner_text().count("all strikes") == 1
    labels = page.eval_on_selector_all("#foot th.strike", "c => c.map(x => x.textContent)")
    assert labels == ["Total \u00b7 3 shown", "All 4 strikes"]
    strikes = snapshot["strikes"]
    every = sum(strikes[k]["CE"]["oi"] for k in strikes)
    shown = sum(strikes[k]["CE"]["oi"] for k in ("26000", "26100", "26200"))
    assert page.locator("[data-t='all.CE.oi']").inner_text() == indian(every)
    assert page.locator("[data-t='shown.CE.oi']").inner_text() == indian(shown)
    assert not errors, errors
    context.close()


def indian(value: int) -> str:
    from chains.presenter import indian as grouped

    return grouped(value)


CONTRAST = """() => {
  const rgba = (text) => { const m = text.match(/[\\d.]+/g).map(Number);
    return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, under) => { const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1); };
  const background = (el) => { // composed from the page's own background up to this element
    const chain = []; for (let e = el; e; e = e.parentElement) chain.unshift(e);
    let bg = [255, 255, 255, 1];
    for (const e of chain) bg = over(rgba(getComputedStyle(e).backgroundColor), bg);
    if (el.matches("td.oi")) { // the OI bar lies under part of the figure
      const bar = getComputedStyle(el).getPropertyValue(el.matches(".c") ? "--bar-ce" : "--bar-pe");
      bg = over(rgba(bar), bg);
    }
    return bg;
  };
  const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05); };
  const els = [document.body, ...document.querySelectorAll(
    "#rows td, #rows th, #oc thead th, #oc tfoot td, #oc tfoot th, .metrics dt, .metrics dd, " +
    ".badge, .as-of, .legend, .controls label, .expiries a, header.top a")]
    .filter((e) => e.getClientRects().length && e.textContent.trim());
  return els.map((e) => { const fg = over(rgba(getComputedStyle(e).color), background(e));
    return [e.dataset.f ?? e.dataset.col ?? e.id ?? e.tagName, e.className,
      Math.round(ratio(fg, background(e)) * 100) / 100]; });
}"""

FIRST_PAINT = """{ window.__themeAtBody = null;  // an init script: runs before the page's own
  new MutationObserver((_, observer) => { if (document.body) {
    window.__themeAtBody = document.documentElement.dataset.theme ?? ""; observer.disconnect(); } })
    .observe(document, { childList: true, subtree: true }); }"""


def test_dark_and_light_themes_are_readable_and_remembered(served_chain, browser):
    url, _ = served_chain
    for scheme in ("light", "dark"):
        context, page, errors = open_stored(browser, url, color_scheme=scheme)
        page.add_init_script(FIRST_PAINT)
        page.reload()
        page.wait_for_selector("#oc[data-drawn=live]", state="attached")
        # Set from the system's preference before the body is parsed: no flash of the other.
        assert page.evaluate("() => window.__themeAtBody") == scheme
        cells = page.evaluate(CONTRAST)
        assert len(cells) > 100
        poor = [cell for cell in cells if cell[2] < 4.5]
        assert poor == [], poor[:10]
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(255, 255, 255)") == (scheme == "light")
        assert not errors, errors
        context.close()
    # The toggle: auto → dark → light → auto, remembered in this browser.
    context, page, errors = open_stored(browser, url, color_scheme="light")
    page.add_init_script(FIRST_PAINT)
    toggle = page.locator("#theme-toggle")
    assert toggle.inner_text() == "Theme: auto (light)"
    toggle.click()
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    page.reload()
    assert page.evaluate("() => window.__themeAtBody") == "dark"
    assert toggle.inner_text() == "Theme: dark"
    toggle.click()
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    toggle.click()
    assert toggle.inner_text() == "Theme: auto (light)"
    assert page.evaluate("() => localStorage.getItem('optionsite.theme')") is None
    assert not errors, errors
    context.close()


def test_the_column_chooser_is_remembered(served_chain, browser):
    url, snapshot = served_chain
    context, page, errors = open_stored(browser, url)
    default = ["delta", *NSE]
    assert drawn_columns(page, "CE") == default
    assert drawn_columns(page, "PE") == ["bid_qty", "bid", "ask", "ask_qty", "change", "ltp",
                                         "iv", "volume", "oi_change", "oi", "delta"]  # fmt: skip
    page.click("#chooser summary")
    page.uncheck("#chooser-body input[data-field=volume]")
    page.check("#chooser-body input[data-field=gamma]")
    page.check("#chooser-body input[data-field=vega]")
    page.click("#chooser-body li[data-field=ltp] button[data-move=up]")  # before IV
    page.check("#chooser-body input[name=units][value=lots]")
    ce = ["delta", "gamma", "vega", "oi", "oi_change", "ltp", "iv", "change", "bid_qty", "bid",
          "ask", "ask_qty"]  # fmt: skip
    assert drawn_columns(page, "CE") == ce
    pe = drawn_columns(page, "PE")
    assert pe[:4] == ["bid_qty", "bid", "ask", "ask_qty"] and pe[4:] == list(reversed(ce[:8]))
    assert page.is_checked("#greek-toggle input[value=gamma]")  # the greek toggles follow
    lot = snapshot["lot_size"]
    oi = snapshot["strikes"]["26000"]["CE"]["oi"]
    assert page.locator("tr[data-k='26000'] td[data-f='CE.oi']").inner_text() == indian(oi / lot)
    assert page.locator("th[data-col='CE.oi']").inner_text() == "OI (lots)"
    page.reload()
    page.wait_for_selector("#oc[data-drawn=live]", state="attached")
    assert drawn_columns(page, "CE") == ce
    assert page.locator("tr[data-k='26000'] td[data-f='CE.oi']").inner_text() == indian(oi / lot)
    page.click("#chooser summary")
    page.click("#columns-reset")
    assert drawn_columns(page, "CE") == default
    assert page.locator("tr[data-k='26000'] td[data-f='CE.oi']").inner_text() == indian(oi)
    assert not errors, errors
    context.close()


def test_keyboard_shortcuts(served_chain, browser):
    url, _ = served_chain
    context, page, errors = open_stored(browser, url, "?window=1")
    assert drawn_rows(page) == ["25900", "26000", "26100"]
    page.keyboard.press("ArrowDown")
    assert drawn_rows(page) == ["26000", "26100", "26200"]
    assert page.locator("#window-shift").is_visible()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert drawn_rows(page) == ["25900", "26000"]  # the lowest strike at the centre
    page.keyboard.press("ArrowUp")  # at the end: stays, and the next press moves back at once
    assert drawn_rows(page) == ["25900", "26000"]
    page.keyboard.press("ArrowDown")
    assert drawn_rows(page) == ["25900", "26000", "26100"]
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Home")
    assert drawn_rows(page) == ["25900", "26000", "26100"]
    assert page.locator("#window-shift").is_hidden()
    # g: the next greek, one at a time.
    page.keyboard.press("g")
    assert drawn_columns(page, "CE")[0] == "gamma" and "delta" not in drawn_columns(page, "CE")
    page.keyboard.press("g")
    assert drawn_columns(page, "CE")[0] == "theta"
    # /: the index picker; keys typed into a control are the control's.
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.id") == "underlying"
    page.keyboard.press("ArrowDown")  # moves within the picker (one index), not the window
    assert drawn_rows(page) == ["25900", "26000", "26100"]
    page.evaluate("() => document.activeElement.blur()")
    # e: the next expiry.
    page.keyboard.press("e")
    page.wait_for_url(f"**/chains/NIFTY/{LATER.isoformat()}/**")
    assert not errors, errors
    context.close()


def test_replay_draws_the_minute_and_live_comes_back(served_chain, browser):
    """history.js's contract: chain:replay draws detail.chain and shows detail.label instead of
    the freshness badge; the stream is applied but not drawn; chain:live draws the live chain."""
    url, snapshot = served_chain
    snapshot_message = json.dumps({"type": "snapshot", "seq": snapshot["seq"],
                                   "data": api_data(snapshot, source="live")})  # fmt: skip
    sockets: list[object] = []

    def server(ws) -> None:
        sockets.append(ws)
        ws.send(snapshot_message)

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route_web_socket(re.compile(r".*/ws/live-options/.*"), server)
    log_in(page, url)
    page.goto(f"{url}/chains/NIFTY/{EXPIRY.isoformat()}/")
    page.wait_for_selector("#oc[data-drawn=live]", state="attached", timeout=30_000)
    ws = sockets[0]
    ws.send(status("live", "Live", as_of=snapshot["as_of"], seconds=0))
    page.wait_for_function("() => document.getElementById('freshness').textContent === 'Live'")
    # A recorded minute, as the API answers it (source "history"), with a price of its own.
    page.evaluate(
        """async (expiry) => {
            const url = `/api/v2/options/live?underlying=NIFTY&expiry=${expiry}`;
            const answer = await (await fetch(url)).json();
            answer.data.source = "history";
            answer.data.strikes["26000"].CE.ltp = 1234.5;
            answer.data.spot = 25111.25;
            document.dispatchEvent(new CustomEvent("chain:replay",
              { detail: { label: "replay 11:42", chain: answer } }));
        }""",
        EXPIRY.isoformat(),
    )
    cell = "tr[data-k='26000'] td[data-f='CE.ltp']"
    page.wait_for_selector("#oc[data-drawn=replay]", state="attached")
    assert page.locator(cell).inner_text() == "1,234.50"
    assert page.locator("[data-h=spot]").inner_text() == "25,111.25"
    assert page.locator("#replay").inner_text().lower() == "replay 11:42"
    assert page.locator("#freshness").is_hidden()
    assert "live" not in page.locator("#status-line").inner_text().lower().replace("feed", "")
    # The stream goes on underneath, not drawn.
    ws.send(json.dumps({"type": "delta", "seq": snapshot["seq"] + 1, "as_of": snapshot["as_of"],
                        "legs": {"26000": {"CE": {**snapshot["strikes"]["26000"]["CE"],
                                                  "ltp": 999.99}}},
                        "header": None}))  # fmt: skip
    ws.send(status("live", "Live", as_of=snapshot["as_of"], seconds=0))
    page.wait_for_function("() => document.getElementById('freshness').title === 'Ticks arriving'")
    assert page.locator(cell).inner_text() == "1,234.50"
    assert page.locator("#freshness").is_hidden()
    # Back to live: the live chain, with what streamed meanwhile.
    page.evaluate("() => document.dispatchEvent(new CustomEvent('chain:live'))")
    page.wait_for_selector("#oc[data-drawn=live]", state="attached")
    assert page.locator(cell).inner_text() == "999.99"
    assert page.locator("#freshness").inner_text() == "Live"
    assert page.locator("#replay").is_hidden()
    assert not errors, errors
    context.close()


def test_a_delta_rewrites_only_the_cells_that_changed(served_chain, browser):
    url, snapshot = served_chain
    sockets: list[object] = []

    def server(ws) -> None:
        sockets.append(ws)
        ws.send(json.dumps({"type": "snapshot", "seq": snapshot["seq"],
                            "data": api_data(snapshot, source="live")}))  # fmt: skip

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route_web_socket(re.compile(r".*/ws/live-options/.*"), server)
    log_in(page, url)
    page.goto(f"{url}/chains/NIFTY/{EXPIRY.isoformat()}/")
    page.wait_for_selector("#oc[data-drawn=live]", state="attached", timeout=30_000)
    page.evaluate("""() => { window.__written = []; new MutationObserver((records) => {
        for (const r of records) {
          const node = r.target.nodeType === 3 ? r.target.parentElement : r.target;
          const cell = node.closest("td, th, tr");
          window.__written.push(r.type === "childList" && r.target.id === "rows" ? "rows"
            : `${cell.closest("tr").dataset.k}:${cell.dataset.f ?? cell.tagName}`);
        } }).observe(document.getElementById("rows"),
          { childList: true, characterData: true, subtree: true }); }""")
    leg = snapshot["strikes"]["26000"]["CE"]
    changed = {**leg, "ltp": round(leg["ltp"] + 1.0, 2), "change": round(leg["change"] + 1.0, 2)}
    sockets[0].send(json.dumps({"type": "delta", "seq": snapshot["seq"] + 1,
                                "as_of": snapshot["as_of"], "legs": {"26000": {"CE": changed}},
                                "header": None}))  # fmt: skip
    page.wait_for_function("() => window.__written.length >= 2")
    # the same leg again, unchanged, a second later: only the as-of time (outside the rows) moves
    later = (datetime.fromisoformat(snapshot["as_of"]) + timedelta(seconds=1)).isoformat()
    sockets[0].send(json.dumps({"type": "delta", "seq": snapshot["seq"] + 2, "as_of": later,
                                "legs": {"26000": {"CE": changed}}, "header": None}))  # fmt: skip
    page.wait_for_function("t => document.querySelector('#as-of time').dateTime === t", arg=later)
    written = page.evaluate("() => window.__written")
    assert sorted(set(written)) == ["26000:CE.change", "26000:CE.ltp"], written
    assert page.locator("tr[data-k='26000'] td[data-f='CE.ltp']").inner_text() == cell_text(
        "ltp", changed["ltp"]
    )
    assert not errors, errors
    context.close()


def cell_text(name: str, value: object) -> str:
    from chains.presenter import cell_text as text

    return text(name, value)
