"""The simulator's universe lists the expiries and lot sizes the exchanges list (weekly NIFTY on
Tuesdays, weekly SENSEX on Thursdays, monthlies only for the other indices, holidays moving an
expiry to the trading day before it), and both brokers' masters carry them."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import date, datetime, timedelta

import pytest

from brokers.dhan.master import parse_scrip_master
from brokers.masters import KeepFilter
from brokers.simulator import masters
from brokers.simulator.expiries import expiries_for, trading_day_on_or_before
from brokers.simulator.universe import IST, UNDERLYINGS_BY_SYMBOL, Universe
from brokers.upstox.master import parse_instruments

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=IST)  # a Wednesday
SPEC = UNDERLYINGS_BY_SYMBOL
NSE_2026 = {date(2026, 3, 31): "Shri Mahavir Jayanti", date(2026, 11, 24): "Guru Nanak"}
BSE_2026 = {date(2026, 3, 26): "Shri Ram Navami"}


def test_every_index_of_both_exchanges_is_listed_with_todays_lot_size():
    lots = {symbol: spec.lot_size for symbol, spec in SPEC.items()}
    assert lots == {
        "NIFTY": 65, "BANKNIFTY": 30, "FINNIFTY": 60, "MIDCPNIFTY": 120,
        "SENSEX": 20, "BANKEX": 30, "SENSEX50": 60,
    }  # fmt: skip
    assert {s: SPEC[s].exchange for s in ("SENSEX", "BANKEX", "SENSEX50")} == dict.fromkeys(
        ("SENSEX", "BANKEX", "SENSEX50"), "BSE"
    )


def test_nifty_lists_tuesday_weeklies_and_last_tuesday_monthlies():
    listed = expiries_for(SPEC["NIFTY"], NOW)
    assert listed[:5] == [
        (date(2026, 12, 8), True), (date(2026, 12, 15), True), (date(2026, 12, 22), True),
        (date(2026, 12, 29), False),  # the last Tuesday: the monthly, listed once
        (date(2027, 1, 26), False),
    ]  # fmt: skip
    assert listed[-1] == (date(2027, 2, 23), False)
    assert all(day.weekday() == 1 for day, _ in listed)


def test_sensex_lists_thursday_weeklies_and_last_thursday_monthlies():
    listed = expiries_for(SPEC["SENSEX"], NOW)
    assert [d for d, weekly in listed if weekly] == [
        date(2026, 12, 3), date(2026, 12, 10), date(2026, 12, 17), date(2026, 12, 24),
    ]  # fmt: skip
    assert [d for d, weekly in listed if not weekly] == [
        date(2026, 12, 31), date(2027, 1, 28), date(2027, 2, 25),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("symbol", "weekday"),
    [("BANKNIFTY", 1), ("FINNIFTY", 1), ("MIDCPNIFTY", 1), ("BANKEX", 3), ("SENSEX50", 3)],
)
def test_the_other_indices_list_monthlies_only(symbol, weekday):
    listed = expiries_for(SPEC[symbol], NOW)
    assert len(listed) == 3 and not any(weekly for _, weekly in listed)
    for day, _ in listed:
        assert day.weekday() == weekday
        assert (day + timedelta(days=7)).month != day.month  # the last such weekday


def test_an_expiry_on_a_holiday_moves_to_the_trading_day_before_and_keeps_its_kind():
    march = datetime(2026, 3, 2, 10, 0, tzinfo=IST)
    nifty = dict(expiries_for(SPEC["NIFTY"], march, holidays=NSE_2026))
    assert nifty[date(2026, 3, 30)] is False  # the monthly of Tue 31 March, on Monday
    assert date(2026, 3, 31) not in nifty
    banknifty = dict(expiries_for(SPEC["BANKNIFTY"], march, holidays=NSE_2026))
    assert list(banknifty)[:1] == [date(2026, 3, 30)]
    sensex = dict(expiries_for(SPEC["SENSEX"], march, holidays=BSE_2026))
    assert sensex[date(2026, 3, 25)] is False  # Thursday 26 March's monthly, on Wednesday
    november = dict(expiries_for(SPEC["NIFTY"], datetime(2026, 11, 18, 10, tzinfo=IST),
                                 holidays=NSE_2026))  # fmt: skip
    assert november[date(2026, 11, 23)] is False  # the monthly of Tue 24 November, on Monday
    assert november[date(2026, 12, 1)] is True


def test_a_moved_expiry_is_gone_once_its_new_day_has_closed():
    monday_evening = datetime(2026, 11, 23, 15, 31, tzinfo=IST)
    listed = expiries_for(SPEC["NIFTY"], monday_evening, holidays=NSE_2026)
    assert listed[0] == (date(2026, 12, 1), True)
    before_close = expiries_for(SPEC["NIFTY"], monday_evening.replace(minute=29),
                                holidays=NSE_2026)  # fmt: skip
    assert before_close[0] == (date(2026, 11, 23), False)


def test_a_holiday_list_that_closes_every_day_is_refused():
    closed = {date(2026, 12, 1) - timedelta(days=n): "bad data" for n in range(90)}
    with pytest.raises(ValueError, match="holiday list is wrong"):
        trading_day_on_or_before(date(2026, 12, 1), closed)


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match="must be ≥ 0"):
        expiries_for(SPEC["NIFTY"], NOW, weeklies=-1)


def test_the_universe_applies_each_exchanges_holidays():
    universe = Universe(datetime(2026, 3, 2, 10, tzinfo=IST), strikes=1,
                        holidays={"NSE": NSE_2026, "BSE": BSE_2026})  # fmt: skip
    assert date(2026, 3, 30) in universe.expiries["NIFTY"]
    assert date(2026, 3, 25) in universe.expiries["SENSEX"]
    assert date(2026, 3, 25) in universe.expiries["BANKEX"]
    nse_only = Universe(datetime(2026, 3, 2, 10, tzinfo=IST), strikes=1,
                        holidays={"NSE": NSE_2026})  # fmt: skip
    assert date(2026, 3, 26) in nse_only.expiries["SENSEX"]  # each exchange its own list
    call = universe.chains[("NIFTY", date(2026, 3, 30))][min(universe.chains[("NIFTY",
                                                          date(2026, 3, 30))])]["CE"]  # fmt: skip
    assert call.expires_at == datetime(2026, 3, 30, 15, 30, tzinfo=IST).timestamp()


def _listed(records) -> dict[str, dict[date, set[int]]]:
    out: dict[str, dict[date, set[int]]] = defaultdict(lambda: defaultdict(set))
    for record in records:
        if record.kind == "option":
            out[record.underlying][record.expiry].add(record.lot_size)
    return out


def test_both_brokers_masters_list_every_expiry_with_its_lot_size():
    universe = Universe(NOW, strikes=2)
    expected = {
        symbol: {day: {SPEC[symbol].lot_size} for day in days}
        for symbol, days in universe.expiries.items()
    }
    keep = KeepFilter()
    dhan = _listed(parse_scrip_master(io.BytesIO(masters.dhan_compact(universe)), keep=keep))
    detailed = _listed(parse_scrip_master(io.BytesIO(masters.dhan_detailed(universe)), keep=keep))
    upstox = _listed(parse_instruments(io.BytesIO(masters.upstox_json_gz(universe)), keep=keep))
    assert set(expected) == {
        "NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX", "BANKEX", "SENSEX50",
    }  # fmt: skip
    for got in (dhan, detailed, upstox):
        assert {s: dict(days) for s, days in got.items()} == expected


def test_the_masters_mark_weeklies_and_monthlies():
    universe = Universe(NOW, strikes=1)
    flags = {
        (r["name"], r["expiry"]): r["weekly"]
        for r in masters.upstox_records(universe)
        if "weekly" in r
    }
    weekly = {(s, d) for (s, d), w in flags.items() if w}
    assert {s for s, _ in weekly} == {"NIFTY", "SENSEX"}
    dhan_rows = masters.dhan_compact(universe).decode().splitlines()[1:]
    kinds = {row.split(",")[-4] for row in dhan_rows if ",OPTIDX," in row}
    assert kinds == {"W", "M"}
