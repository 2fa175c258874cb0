"""What the chain page shows, pure: the ATM on either basis, in-the-money shading against the
spot, the puts' column order, totals of the window and of every strike, and the market and feed
badges in traders' words."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from brokers.exchange import AFTER_CLOSE, BEFORE_OPEN, OPEN, WEEKEND, MarketState, Phase
from chains import pagestatus, presenter

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def leg(oi: int, **fields: Any) -> dict[str, Any]:
    base = dict.fromkeys(presenter.SIDE_FIELDS)
    base.update(instrument_id="1", prev_close=None, exchange_time=None, buildup=None, oi=oi)
    base.update(fields)
    return base


def chain(*, spot: float | None, forward: float | None, atm: float | None) -> Any:
    strikes = {str(k): {"CE": leg(100 + i), "PE": leg(200 + i)}
               for i, k in enumerate(range(25_900, 26_300, 100))}  # fmt: skip
    strikes["26000"]["CE"]["buildup"] = "short_covering"
    return {"underlying": "NIFTY", "expiry": "2026-12-08", "lot_size": 65, "strike_interval": 100.0,
            "source": "live", "as_of": None, "seq": 1, "spot": spot, "forward": forward,
            "atm_strike": atm, "pcr": 1.5, "max_pain": 26_000.0, "strikes": strikes,
            "spot_prev_close": None}  # fmt: skip


def test_the_atm_is_the_strike_nearest_the_spot_unless_forward_is_chosen():
    data = chain(spot=26_043.0, forward=26_055.0, atm=26_100.0)
    page = presenter.build(data, window=1, now=NOW)
    assert page.atm == 26_000.0 and page.atm_basis == "spot"
    assert [r.key for r in page.rows] == ["25900", "26000", "26100"]
    assert [r.key for r in page.rows if r.atm] == ["26000"]
    forward = presenter.build(data, window=1, now=NOW, atm_basis="forward")
    assert forward.atm == 26_100.0 and [r.key for r in forward.rows] == ["26000", "26100", "26200"]
    with pytest.raises(ValueError, match="use one of spot, forward"):
        presenter.build(data, window=1, now=NOW, atm_basis="median")


def test_without_a_spot_there_is_no_spot_atm_and_every_strike_shows():
    page = presenter.build(chain(spot=None, forward=None, atm=None), window=1, now=NOW)
    assert page.atm is None and len(page.rows) == 4
    assert page.header["atm_strike"] == "–"


def test_in_the_money_follows_the_spot():
    page = presenter.build(chain(spot=26_043.0, forward=26_155.0, atm=26_200.0), window=None,
                           now=NOW)  # fmt: skip
    assert [(r.key, r.ce.itm, r.pe.itm) for r in page.rows] == [
        ("25900", True, False), ("26000", True, False), ("26100", False, True),
        ("26200", False, True)]  # fmt: skip


def test_totals_say_what_they_cover():
    page = presenter.build(chain(spot=26_043.0, forward=26_055.0, atm=26_100.0), window=1,
                           now=NOW)  # fmt: skip
    assert (page.shown, page.listed) == (3, 4)
    assert page.totals["CE"]["oi"] == "303"  # 100 + 101 + 102
    assert page.all_totals["CE"]["oi"] == "406" and page.all_totals["PE"]["oi"] == "806"


def test_the_build_up_is_a_key_for_the_visible_label():
    page = presenter.build(chain(spot=26_043.0, forward=26_055.0, atm=26_100.0), window=None,
                           now=NOW)  # fmt: skip
    row = page.rows[1]
    assert (row.ce.buildup_key, row.ce.buildup) == ("short_covering", "Short covering")
    assert row.pe.buildup_key == "" and row.pe.buildup == ""
    oi = next(c for c in row.ce_cells if c.name == "oi")
    assert oi.css.split() == ["c", "f-oi", "oi", "itm"]


def test_puts_mirror_calls_but_quotes_read_left_to_right():
    assert presenter.PUT_ORDER[:4] == ("bid_qty", "bid", "ask", "ask_qty")
    assert presenter.PUT_ORDER[4:10] == ("change", "ltp", "iv", "volume", "oi_change", "oi")
    assert presenter.put_order(["ltp", "ask", "oi", "bid"]) == ("ask", "oi", "bid", "ltp")


def closed(reason: str) -> MarketState:
    return MarketState(Phase.CLOSED, reason)


PRE_OPEN = MarketState(Phase.PRE_OPEN, "pre-open")
BROKER_OPEN, BROKER_CLOSED = {"NSE_FNO": "NORMAL_OPEN"}, {"NSE_FNO": "NORMAL_CLOSE"}


@pytest.mark.parametrize(
    ("state", "broker", "expected"),
    [
        (OPEN, None, ("open", "Market open")),
        (PRE_OPEN, None, ("pre_open", "Pre-open: options trade from 09:15")),
        (closed("holiday: Christmas"), None, ("holiday", "Holiday: Christmas")),
        (closed(WEEKEND), None, ("closed", "Market closed: weekend")),
        (closed(AFTER_CLOSE), None, ("closed", "Market closed: after the 15:30 close")),
        (closed(BEFORE_OPEN), None, ("closed", "Market closed: opens 09:15")),
        # the broker's market-status messages win, as in the freshness verdict
        (closed(AFTER_CLOSE), BROKER_OPEN, ("open", "Market open")),
        (OPEN, BROKER_CLOSED, ("closed", "Market closed: broker reports NSE_FNO closed")),
        (OPEN, {"NSE_FNO": "7"}, ("open", "Market open")),  # DhanHQ's valueless code: calendar
    ],
)
def test_the_market_badge_in_words(state, broker, expected):
    badge = pagestatus.market_badge(state, broker=broker)
    assert (badge["state"], badge["words"]) == expected


def test_the_feed_badge_never_shows_a_state_name():
    for state, words in pagestatus.FEED_WORDS.items():
        assert "_" not in words and words.startswith("Feed "), state
    assert pagestatus.feed_words("token_wait") == "Feed waits for a new access token"
    assert pagestatus.feed_words("a_state_added_later") == "Feed not connected"
