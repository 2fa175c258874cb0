"""Writes of intraday history: minute bars (``history_write``) and retention
(``history_prune``).

On PostgreSQL ``chains_historybar`` is partitioned by day (migration 0002): a day's partition,
``chains_historybar_pYYYYMMDD``, is created by the first write of that day and dropped whole by
retention. Elsewhere (SQLite) it is one table and retention deletes rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from ..models import DailyClose, HistoryBar
from .bars import MinuteBar, pack_legs

logger = logging.getLogger(__name__)

TABLE = HistoryBar._meta.db_table
KEY_FIELDS = ["underlying", "expiry", "day", "minute"]
CHAIN_FIELDS = [
    "spot",
    "forward",
    "atm_strike",
    "atm_iv",
    "straddle",
    "pcr",
    "max_pain",
    "ce_oi",
    "pe_oi",
    "ce_oi_change",
    "pe_oi_change",
]
# A fixed key of the advisory lock writers hold while creating a day's partition.
PARTITION_LOCK = 0x6869_7374  # "hist"


def partition_name(day: date) -> str:
    """The PostgreSQL partition holding ``day``'s bars."""
    return f"{TABLE}_p{day:%Y%m%d}"


def history_write(bars: Sequence[MinuteBar]) -> int:
    """Store ``bars`` in one transaction; returns how many rows were written.

    Idempotent: a bar of a (underlying, expiry, minute) already stored replaces it (the last of
    the same key within ``bars`` wins). Creates the day's partition on PostgreSQL when it is
    missing, and keeps each chain's ``DailyClose`` of the day at its latest bar. Raises the
    database's error (nothing is written then).
    """
    latest: dict[tuple[str, date, datetime], MinuteBar] = {}
    for bar in bars:
        if bar.minute.tzinfo is None or bar.minute.second or bar.minute.microsecond:
            raise ValueError(f"bar minute {bar.minute!r} is not a whole, tz-aware minute")
        latest[(bar.underlying, bar.expiry, bar.minute)] = bar
    if not latest:
        return 0
    rows = [_row(bar) for bar in latest.values()]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _ensure_partitions({row.day for row in rows})
        HistoryBar.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=KEY_FIELDS,
            update_fields=[*CHAIN_FIELDS, "legs"],
        )
        _update_closes(latest.values())
    return len(rows)


def _row(bar: MinuteBar) -> HistoryBar:
    return HistoryBar(
        underlying=bar.underlying,
        expiry=bar.expiry,
        day=bar.day,
        minute=bar.minute,
        legs=pack_legs(bar.legs),
        **{name: getattr(bar, name) for name in CHAIN_FIELDS},
    )


def _ensure_partitions(days: Iterable[date]) -> None:
    with connection.cursor() as cursor:
        for day in sorted(days):
            name = partition_name(day)
            cursor.execute("SELECT to_regclass(%s)", [name])
            if cursor.fetchone()[0] is not None:
                continue
            # Two writers may meet here: the second waits, then finds the partition.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK])
            next_day = day + timedelta(days=1)
            cursor.execute(
                # DDL takes no parameters: the bounds are dates, formatted by isoformat
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{TABLE}" '
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{next_day.isoformat()}')"
            )
            logger.info("History: created partition %s", name)


def _update_closes(bars: Iterable[MinuteBar]) -> None:
    """Each (chain, day)'s ``DailyClose`` is its latest bar written (a late, older bar does not
    replace a newer close)."""
    last: dict[tuple[str, date, date], MinuteBar] = {}
    for bar in bars:
        key = (bar.underlying, bar.expiry, bar.day)
        if key not in last or bar.minute > last[key].minute:
            last[key] = bar
    for (underlying, expiry, day), bar in last.items():
        close = (
            DailyClose.objects.select_for_update()
            .filter(underlying=underlying, expiry=expiry, day=day)
            .first()
        )
        if close is not None and close.minute > bar.minute and close.source == "live":
            continue
        values = {name: getattr(bar, name) for name in CHAIN_FIELDS}
        DailyClose.objects.update_or_create(
            underlying=underlying,
            expiry=expiry,
            day=day,
            defaults={"minute": bar.minute, **values, "source": "live"},
        )


@dataclass(frozen=True)
class PruneReport:
    """What ``history_prune`` removed."""

    oldest_bar_day: date  # the oldest day whose minute bars are kept
    oldest_close_day: date  # the oldest day whose daily closes are kept
    days_dropped: tuple[date, ...] = field(default=())  # PostgreSQL partitions dropped
    bars_deleted: int = 0
    closes_deleted: int = 0

    def summary(self) -> str:
        dropped = ", ".join(d.isoformat() for d in self.days_dropped) or "none"
        return (
            f"history: {self.bars_deleted} minute bars before {self.oldest_bar_day} removed "
            f"(day partitions dropped: {dropped}); {self.closes_deleted} daily closes before "
            f"{self.oldest_close_day} removed"
        )


def oldest_bar_day(today: date) -> date:
    """The oldest day whose minute bars retention keeps (``HISTORY_DAYS`` days, today
    included)."""
    return today - timedelta(days=settings.HISTORY_DAYS - 1)


def oldest_close_day(today: date) -> date:
    """The oldest day whose daily closes retention keeps (``HISTORY_DAILY_DAYS``)."""
    return today - timedelta(days=settings.HISTORY_DAILY_DAYS - 1)


def history_prune(*, today: date) -> PruneReport:
    """Remove minute bars older than ``HISTORY_DAYS`` days (whole day partitions on
    PostgreSQL) and daily closes older than ``HISTORY_DAILY_DAYS``; returns what went."""
    bars_from, closes_from = oldest_bar_day(today), oldest_close_day(today)
    dropped: list[date] = []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            bars_deleted = 0
            with connection.cursor() as cursor:
                for day, name in _partitions(cursor):
                    if day >= bars_from:
                        continue
                    cursor.execute(f'SELECT count(*) FROM "{name}"')  # noqa: S608 (catalog name)
                    bars_deleted += cursor.fetchone()[0]
                    cursor.execute(f'DROP TABLE "{name}"')
                    dropped.append(day)
                    logger.info("History: dropped partition %s", name)
        else:
            bars_deleted, _ = HistoryBar.objects.filter(day__lt=bars_from).delete()
        closes_deleted, _ = DailyClose.objects.filter(day__lt=closes_from).delete()
    return PruneReport(
        oldest_bar_day=bars_from,
        oldest_close_day=closes_from,
        days_dropped=tuple(dropped),
        bars_deleted=bars_deleted,
        closes_deleted=closes_deleted,
    )


def _partitions(cursor: object) -> list[tuple[date, str]]:
    """(day, name) of every day partition of the history table (PostgreSQL)."""
    cursor.execute(  # type: ignore[attr-defined]
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass",
        [TABLE],
    )
    prefix = f"{TABLE}_p"
    out = []
    for (name,) in cursor.fetchall():  # type: ignore[attr-defined]
        if not name.startswith(prefix):
            continue  # not one of ours: retention leaves it alone
        out.append((datetime.strptime(name[len(prefix) :], "%Y%m%d").date(), name))
    return sorted(out)
