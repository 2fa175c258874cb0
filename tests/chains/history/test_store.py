"""Storing minute bars: upserts, the daily close, day partitions (PostgreSQL) and retention."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from django.db import connection

from chains.history.bars import unpack_legs
from chains.history.store import history_prune, history_write, partition_name
from chains.models import DailyClose, HistoryBar

from .books import DAY, OPEN, day_of_bars, make_book

pytestmark = pytest.mark.django_db(transaction=True)


def test_bars_are_stored_one_row_per_chain_minute_with_their_legs():
    bars = day_of_bars(make_book(), 5)
    assert history_write(bars) == 5
    rows = list(HistoryBar.objects.order_by("minute"))
    assert [r.minute for r in rows] == [b.minute for b in bars]
    for row, bar in zip(rows, bars, strict=True):
        assert row.day == DAY
        assert (row.spot, row.atm_iv, row.pcr, row.ce_oi) == (
            bar.spot,
            bar.atm_iv,
            bar.pcr,
            bar.ce_oi,
        )
        assert unpack_legs(bytes(row.legs)) == bar.legs


def test_writing_a_minute_again_replaces_it():
    bars = day_of_bars(make_book(), 3)
    history_write(bars)
    changed = replace(bars[1], spot=1.5, pcr=None)
    assert history_write([changed]) == 1
    assert HistoryBar.objects.count() == 3
    row = HistoryBar.objects.get(minute=bars[1].minute)
    assert (row.spot, row.pcr) == (1.5, None)


def test_same_minute_twice_in_one_batch_keeps_the_last():
    bar = day_of_bars(make_book(), 1)[0]
    assert history_write([bar, replace(bar, spot=2.0)]) == 1
    assert HistoryBar.objects.get().spot == 2.0


def test_nothing_to_write_writes_nothing():
    assert history_write([]) == 0


def test_naive_or_partial_minute_is_refused():
    bar = day_of_bars(make_book(), 1)[0]
    with pytest.raises(ValueError, match="whole, tz-aware minute"):
        history_write([replace(bar, minute=bar.minute + timedelta(seconds=5))])
    with pytest.raises(ValueError, match="whole, tz-aware minute"):
        history_write([replace(bar, minute=bar.minute.replace(tzinfo=None))])
    assert HistoryBar.objects.count() == 0


def test_daily_close_is_the_latest_bar_of_the_day_per_chain():
    near = day_of_bars(make_book(), 4)
    far = day_of_bars(make_book(expiry=date(2026, 12, 15)), 2)
    history_write(near[:2] + far)
    history_write(near[2:])
    history_write([near[0]])  # a late, older bar does not move the close back
    closes = {c.expiry: c for c in DailyClose.objects.all()}
    assert set(closes) == {near[0].expiry, far[0].expiry}
    assert closes[near[0].expiry].minute == near[-1].minute
    assert closes[near[0].expiry].atm_iv == near[-1].atm_iv
    assert closes[far[0].expiry].minute == far[-1].minute
    assert closes[near[0].expiry].day == DAY


def _write_days(days: list[date]) -> None:
    book = make_book(strikes=3)
    for day in days:
        start = OPEN.replace(year=day.year, month=day.month, day=day.day)
        history_write(day_of_bars(book, 2, start=start))


def test_prune_keeps_history_days_and_daily_closes_for_their_own_span(settings):
    settings.HISTORY_DAYS = 2
    settings.HISTORY_DAILY_DAYS = 3
    days = [DAY - timedelta(days=i) for i in (3, 2, 1, 0)]
    _write_days(days)
    report = history_prune(today=DAY)
    assert report.oldest_bar_day == DAY - timedelta(days=1)
    assert report.bars_deleted == 4
    assert sorted(set(HistoryBar.objects.values_list("day", flat=True))) == days[2:]
    assert report.closes_deleted == 1
    assert sorted(DailyClose.objects.values_list("day", flat=True)) == days[1:]
    assert "4 minute bars before 2026-11-30 removed" in report.summary()
    assert history_prune(today=DAY).bars_deleted == 0


def _partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'chains_historybar'::regclass"
        )
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.postgres
def test_postgres_table_is_partitioned_by_day_and_prune_drops_whole_days(settings):
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's: run with DATABASE_URL=postgres://…")
    settings.HISTORY_DAYS = 2
    days = [DAY - timedelta(days=i) for i in (2, 1, 0)]
    _write_days(days)
    _write_days(days[-1:])  # the partition exists already
    assert _partitions() == {partition_name(d) for d in days}
    assert partition_name(DAY) == "chains_historybar_p20261201"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partition_name(DAY)}")  # noqa: S608 (our name)
        assert cursor.fetchone()[0] == 2
    report = history_prune(today=DAY)
    assert report.days_dropped == (days[0],)
    assert report.bars_deleted == 2
    assert _partitions() == {partition_name(d) for d in days[1:]}
    assert HistoryBar.objects.count() == 4
    _write_days([days[0]])  # a dropped day's partition is made again when written
    assert partition_name(days[0]) in _partitions()


def test_prune_task_records_its_outcome(settings):
    from chains.models import TaskOutcome
    from chains.tasks import PRUNE_HISTORY, prune_history

    settings.HISTORY_DAYS = 1
    _write_days([date(2020, 1, 6)])
    detail = prune_history()
    outcome = TaskOutcome.objects.get(name=PRUNE_HISTORY)
    assert outcome.ok is True and outcome.detail == detail
    assert "2 minute bars before" in detail
    assert not HistoryBar.objects.exists()
