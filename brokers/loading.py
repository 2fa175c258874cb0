"""Loading an account's instrument master into the database (service).

``instruments_load`` replaces an account's instruments **atomically**: rows are upserted in
batches inside one transaction, then every instrument the new file no longer lists is removed.
Any malformed row, a duplicate id, an empty result, or the removal of an index a tracked chain
uses aborts the transaction and leaves the previous master untouched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any, BinaryIO

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, ProtectedError

from . import download
from .exceptions import InstrumentFileError, InstrumentLoadError, InstrumentRefreshFailed
from .masters import InstrumentRecord, KeepFilter, master_content
from .models import BrokerAccount, Instrument
from .registry import get_spec

logger = logging.getLogger(__name__)

BATCH_SIZE = 2000
MAX_CONTENT_SETTING = "INSTRUMENT_MASTER_MAX_MB"
_UPDATE_FIELDS = [
    "segment",
    "trading_symbol",
    "kind",
    "underlying",
    "expiry",
    "strike",
    "option_type",
    "lot_size",
    "tick_size",
    "exchange_token",
    "load_generation",
]


@dataclass
class LoadReport:
    """What a load did. ``counts`` maps (underlying, kind, expiry) → instruments kept."""

    account: str
    source: str
    kept: int = 0
    created: int = 0
    updated: int = 0
    removed: int = 0
    seconds: float = 0.0
    counts: Counter[tuple[str, str, date | None]] = field(default_factory=Counter)

    def summary_lines(self) -> list[str]:
        """Human-readable lines: totals, then one per underlying/expiry."""
        lines = [
            f"{self.account}: {self.kept} instruments from {self.source} in {self.seconds:.1f}s "
            f"({self.created} new, {self.updated} updated, {self.removed} removed)"
        ]
        for (underlying, kind, expiry), count in sorted(
            self.counts.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or date.min)
        ):
            when = expiry.isoformat() if expiry else "-"
            lines.append(f"  {underlying:<12} {kind:<7} {when:<10} {count:>6}")
        return lines


class CountingReader(io.RawIOBase):
    """A read-only raw stream over ``raw`` that reports bytes read (for progress bars).

    Closing it leaves ``raw`` open: the caller owns the file.
    """

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None]) -> None:
        super().__init__()
        self._raw = raw
        self._on_read = on_read

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self._on_read(count)
        return count

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def counting(raw: BinaryIO, on_read: Callable[[int], None]) -> BinaryIO:
    """Return a buffered binary stream over ``raw`` that calls ``on_read(n)`` per read."""
    return io.BufferedReader(CountingReader(raw, on_read), buffer_size=256 * 1024)


def _batches(records: Iterator[InstrumentRecord], size: int) -> Iterator[list[InstrumentRecord]]:
    batch: list[InstrumentRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def instruments_load(
    *,
    account: BrokerAccount,
    stream: BinaryIO,
    source_name: str,
    keep: KeepFilter,
    batch_size: int = BATCH_SIZE,
) -> LoadReport:
    """Parse ``stream`` with the account's broker parser and replace its instruments.

    ``stream`` may be gzip (detected by content); what it holds may not exceed
    settings.INSTRUMENT_MASTER_MAX_BYTES. Returns a LoadReport. Raises InstrumentFileError (row
    number + reason) for a malformed or oversized file and InstrumentLoadError when the result
    would break tracked chains or is empty; in both cases nothing was changed.
    """
    spec = get_spec(account.kind)
    report = LoadReport(account=account.name, source=source_name)
    started = time.monotonic()
    seen: dict[str, int] = {}  # broker id → its row
    content = master_content(
        stream, max_bytes=settings.INSTRUMENT_MASTER_MAX_BYTES, setting=MAX_CONTENT_SETTING
    )
    with transaction.atomic():
        existing = Instrument.objects.filter(account=account)
        before = existing.count()
        generation = (existing.aggregate(g=Max("load_generation"))["g"] or 0) + 1
        records = spec.parse_master(content, source_name, keep)
        upsert = _Upserter(account.pk, generation)
        for batch in _batches(records, batch_size):
            for record in batch:
                if record.broker_id in seen:
                    raise InstrumentFileError(
                        f"instrument id {record.broker_id} appears more than once "
                        f"(first at row {seen[record.broker_id]})",
                        row=record.row,
                    )
                seen[record.broker_id] = record.row
                report.counts[(record.underlying, record.kind, record.expiry)] += 1
            upsert(batch)
        report.kept = len(seen)
        if report.kept == 0:
            raise InstrumentLoadError(
                f"No instruments kept from {source_name}: the file lists no index, index future "
                "or index option the filters allow. The previous master is unchanged."
            )
        try:
            report.removed, _ = (
                Instrument.objects.filter(account=account)
                .exclude(load_generation=generation)
                .delete()
            )
        except ProtectedError as exc:
            used = sorted({str(obj) for obj in exc.protected_objects})
            raise InstrumentLoadError(
                f"The new master no longer lists the index instrument of tracked chain(s) "
                f"{', '.join(used)}. Fix the file, or change those chains in admin → Tracked "
                "chains first. The previous master is unchanged."
            ) from None
        report.updated = before - report.removed  # existing ids the new file lists again
        report.created = report.kept - report.updated
    report.seconds = time.monotonic() - started
    logger.info(
        "Loaded %d instruments for account %s from %s (%d new, %d updated, %d removed)",
        report.kept,
        account.name,
        source_name,
        report.created,
        report.updated,
        report.removed,
    )
    return report


class _Upserter:
    """Batched ``INSERT … ON CONFLICT (account, broker id) DO UPDATE`` with executemany.

    The ORM's bulk_create spends most of a 250,000-row load compiling SQL per batch; one
    prepared statement run with executemany is several times faster. The statement is the
    same on SQLite (3.24+) and PostgreSQL.
    """

    def __init__(self, account_id: int, generation: int) -> None:
        meta = Instrument._meta
        self.columns = [
            "account_id",
            "broker_id",
            *[meta.get_field(f).column for f in _UPDATE_FIELDS],
        ]
        quote = connection.ops.quote_name
        names = ", ".join(quote(c) for c in self.columns)
        marks = ", ".join(["%s"] * len(self.columns))
        updates = ", ".join(
            f"{quote(c)} = EXCLUDED.{quote(c)}"
            for c in self.columns
            if c not in {"account_id", "broker_id"}
        )
        # Only identifiers from the model's own metadata are interpolated; values are parameters.
        self.sql = (
            f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES ({marks}) "  # noqa: S608
            f"ON CONFLICT ({quote('account_id')}, {quote('broker_id')}) DO UPDATE SET {updates}"
        )
        self.account_id = account_id
        self.generation = generation
        self.decimal = connection.ops.adapt_decimalfield_value
        self.date = connection.ops.adapt_datefield_value

    def __call__(self, batch: list[InstrumentRecord]) -> None:
        decimal, day = self.decimal, self.date
        params = [
            (
                self.account_id,
                r.broker_id,
                r.segment,
                r.trading_symbol[:128],
                r.kind,
                r.underlying,
                day(r.expiry),
                decimal(r.strike, 12, 2) if r.strike is not None else None,
                r.option_type,
                r.lot_size,
                decimal(r.tick_size, 10, 4) if r.tick_size is not None else None,
                r.exchange_token,
                self.generation,
            )
            for r in batch
        ]
        with connection.cursor() as cursor:
            cursor.executemany(self.sql, params)


def download_master(
    url: str, dest: IO[bytes], *, on_progress: Callable[[int, int | None], None] | None = None
) -> int:
    """Stream ``url`` into ``dest`` within the download limits (``brokers.download``); returns
    bytes written. Raises InstrumentLoadError saying why and what to do."""
    return download.download(
        url,
        dest,
        max_bytes=settings.INSTRUMENT_MASTER_MAX_DOWNLOAD_BYTES,
        on_progress=on_progress,
    )


@contextlib.contextmanager
def open_master(
    *,
    path: Path | None = None,
    url: str | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Iterator[tuple[BinaryIO, str]]:
    """Yield (seekable binary stream, source name) for a local file or a downloaded URL.

    The name keeps the file's suffix (``.csv``, ``.json``, ``.json.gz``) for the parsers. A
    download is refused past INSTRUMENT_MASTER_MAX_DOWNLOAD_BYTES (``download_master``).
    """
    if (path is None) == (url is None):
        raise ValueError("give exactly one of path or url")
    if path is not None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InstrumentLoadError(f"Cannot open {path}: {exc.strerror}.") from exc
        with handle:
            yield handle, str(path)
        return
    assert url is not None
    with tempfile.TemporaryFile(prefix="optionsite-master-") as temp:
        download_master(url, temp, on_progress=on_progress)
        yield temp, url.split("?", 1)[0]


def settings_keep_filter() -> KeepFilter:
    """The rows to keep per the INSTRUMENT_KINDS and INSTRUMENT_UNDERLYINGS settings."""
    return KeepFilter(
        kinds=frozenset(settings.INSTRUMENT_KINDS),
        underlyings=frozenset(settings.INSTRUMENT_UNDERLYINGS) or None,
    )


def masters_refresh(*, account: str | None = None) -> list[LoadReport]:
    """Download and load the master of ``account`` (default: every enabled account) from its
    master URL, each all or nothing. Returns the reports of the loads that worked.

    Raises InstrumentRefreshFailed, after trying every account, naming each that failed and
    why (its previous master is unchanged); BrokerAccount.DoesNotExist for an unknown name.
    """
    if account is not None:
        accounts = [BrokerAccount.objects.get(name=account)]
    else:
        accounts = list(BrokerAccount.objects.filter(enabled=True).order_by("name"))
    keep = settings_keep_filter()
    reports, failures = [], []
    for item in accounts:
        try:
            with open_master(url=item.effective_master_url()) as (stream, name):
                reports.append(
                    instruments_load(account=item, stream=stream, source_name=name, keep=keep)
                )
        except (InstrumentFileError, InstrumentLoadError) as exc:
            logger.error("Instrument master of %s not loaded: %s", item.name, exc)
            failures.append(f"{item.name}: {exc} (the previous master is unchanged)")
    if failures:
        done = "; ".join(r.summary_lines()[0] for r in reports)
        raise InstrumentRefreshFailed("; ".join(failures) + (f". Loaded: {done}" if done else ""))
    return reports
