"""The chain page in real Chromium when the server closes its socket for good: a session that
ended (4401) asks to log in again and a socket beyond the cap (4429) asks to close other tabs;
neither reconnects in a loop. The server is scripted (Playwright's WebSocket route)."""

from __future__ import annotations

import json
import re

import pytest

from chains.api import api_data

from .fixtures import EXPIRY
from .test_browser import REDIS_URL, browser, log_in, redis_db, stored_chain  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.browser]
assert REDIS_URL  # the processes' own Redis database (tests/settings.py)


def open_page(browser, url: str, snapshot: dict, close: dict):  # noqa: F811
    """The chain page whose server sends the snapshot, then ``close`` (an optional error
    message, then the close); returns the page, the sockets it opened and its script errors."""
    sockets: list[object] = []
    opened = json.dumps({"type": "snapshot", "seq": snapshot["seq"],
                         "data": api_data(snapshot, source="live")})  # fmt: skip

    def server(ws) -> None:
        sockets.append(ws)
        ws.send(opened)
        if close.get("error"):
            ws.send(json.dumps(close["error"]))
        ws.close(code=close["code"], reason=close.get("reason", ""))

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route_web_socket(re.compile(r".*/ws/live-options/.*"), server)
    log_in(page, url)
    page.goto(f"{url}/chains/NIFTY/{EXPIRY.isoformat()}/")
    page.wait_for_selector("#notice:not([hidden])", state="attached", timeout=30_000)
    return page, sockets, errors


def assert_no_reconnect(page, sockets: list[object]) -> None:
    # The first reconnect after any other close comes within 0.5 s (chain.js backoff): three
    # times that with a single socket means the page gave up, as it should.
    page.wait_for_timeout(1_500)
    assert len(sockets) == 1, f"the page reconnected {len(sockets) - 1} times"


def test_a_session_that_ended_asks_to_log_in_again_and_does_not_reconnect(
    stored_chain,  # noqa: F811
    browser,  # noqa: F811
):
    url, snapshot = stored_chain
    error = {"type": "error", "code": "session_ended",
             "message": "Your session has ended (logged out, expired, or your user was "
                        "changed): log in again to see live prices."}  # fmt: skip
    page, sockets, errors = open_page(browser, url, snapshot, {"error": error, "code": 4401})
    notice = page.locator("#notice")
    assert "log in again" in notice.inner_text()
    link = notice.locator("a")
    assert link.inner_text() == "Log in again"
    assert link.get_attribute("href") == (
        f"/accounts/login/?next=%2Fchains%2FNIFTY%2F{EXPIRY.isoformat()}%2F"
    )
    assert "log in again" in page.locator("#stale-reason").inner_text()
    assert_no_reconnect(page, sockets)
    assert not errors, errors


def test_too_many_sockets_asks_to_close_other_tabs_and_does_not_reconnect(
    stored_chain,  # noqa: F811
    browser,  # noqa: F811
):
    """Even without an error message before the close, the page says what to do."""
    url, snapshot = stored_chain
    page, sockets, errors = open_page(browser, url, snapshot, {"code": 4429})
    text = page.locator("#notice").inner_text()
    assert "too_many_sockets" in text and "close other tabs" in text
    assert page.locator("#notice a").count() == 0
    assert_no_reconnect(page, sockets)
    assert not errors, errors
