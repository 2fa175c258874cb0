"""The history endpoints: series with gaps, OI change, multi-strike series, replay, IV rank,
and every bad parameter."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model

from brokers.exchange import IST
from brokers.models import Instrument
from chains.history.api import today
from chains.history.bars import MinuteBar
from chains.history.store import history_write
from chains.models import DailyClose, HistoryBar
from tests.asgi_client import AsgiClient
from tests.chains.fixtures import EXPIRY, LATER, tracked

from .books import day_of_bars, make_book

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_redis")]
GAPS = frozenset({3, 4})  # 09:18 and 09:19 not recorded


@pytest.fixture
def client(db):
    return AsgiClient.logged_in(
        get_user_model().objects.create_user("trader", password="pw-test-only")
    )


@pytest.fixture
def account(tmp_path):
    return tracked(tmp_path, "dhan")


def opening(day: date) -> datetime:
    return datetime.combine(day, time(9, 15), tzinfo=IST)


@pytest.fixture
def bars(account) -> list[MinuteBar]:
    """Today's 09:15–09:24 of NIFTY EXPIRY, with 09:18 and 09:19 missing."""
    written = day_of_bars(
        make_book(expiry=EXPIRY, first=25_900.0, strikes=4), 10, start=opening(today()), skip=GAPS
    )
    history_write(written)
    return written


def get(client, endpoint: str, **params: str):
    return client.get(
        f"/api/v2/options/{endpoint}",
        {"underlying": "NIFTY", "expiry": EXPIRY.isoformat(), **params},
    )


def test_history_lists_every_minute_of_the_window_with_nulls_for_gaps(client, bars):
    response = get(client, "history", **{"from": "09:15", "to": "09:26"})
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["underlying"], data["expiry"], data["date"]) == (
        "NIFTY",
        EXPIRY.isoformat(),
        today().isoformat(),
    )
    rows = data["series"]
    assert [r["time"] for r in rows] == [
        (opening(today()) + timedelta(minutes=i)).isoformat() for i in range(12)
    ]
    assert data["recorded"] == 8
    by_time = {b.minute.isoformat(): b for b in bars}
    for row in rows:
        bar = by_time.get(row["time"])
        if bar is None:
            assert all(row[k] is None for k in row if k != "time")
        else:
            assert row["spot"] == bar.spot and row["atm_iv"] == bar.atm_iv
            assert row["pcr"] == bar.pcr and row["straddle"] == bar.straddle
            assert row["ce_oi_change"] == bar.ce_oi_change
    assert rows[3]["spot"] is None and rows[10]["spot"] is None  # a gap; after the last bar
    whole_day = get(client, "history").json()["data"]["series"]
    assert len(whole_day) == 376  # 09:15 to 15:30


def test_oi_change_is_the_difference_of_the_two_minutes_bars(client, bars):
    first, last = bars[1], bars[-1]  # 09:16 and 09:24
    response = get(client, "oi-change", **{"from": "09:16", "to": "09:24"})
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["from_bar"], data["to_bar"]) == (first.minute.isoformat(), last.minute.isoformat())
    assert [r["strike"] for r in data["strikes"]] == list(last.legs.strikes)
    for i, row in enumerate(data["strikes"]):
        for side in ("CE", "PE"):
            oi = last.legs.side(side).oi[i]
            assert row[side] == {"oi": oi, "change": oi - first.legs.side(side).oi[i]}


def test_oi_change_from_a_gap_uses_the_chain_as_it_stood(client, bars):
    data = get(client, "oi-change", **{"from": "09:19", "to": "09:20"}).json()["data"]
    assert data["from_bar"] == bars[2].minute.isoformat()  # 09:17, the last before the gap


def test_strikes_gives_each_side_s_minute_series(client, bars):
    response = get(
        client,
        "strikes",
        strikes="26000,25900",
        fields="oi,ltp,delta",
        **{"from": "09:15", "to": "09:20"},
    )
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["fields"] == ["oi", "ltp", "delta"] and len(data["times"]) == 6
    assert set(data["strikes"]) == {"26000", "25900"}
    series = data["strikes"]["26000"]["PE"]
    assert series["oi"][0] == bars[0].legs.pe.oi[1]
    assert series["ltp"][5] == bars[3].legs.pe.ltp[1]  # 09:20 is the fourth bar written
    assert series["delta"][2] == bars[2].legs.pe.delta[1]
    assert series["oi"][3] is None and series["oi"][4] is None  # the gaps
    default = get(client, "strikes", strikes="26100").json()["data"]
    assert default["fields"] == ["oi", "ltp", "iv"]


def test_replay_of_a_minute_is_that_minute_s_bar_in_the_live_shape(client, bars):
    bar = bars[3]  # 09:20 (09:18 and 09:19 are gaps)
    response = client.get(
        "/api/v2/options/live", {"underlying": "NIFTY", "expiry": EXPIRY.isoformat(), "at": "09:20"}
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["freshness"]["state"] == "history"
    assert body["freshness"]["words"] == "Replay 09:20"
    data = body["data"]
    assert data["source"] == "history" and data["as_of"] == bar.minute.isoformat()
    assert (data["spot"], data["forward"], data["pcr"], data["max_pain"]) == (
        bar.spot,
        bar.forward,
        bar.pcr,
        bar.max_pain,
    )
    assert data["lot_size"] == 75 and data["strike_interval"] == 100.0
    from tests.chains.test_api import DATA_KEYS, LEG_KEYS

    assert set(data) == DATA_KEYS
    for i, strike in enumerate(bar.legs.strikes):
        for side in ("CE", "PE"):
            leg = data["strikes"][str(int(strike))][side]
            assert set(leg) == LEG_KEYS
            cols = bar.legs.side(side)
            assert (
                leg["oi"],
                leg["volume"],
                leg["ltp"],
                leg["bid"],
                leg["ask"],
                leg["iv"],
                leg["delta"],
            ) == (
                cols.oi[i],
                cols.volume[i],
                cols.ltp[i],
                cols.bid[i],
                cols.ask[i],
                cols.iv[i],
                cols.delta[i],
            )
            expected_id = Instrument.objects.get(
                account__name="main", kind="option", expiry=EXPIRY, strike=strike, option_type=side
            ).broker_id
            assert leg["instrument_id"] == expected_id


def test_replay_in_a_gap_shows_the_last_minute_recorded(client, bars):
    data = client.get("/api/v2/options/live", {"underlying": "NIFTY", "at": "09:19"}).json()["data"]
    assert data["as_of"] == bars[2].minute.isoformat()


def test_iv_rank_over_the_daily_closes_takes_each_day_s_nearest_expiry(client, account):
    now = today()
    for back, near, far in [(3, 0.10, 0.5), (2, 0.20, 0.5), (1, 0.30, 0.5), (0, 0.15, 0.9)]:
        day = now - timedelta(days=back)
        for expiry, iv in ((EXPIRY, near), (LATER, far)):
            DailyClose.objects.create(
                underlying="NIFTY", expiry=expiry, day=day, minute=opening(day), atm_iv=iv
            )
    DailyClose.objects.create(  # expired before its day: not that day's nearest
        underlying="NIFTY",
        expiry=now - timedelta(days=5),
        day=now,
        minute=opening(now),
        atm_iv=0.99,
    )
    response = client.get("/api/v2/options/iv-rank", {"underlying": "nifty"})
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["date"], data["expiry"], data["atm_iv"], data["days"]) == (
        now.isoformat(),
        EXPIRY.isoformat(),
        0.15,
        4,
    )
    assert data["iv_rank"] == 25.0  # (0.15 - 0.10) / (0.30 - 0.10)
    assert data["iv_percentile"] == 25.0  # one day in four lower
    assert (data["low"], data["high"]) == (0.10, 0.30)


def test_iv_rank_without_closes_says_so(client, account):
    data = client.get("/api/v2/options/iv-rank", {"underlying": "NIFTY"}).json()["data"]
    assert (data["atm_iv"], data["iv_rank"], data["days"]) == (None, None, 0)


def test_iv_rank_follows_history_writes(client, bars):
    data = client.get("/api/v2/options/iv-rank", {"underlying": "NIFTY"}).json()["data"]
    assert (data["atm_iv"], data["days"], data["iv_rank"]) == (bars[-1].atm_iv, 1, None)


def test_a_past_day_s_expired_expiry_is_served_from_history(client, account, settings):
    settings.HISTORY_DAYS = 30
    past = today() - timedelta(days=10)
    expired = past + timedelta(days=1)
    history_write(day_of_bars(make_book(expiry=expired), 2, start=opening(past)))
    response = client.get(
        "/api/v2/options/history", {"underlying": "NIFTY", "date": past.isoformat(), "to": "09:16"}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["expiry"] == expired.isoformat()  # the day's nearest
    assert response.json()["data"]["recorded"] == 2


def test_history_needs_a_login(account):
    response = AsgiClient().get("/api/v2/options/history", {"underlying": "NIFTY"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("endpoint", "params", "status", "says"),
    [
        ("history", {"underlying": ""}, 400, "underlying is required"),
        ("history", {"underlying": "FINNIFTY"}, 404, "not a tracked underlying"),
        ("history", {"expiry": "2020-01-02"}, 404, "has no history on"),
        ("history", {"expiry": "soon"}, 400, "is not a date: use YYYY-MM-DD"),
        ("history", {"from": "10:00", "to": "09:30"}, 400, "from 10:00 is after to 09:30"),
        ("history", {"from": "09:00"}, 400, "outside the session"),
        ("history", {"to": "15:31"}, 400, "outside the session"),
        ("history", {"from": "9h"}, 400, "is not a time: use HH:MM"),
        ("history", {"date": "2020-01-01"}, 400, "beyond the history kept"),
        ("history", {"date": "2999-01-01"}, 400, "in the future"),
        ("history", {"date": "yesterday"}, 400, "is not a date"),
        ("oi-change", {"from": "09:16"}, 400, "to is required"),
        ("oi-change", {"from": "09:16", "to": "09:15"}, 400, "is after to"),
        ("strikes", {}, 400, "strikes is required"),
        (
            "strikes",
            {"strikes": ",".join(str(25_000 + 100 * i) for i in range(21))},
            400,
            "at most 20",
        ),
        ("strikes", {"strikes": "26000,abc"}, 400, "not all numbers"),
        ("strikes", {"strikes": "26000", "fields": "oi,gamma"}, 400, "unknown field gamma"),
        ("strikes", {"strikes": "26050"}, 400, "strike 26050 is not in the chain"),
        ("iv-rank", {"underlying": "FINNIFTY"}, 404, "not a tracked underlying"),
        ("live", {"at": "16:00"}, 400, "outside the session"),
        ("live", {"at": "09:15", "underlying": "BANKNIFTY"}, 404, "not a tracked underlying"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(client, bars, endpoint, params, status, says):
    response = get(client, endpoint, **params)
    assert response.status_code == status, response.json()
    body = response.json()
    assert body["status"] == "error"
    assert says in body["message"]


def test_unknown_expiry_lists_the_valid_ones(client, bars):
    body = get(client, "history", expiry="2020-01-02").json()
    assert body["code"] == "not_tracked"
    assert body["valid"] == [EXPIRY.isoformat(), LATER.isoformat()]


def test_nothing_recorded_by_the_minute_is_404(client, account):
    response = get(client, "oi-change", **{"from": "09:15", "to": "09:20"})
    assert response.status_code == 404
    assert response.json()["code"] == "no_history"
    assert "nothing was recorded by then" in response.json()["message"]
    replay = get(client, "live", at="09:15")
    assert replay.status_code == 404


# --- a stored bar that cannot be read ---------------------------------------------------------


@pytest.fixture
def corrupt(bars) -> MinuteBar:
    """The 09:20 bar of the ``bars`` fixture, its packed legs overwritten with bytes that are
    not a packed chain (as a disk fault or a bad manual edit would leave them)."""
    bar = bars[3]
    assert f"{bar.minute:%H:%M}" == "09:20"
    updated = HistoryBar.objects.filter(
        underlying=bar.underlying, expiry=bar.expiry, minute=bar.minute
    ).update(legs=b"\x78\x9cnot a packed chain")
    assert updated == 1
    return bar


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [
        ("strikes", {"strikes": "26000", "from": "09:15", "to": "09:24"}),
        ("oi-change", {"from": "09:16", "to": "09:20"}),
        ("oi-change", {"from": "09:20", "to": "09:24"}),
        ("live", {"at": "09:20"}),  # replay
    ],
)
def test_a_corrupt_stored_bar_is_a_server_error_naming_the_chain_and_minute(
    client, corrupt, caplog, endpoint, params
):
    with caplog.at_level("ERROR", logger="chains.history.api"):
        response = get(client, endpoint, **params)
    assert response.status_code == 500
    body = response.json()
    assert (body["status"], body["code"]) == ("error", "history_corrupt")
    message = body["message"]
    assert f"NIFTY {EXPIRY.isoformat()}" in message and "09:20" in message
    assert "packed legs are corrupt" not in message  # the detail is for the log, not the client
    assert "database" in message  # what to do
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "09:20" in errors[0].getMessage() and "NIFTY" in errors[0].getMessage()
    assert "packed legs are corrupt" in str(errors[0].exc_info[1].__cause__)


def test_a_corrupt_bar_outside_what_is_asked_does_not_matter(client, corrupt, bars):
    """The chain-level series never reads legs, and other windows never read 09:20's."""
    series = get(client, "history", **{"from": "09:15", "to": "09:24"})
    assert series.status_code == 200
    rows = {r["time"]: r for r in series.json()["data"]["series"]}
    assert rows[corrupt.minute.isoformat()]["spot"] == corrupt.spot  # its figures are intact
    before = get(client, "oi-change", **{"from": "09:15", "to": "09:17"})
    assert before.status_code == 200
    assert before.json()["data"]["to_bar"] == bars[2].minute.isoformat()
    after = get(client, "live", at="09:24")
    assert after.status_code == 200 and after.json()["data"]["as_of"] == bars[-1].minute.isoformat()
