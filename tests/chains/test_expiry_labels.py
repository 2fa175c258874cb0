"""The expiry switcher's labels: "09 Dec · 3d · W" — calendar days in IST, W/M by the rule."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from chains.expiry_labels import expiry_labels, monthly_expiries

# Tuesday 1 Dec 2026, 20:00 UTC = Wednesday 2 Dec 01:30 IST: today is the 2nd in IST
NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
NIFTY = [date(2026, 12, 8), date(2026, 12, 15), date(2026, 12, 22), date(2026, 12, 29),
         date(2027, 1, 25), date(2027, 2, 23)]  # fmt: skip


def test_labels_count_calendar_days_in_ist_and_mark_weekly_and_monthly():
    labels = expiry_labels(NIFTY[:2] + NIFTY[3:5], listed=NIFTY, now=NOW)
    assert [x.label for x in labels] == [
        "08 Dec · 6d · W", "15 Dec · 13d · W", "29 Dec · 27d · M", "25 Jan · 54d · M",
    ]  # fmt: skip
    assert labels[0].title == "08 Dec 2026, weekly, 6 days to expiry"


def test_the_expiry_day_itself_is_0d():
    today = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)  # 14:30 IST, before the close
    (label,) = expiry_labels([NIFTY[0]], listed=NIFTY, now=today)
    assert label.label == "08 Dec · 0d · W" and label.title.endswith("expires today")


def test_a_monthly_only_underlying_is_all_monthly():
    banknifty = [date(2026, 12, 29), date(2027, 1, 25), date(2027, 2, 23)]
    assert monthly_expiries(banknifty) == set(banknifty)
    assert {x.kind for x in expiry_labels(banknifty, listed=banknifty, now=NOW)} == {"M"}


def test_w_and_m_need_every_listed_expiry_not_only_those_shown():
    # the nearest two alone would make 15 Dec the last of December, hence "M": wrong
    (_, second) = expiry_labels(NIFTY[:2], listed=NIFTY, now=NOW)
    assert second.kind == "W"


def test_an_expiry_not_listed_or_past_or_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="not in the listed expiries"):
        expiry_labels([date(2026, 12, 9)], listed=NIFTY, now=NOW)
    with pytest.raises(ValueError, match="before today"):
        expiry_labels([date(2026, 12, 1)], listed=[date(2026, 12, 1), *NIFTY], now=NOW)
    with pytest.raises(ValueError, match="aware"):
        expiry_labels(NIFTY, listed=NIFTY, now=NOW.replace(tzinfo=None))
