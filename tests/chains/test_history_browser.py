"""The chain page's intraday history in real Chromium: with minute bars of the day in the
database (written by the history store, as the feed worker writes them), the charts draw with
real axis labels and values on hover and tap, the OI-change presets change the bars, replay
shows the table as of the chosen minute and "Back to live" returns; no Content-Security-Policy
refusal; and the page works when there are no daily closes for IV rank."""

from __future__ import annotations

import os
import re
import socket
from datetime import date, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model

from brokers.exchange import IST
from chains import store
from chains.book import stored_snapshot
from chains.history.api import today
from chains.history.bars import MinuteBar
from chains.history.store import history_write
from chains.models import DailyClose
from chains.presenter import indian, price
from tests.processes import daphne, eventually, free_port

from .fixtures import EXPIRY, build_book, tracked
from .history.books import day_of_bars, make_book
from .test_browser import browser, log_in, redis_db, violations  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.browser]
STRIKES = list(range(25_600, 26_500, 100))
MINUTES = 40  # 09:15 to 09:54
GAPS = frozenset({20, 21})  # 09:35 and 09:36 not recorded
LTP_26000_IS = (  # a JS predicate: the table's 26000 CE LTP cell reads t
    "t => document.querySelector(\"#rows tr[data-k='26000'] td[data-f='CE.ltp']\")"
    ".textContent === t"
)
HHMM = re.compile(r"^\d\d:\d\d$")


def opening(day: date) -> datetime:
    return datetime.combine(day, time(9, 15), tzinfo=IST)


def recorded(tmp_path, redis_db, *, closes: bool) -> list[MinuteBar]:  # noqa: F811
    """NIFTY EXPIRY tracked (nine strikes), its live snapshot in Redis, today's bars from
    09:15 to 09:54 (09:35, 09:36 missing) and, with ``closes``, two earlier daily closes (no
    daily close at all without)."""
    account = tracked(tmp_path, "dhan", strikes=STRIKES)
    snapshot = stored_snapshot(build_book(account, EXPIRY), account=account.name,
                               broker=account.kind)  # fmt: skip
    redis_db.set(store.chain_key("NIFTY", EXPIRY), store.dumps(snapshot))
    redis_db.set(store.meta_key("NIFTY", EXPIRY), store.dumps(store.snapshot_meta(snapshot)))
    book = make_book(expiry=EXPIRY, first=float(STRIKES[0]), strikes=len(STRIKES))
    bars = day_of_bars(book, MINUTES, start=opening(today()), skip=GAPS)
    history_write(bars)
    if closes:
        for back, iv in ((1, 0.08), (2, 0.30)):
            day = today() - timedelta(days=back)
            DailyClose.objects.create(underlying="NIFTY", expiry=EXPIRY, day=day,
                                      minute=opening(day), atm_iv=iv)  # fmt: skip
    else:
        DailyClose.objects.all().delete()
    get_user_model().objects.create_user("trader", password="pw-test-only-1")
    return bars


def _redis_url() -> str:
    return os.environ["TEST_PROCESS_REDIS_URL"]


def serving(tmp_path, redis_db, *, closes: bool):  # noqa: F811
    """``recorded``, and daphne serving it: yields (site URL, bars)."""
    bars = recorded(tmp_path, redis_db, closes=closes)
    port = free_port()
    with daphne(port, REDIS_URL=_redis_url()):
        eventually(lambda: _answers(port), what="daphne")
        yield f"http://127.0.0.1:{port}", bars


@pytest.fixture
def with_closes(tmp_path, redis_db):  # noqa: F811
    yield from serving(tmp_path, redis_db, closes=True)


@pytest.fixture
def without_closes(tmp_path, redis_db):  # noqa: F811
    yield from serving(tmp_path, redis_db, closes=False)


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def open_chain(browser, url: str, **context: object):  # noqa: F811
    page = browser.new_context(viewport={"width": 1366, "height": 900}, **context).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    refused = violations(page)
    log_in(page, url)
    page.wait_for_url(f"{url}/")
    page.goto(f"{url}/chains/NIFTY/{EXPIRY.isoformat()}/")
    page.wait_for_selector("#history[data-loaded='true']", state="attached", timeout=60_000)
    return page, errors, refused


def ticks(page, chart: str, axis: str) -> list[str]:
    raw = page.get_attribute(f"#{chart}", f"data-ticks-{axis}")
    assert raw, f"{chart} drew no {axis} axis labels"
    return raw.split(" | ")


def legend(page, chart: str) -> dict[str, str]:
    """Label → value of the chart's legend (uPlot's, live at the cursor)."""
    return page.eval_on_selector_all(
        f"#{chart} .u-legend tr.u-series",
        """rows => Object.fromEntries(rows.map(r => [r.querySelector('.u-label').textContent,
                                                      r.querySelector('.u-value').textContent]))""",
    )


def hover(page, chart: str, fraction: float) -> dict[str, str]:
    """Move the pointer off the chart, then to ``fraction`` of its plot's width (mid-height);
    the legend once it shows a value at the cursor."""
    page.mouse.move(0, 0)
    page.locator(f"#{chart}").scroll_into_view_if_needed()
    box = page.locator(f"#{chart} .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_function(  # the x value (time or strike) shows once the cursor is on
        """id => !['', '--', '\u2013'].includes(
                   document.querySelector(`#${id} .u-legend tr.u-series .u-value`).textContent)""",
        arg=chart,
    )
    return legend(page, chart)


def bar_at(bars: list[MinuteBar], hhmm: str) -> MinuteBar | None:
    return next((b for b in bars if f"{b.minute:%H:%M}" == hhmm), None)


def oi_change(bars: list[MinuteBar], start: str, end: str, strike: int, side: str) -> int:
    first, last = bar_at(bars, start), bar_at(bars, end)
    assert first is not None and last is not None
    i = first.legs.strikes.index(float(strike))
    then, now = first.legs.side(side).oi[i], last.legs.side(side).oi[i]
    assert then is not None and now is not None
    return now - then


def window_starts(page, hhmm: str) -> None:
    page.wait_for_function(
        "t => document.getElementById('oi-window').textContent.startsWith(t)", arg=hhmm
    )


def vwap(bars: list[MinuteBar], upto: str) -> float:
    """The straddle's VWAP at ``upto`` as history.js states it: each minute's straddle weighed
    by the rise of its ATM strike's CE and PE volume since that strike's previous bar."""
    last: dict[tuple[float, str], int] = {}
    weighted = total = 0.0
    for bar in bars:
        if f"{bar.minute:%H:%M}" > upto:
            break
        for i, strike in enumerate(bar.legs.strikes):
            for side in ("CE", "PE"):
                volume = bar.legs.side(side).volume[i]
                before = last.get((strike, side))  # None: the strike's first bar
                if volume is None:
                    continue
                last[(strike, side)] = volume
                if strike == bar.atm_strike and bar.straddle is not None and before is not None:
                    traded = max(0, volume - before)
                    weighted += bar.straddle * traded
                    total += traded
    assert total > 0
    return weighted / total


def signed(value: int) -> str:
    return ("+" if value > 0 else "") + indian(value)


def test_charts_draw_with_labels_values_on_hover_and_presets(with_closes, browser):  # noqa: F811
    url, bars = with_closes
    page, errors, refused = open_chain(browser, url)
    # Time axes: HH:MM (IST) inside the session; price axes: numbers around the spot.
    for chart in ("chart-intraday", "chart-straddle", "chart-ms-oi", "chart-ms-ltp"):
        labels = ticks(page, chart, "x")
        assert len(labels) >= 3 and all(HHMM.match(t) for t in labels), labels
        assert all("09:15" <= t <= "15:30" for t in labels), labels
    spots = [b.spot for b in bars if b.spot is not None]
    levels = [float(t.replace(",", "")) for t in ticks(page, "chart-intraday", "y")]
    assert levels and min(spots) - 1_000 <= min(levels) and max(levels) <= max(spots) + 1_000
    assert all(t.endswith("%") for t in ticks(page, "chart-intraday", "iv"))
    # Strike axes: the chain's strikes.
    for chart in ("chart-oi-change", "chart-oi"):
        assert {int(t) for t in ticks(page, chart, "x") if t} <= set(range(25_000, 27_000, 50))
    # Hover: the legend shows the minute under the pointer and its recorded figures.
    values = hover(page, "chart-intraday", 8 / 375)  # about 09:23
    minute = values["Time"].removesuffix(" IST")
    assert HHMM.match(minute), values
    bar = bar_at(bars, minute)
    assert bar is not None, values
    assert values["Spot"] == price(bar.spot)
    assert values["PCR"] == f"{bar.pcr:.2f}"
    assert values["ATM IV"] == f"{100 * bar.atm_iv:.2f}%"
    straddle = hover(page, "chart-straddle", 8 / 375)
    assert straddle["ATM straddle"] == price(bar_at(bars, straddle["Time"][:5]).straddle)
    assert straddle["VWAP"] == price(vwap(bars, straddle["Time"][:5]))
    # A gap is a gap: 09:35 has no figures.
    gap = hover(page, "chart-intraday", (20 + 0.1) / 375)
    if gap["Time"].startswith("09:35"):
        assert gap["Spot"] in ("--", "–")
    # OI change since the open, then over the last 15 minutes: other bars, the bars' values.
    assert page.locator("#oi-window").inner_text() == "09:15 → 09:54 IST"
    first = hover(page, "chart-oi-change", 4.5 / 9)  # the middle strike, 26000
    strike = int(first["Strike"])
    assert first["CE OI change"] == signed(oi_change(bars, "09:15", "09:54", strike, "CE"))
    assert first["PE OI change"] == signed(oi_change(bars, "09:15", "09:54", strike, "PE"))
    page.click("#oi-presets button[data-preset='15']")
    window_starts(page, "09:39")
    later = hover(page, "chart-oi-change", 4.5 / 9)
    assert int(later["Strike"]) == strike
    assert later["CE OI change"] == signed(oi_change(bars, "09:39", "09:54", strike, "CE"))
    assert later["CE OI change"] != first["CE OI change"]
    # A custom window.
    page.fill("#oi-from", "09:20")
    page.fill("#oi-to", "09:30")
    page.click("#oi-presets button[data-preset='custom']")
    window_starts(page, "09:20")
    custom = hover(page, "chart-oi-change", 4.5 / 9)
    assert custom["PE OI change"] == signed(oi_change(bars, "09:20", "09:30", strike, "PE"))
    # Multi-strike: the ATM CE and PE to start with; one more strike, and its series.
    assert page.locator("#ms-chosen li").count() == 2
    page.select_option("#ms-strike", "26200")
    page.select_option("#ms-side", "PE")
    page.click("#ms-add")
    page.wait_for_function(
        "() => document.querySelectorAll('#chart-ms-oi .u-legend tr.u-series').length === 4"
    )
    multi = hover(page, "chart-ms-oi", 3 / 375)
    bar = bar_at(bars, multi["Time"][:5])
    assert multi["26200 PE"] == indian(bar.legs.pe.oi[bar.legs.strikes.index(26_200.0)])
    # The header: IV rank over today's close and the two before; the expected move.
    assert page.locator("#iv-days").inner_text() == "3"
    assert re.fullmatch(r"\d+\.\d", page.locator("#iv-rank").inner_text())
    assert re.fullmatch(
        r"±[\d,]+\.\d\d \(\d+\.\d\d%\)", page.locator("#expected-move").inner_text()
    )
    assert errors == [] and refused == []


def test_a_tap_shows_values_on_touch(with_closes, browser):  # noqa: F811
    url, bars = with_closes
    page, errors, refused = open_chain(browser, url, has_touch=True)
    page.locator("#chart-intraday").scroll_into_view_if_needed()
    box = page.locator("#chart-intraday .u-over").bounding_box()
    page.touchscreen.tap(box["x"] + 10 / 375 * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_function(
        "() => /^\\d\\d:\\d\\d IST$/.test(document.querySelector"
        "('#chart-intraday .u-legend tr.u-series .u-value').textContent)"
    )
    values = legend(page, "chart-intraday")
    assert values["Spot"] == price(bar_at(bars, values["Time"][:5]).spot)
    assert errors == [] and refused == []


def cell(page, strike: int, field: str) -> str:
    return page.locator(f"#rows tr[data-k='{strike}'] td[data-f='{field}']").inner_text()


def test_replay_shows_the_table_as_of_a_minute_and_back_to_live(with_closes, browser):  # noqa: F811
    url, bars = with_closes
    page, errors, refused = open_chain(browser, url)
    live = {f: cell(page, 26_000, f) for f in ("CE.ltp", "PE.oi")}
    events = page.evaluate_handle(
        """() => { const seen = [];
                   document.addEventListener('chain:replay', e => seen.push(e.detail));
                   document.addEventListener('chain:live', () => seen.push('live'));
                   return seen; }"""
    )
    page.select_option("#replay-minute", "09:20")
    page.wait_for_function("seen => seen.length === 1", arg=events)
    detail = page.evaluate("seen => seen[0]", events)
    assert detail["label"] == "replay 09:20"
    assert detail["chain"]["data"]["source"] == "history"
    assert detail["chain"]["data"]["as_of"].startswith(f"{today().isoformat()}T09:20")
    assert page.locator("#replay-label").inner_text() == "replay 09:20"
    assert page.locator("#oi-at").inner_text() == "at 09:20 IST"  # the charts move there too
    # The table is the chain as recorded at 09:20, and the header says so.
    bar = bar_at(bars, "09:20")
    i = bar.legs.strikes.index(26_000.0)
    page.wait_for_function(
        LTP_26000_IS,
        arg=price(bar.legs.ce.ltp[i]),
        timeout=30_000,
    )
    assert cell(page, 26_000, "PE.oi") == indian(bar.legs.pe.oi[i])
    assert "replay 09:20" in page.locator(".chain-head").inner_text().lower()
    # The slider: one minute back (arrow key) replays 09:19.
    page.focus("#replay-slider")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("seen => seen.length === 2", arg=events)
    assert page.evaluate("seen => seen[1].label", events) == "replay 09:19"
    # Back to live: the live chain again.
    page.click("#replay-live")
    page.wait_for_function("seen => seen[seen.length - 1] === 'live'", arg=events)
    assert page.locator("#replay-label").inner_text() == "live"
    page.wait_for_function(
        LTP_26000_IS,
        arg=live["CE.ltp"],
        timeout=30_000,
    )
    assert "replay" not in page.locator(".chain-head").inner_text().lower()
    assert errors == [] and refused == []


def test_the_page_works_without_daily_closes_in_dark_mode(without_closes, browser):  # noqa: F811
    url, _ = without_closes
    page, errors, refused = open_chain(browser, url, color_scheme="dark")
    assert page.get_attribute("html", "data-theme") == "dark"
    # The legend's text is the dark theme's light foreground, on the page's dark background.
    colour = page.eval_on_selector("#chart-intraday .u-legend", "e => getComputedStyle(e).color")
    assert colour == "rgb(230, 237, 243)"
    assert page.locator("#iv-rank").inner_text() == "–"
    assert page.locator("#iv-percentile").inner_text() == "–"
    assert page.locator("#iv-days").inner_text() == "0"
    assert "at least two daily closes" in str(page.get_attribute("#iv-rank", "title"))
    assert page.locator("#history-error").is_hidden()
    assert len(ticks(page, "chart-intraday", "x")) >= 3
    assert errors == [] and refused == []
