"""The Content-Security-Policy in real Chromium: the chain page streams over its WebSocket
(connect-src 'self' covers the page's own ws:// origin), draws its OI bars, and neither it nor
the admin pages trip the policy (Chromium reports each refusal on the console)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.chains.test_browser import browser, redis_db, site  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.browser]


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


def test_chain_page_streams_under_the_policy(site, browser):  # noqa: F811
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


def test_oi_bars_are_drawn_without_javascript(site, browser):  # noqa: F811
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


def test_admin_pages_work_under_the_policy(site, boss, browser):  # noqa: F811
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
