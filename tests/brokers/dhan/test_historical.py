"""DhanHQ's rollingoption wire shapes: the request body, the answer's parser on golden,
truncated and mistyped payloads, and each day's close at the money."""

from __future__ import annotations

import copy
from datetime import date, datetime

import pytest

from brokers.dhan.historical import (
    RollingRequest,
    day_closes,
    parse_rolling_option,
    strike_offset,
    windows,
)
from brokers.exceptions import PayloadError
from brokers.exchange import IST

# 2026-11-27 (Friday) 14:15 and 15:15 IST, two 60-minute bars; the shape of DhanHQ's example.
T1, T2 = 1795769100, 1795772700
GOLDEN_CE = {
    "data": {
        "ce": {
            "close": [120.5, 131.0],
            "iv": [11.2, 11.4],
            "oi": [150000.0, 162000.0],
            "spot": [25880.1, 25912.35],
            "strike": [25900.0, 25900.0],
            "timestamp": [T1, T2],
        },
        "pe": None,
    }
}
GOLDEN_PE = {
    "data": {
        "ce": None,
        "pe": {
            "close": [140.0, 118.25],
            "iv": [11.6, 11.8],
            "oi": [170000.0, 171000.0],
            "spot": [25880.1, 25912.35],
            "strike": [25900.0, 25900.0],
            "timestamp": [T1, T2],
        },
    }
}


def test_the_request_body_is_the_documented_one():
    body = RollingRequest(
        security_id=13,
        segment="NSE_FNO",
        weekly=True,
        side="CALL",
        from_date=date(2026, 11, 1),
        to_date=date(2026, 12, 1),
    ).body()
    assert body == {
        "exchangeSegment": "NSE_FNO",
        "interval": "60",
        "securityId": 13,
        "instrument": "OPTIDX",
        "expiryFlag": "WEEK",
        "expiryCode": 1,
        "strike": "ATM",
        "drvOptionType": "CALL",
        "requiredData": ["close", "iv", "oi", "spot", "strike"],
        "fromDate": "2026-11-01",
        "toDate": "2026-12-01",
    }


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"interval": "2"}, "interval"),
        ({"side": "BOTH"}, "side"),
        ({"fields": ("close", "gamma")}, "requiredData"),
        ({"to_date": date(2026, 11, 1)}, "spans 0 days"),
        ({"to_date": date(2026, 12, 2)}, "spans 31 days"),
        ({"strike": "ATM+11"}, "strike"),
    ],
)
def test_a_request_dhan_would_refuse_is_refused_here(change, said):
    fields = {
        "security_id": 13,
        "segment": "NSE_FNO",
        "weekly": False,
        "side": "PUT",
        "from_date": date(2026, 11, 1),
        "to_date": date(2026, 11, 30),
        **change,
    }
    with pytest.raises(ValueError, match=said):
        RollingRequest(**fields)


@pytest.mark.parametrize(
    ("text", "offset"),
    [("ATM", 0), ("ATM+1", 1), ("ATM-10", -10), ("ATM+11", None), ("ATM+01", None), ("X", None)],
)
def test_strike_offsets(text, offset):
    assert strike_offset(text) == offset


def test_golden_answer_parses_into_bars():
    bars = parse_rolling_option(GOLDEN_CE, "CALL")
    assert [b.at for b in bars] == [
        datetime(2026, 11, 27, 14, 15, tzinfo=IST),
        datetime(2026, 11, 27, 15, 15, tzinfo=IST),
    ]
    assert (bars[1].close, bars[1].iv, bars[1].spot, bars[1].strike) == (
        131.0,
        11.4,
        25912.35,
        25900.0,
    )


def test_a_side_without_data_is_no_bars():
    assert parse_rolling_option(GOLDEN_CE, "PUT") == []


def test_day_close_takes_the_last_bars_of_both_sides():
    closes = day_closes(
        parse_rolling_option(GOLDEN_CE, "CALL"), parse_rolling_option(GOLDEN_PE, "PUT")
    )
    close = closes[date(2026, 11, 27)]
    assert close.spot == 25912.35
    assert close.atm_strike == 25900.0
    assert close.atm_iv == pytest.approx(0.116)  # (11.4 + 11.8) / 2 percent
    assert close.straddle == 249.25
    assert close.at == datetime(2026, 11, 27, 15, 30, tzinfo=IST)  # the last bar ends the session


def test_sides_at_different_strikes_give_no_straddle_and_the_call_s_iv():
    puts = copy.deepcopy(GOLDEN_PE)
    puts["data"]["pe"]["strike"] = [25950.0, 25950.0]
    close = day_closes(parse_rolling_option(GOLDEN_CE, "CALL"), parse_rolling_option(puts, "PUT"))[
        date(2026, 11, 27)
    ]
    assert (close.straddle, close.atm_iv) == (None, pytest.approx(0.114))


def broken(path: list, value: object) -> dict:
    answer = copy.deepcopy(GOLDEN_CE)
    target = answer
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return answer


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ([], "expected an object"),
        ({}, "data is missing"),
        ({"data": []}, "data is list"),
        ({"data": {"pe": None}}, "data.ce is missing"),
        (broken(["data", "ce"], [1, 2]), "data.ce is list"),
        (broken(["data", "ce", "timestamp"], KeyError), "timestamp is missing"),
        (broken(["data", "ce", "iv"], "11.2"), "iv is str"),
        (broken(["data", "ce", "close"], [120.5]), "1 values for 2 timestamps"),
        (broken(["data", "ce", "oi"], [1, "x"]), r"oi\[1\] is 'x'"),
        (broken(["data", "ce", "spot"], [True, 1.0]), r"spot\[0\] is True"),
        (broken(["data", "ce", "timestamp"], [T1, None]), r"timestamp\[1\] is null"),
        (broken(["data", "ce", "timestamp"], [T1, -5]), "not an epoch time"),
    ],
)
def test_malformed_answers_raise_naming_the_field(answer, said):
    with pytest.raises(PayloadError, match=said):
        parse_rolling_option(answer, "CALL")


def test_windows_cover_the_days_in_spans_dhan_accepts():
    days = [date(2026, 1, 1) + (date(2026, 1, 2) - date(2026, 1, 1)) * k for k in range(0, 65, 3)]
    spans = windows(days)
    assert all(1 <= (end - start).days <= 30 for start, end in spans)
    covered = {d for d in days if any(start <= d < end for start, end in spans)}
    assert covered == set(days)
    assert windows([]) == []
