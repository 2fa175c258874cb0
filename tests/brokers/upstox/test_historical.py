"""Upstox's historical-candle wire shapes: the path, the parser on golden and malformed
answers, and the day closes (spot only)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from brokers.exceptions import PayloadError
from brokers.exchange import IST
from brokers.upstox.historical import candle_path, day_closes, parse_candles

GOLDEN = {
    "status": "success",
    "data": {
        "candles": [
            ["2026-11-30T00:00:00+05:30", 58350.1, 58520.0, 58210.4, 58480.25, 0, 0],
            ["2026-11-27T00:00:00+05:30", 58200.0, 58400.0, 58100.0, 58310.9, 0, 0],
        ]
    },
}


def test_the_path_encodes_the_key_and_puts_the_newest_date_first():
    path = candle_path("NSE_INDEX|Nifty 50", date(2026, 11, 30), date(2026, 11, 1))
    assert path == "/v3/historical-candle/NSE_INDEX%7CNifty%2050/days/1/2026-11-30/2026-11-01"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("", date(2026, 1, 2), date(2026, 1, 1)), "instrument key"),
        (("NSE_INDEX|Nifty 50", date(2026, 1, 1), date(2026, 1, 2)), "after"),
    ],
)
def test_bad_paths_are_refused(args, said):
    with pytest.raises(ValueError, match=said):
        candle_path(*args)


def test_a_bad_unit_is_refused():
    with pytest.raises(ValueError, match="unit"):
        candle_path("NSE_INDEX|Nifty 50", date(2026, 1, 2), date(2026, 1, 1), unit="ticks")


def test_golden_candles_parse_oldest_first_and_give_spot_closes():
    candles = parse_candles(GOLDEN)
    assert [c.at for c in candles] == [
        datetime(2026, 11, 27, tzinfo=IST),
        datetime(2026, 11, 30, tzinfo=IST),
    ]
    closes = day_closes(candles)
    assert closes[date(2026, 11, 30)].spot == 58480.25
    assert closes[date(2026, 11, 30)].atm_iv is None  # Upstox's candles have no option IV
    assert closes[date(2026, 11, 30)].at == datetime(2026, 11, 30, 15, 30, tzinfo=IST)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ([], "expected an object"),
        ({"status": "error", "errors": []}, "status is 'error'"),
        ({"status": "success"}, "data is NoneType"),
        ({"status": "success", "data": {"candles": {}}}, "candles is dict"),
        (
            {"status": "success", "data": {"candles": [["2026-11-30T00:00:00+05:30", 1.0]]}},
            "candles",
        ),
        ({"status": "success", "data": {"candles": [["2026-11-30", 1, 2, 3, 4, 0, 0]]}}, "offset"),
        ({"status": "success", "data": {"candles": [[5, 1, 2, 3, 4, 0, 0]]}}, "ISO time"),
        (
            {
                "status": "success",
                "data": {"candles": [["2026-11-30T00:00:00+05:30", 1, 2, "3", 4, 0]]},
            },
            r"candles\[0\]\[3\]",
        ),
    ],
)
def test_malformed_answers_raise_naming_the_field(answer, said):
    with pytest.raises(PayloadError, match=said):
        parse_candles(answer)
