"""Persisted chain snapshots and periodic-task outcomes."""

from __future__ import annotations

from django.db import models


class ChainSnapshot(models.Model):
    """The last known state of a chain, persisted by the feed worker (periodically and on
    shutdown) and by the REST repopulation task: what pages serve, labelled by ``as_of``,
    when live data is unavailable."""

    account = models.ForeignKey(
        "brokers.BrokerAccount", on_delete=models.CASCADE, related_name="snapshots"
    )
    underlying = models.CharField(max_length=32)
    expiry = models.DateField()
    seq = models.PositiveBigIntegerField()
    as_of = models.DateTimeField()
    data = models.JSONField()
    saved_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "underlying", "expiry"], name="chain_snapshot_unique"
            )
        ]
        ordering = ["underlying", "expiry"]

    def __str__(self) -> str:
        return f"{self.underlying} {self.expiry} as of {self.as_of:%Y-%m-%d %H:%M}"


class TaskOutcome(models.Model):
    """The last run of a periodic task: when, whether it worked, and what it did or why not."""

    name = models.CharField(max_length=64, unique=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        state = {True: "ok", False: "failed", None: "running"}[self.ok]
        return f"{self.name}: {state}"


class ChainFigures(models.Model):
    """The chain-level figures of a minute bar (``chains.history.bars.MinuteBar``; the names
    of ``chains.history.store.CHAIN_FIELDS``), shared by ``HistoryBar`` and ``DailyClose``.
    None where a figure was not known at that minute, never 0."""

    spot = models.FloatField(null=True)
    forward = models.FloatField(null=True)
    atm_strike = models.FloatField(null=True)
    atm_iv = models.FloatField(null=True)
    straddle = models.FloatField(null=True)
    pcr = models.FloatField(null=True)
    max_pain = models.FloatField(null=True)
    ce_oi = models.BigIntegerField(null=True)
    pe_oi = models.BigIntegerField(null=True)
    ce_oi_change = models.BigIntegerField(null=True)
    pe_oi_change = models.BigIntegerField(null=True)

    class Meta:
        abstract = True


class HistoryBar(ChainFigures):
    """One chain at one minute (``chains.history.bars.MinuteBar``), written by the feed
    worker through ``chains.history.store.history_write``. ``legs`` holds every leg packed
    (``bars.pack_legs``). ``day`` is the IST day of ``minute``: on PostgreSQL the table is
    partitioned by it (one partition per day, dropped whole by retention), so it is part of
    the primary key."""

    pk = models.CompositePrimaryKey("underlying", "expiry", "day", "minute")
    underlying = models.CharField(max_length=32)
    expiry = models.DateField()
    day = models.DateField()
    minute = models.DateTimeField()
    legs = models.BinaryField()

    class Meta:
        ordering = ["underlying", "expiry", "minute"]

    def __str__(self) -> str:
        return f"{self.underlying} {self.expiry} at {self.minute:%Y-%m-%d %H:%M}"


class DailyClose(ChainFigures):
    """A chain's last minute bar of a day (its chain-level figures), kept
    ``HISTORY_DAILY_DAYS`` for IV rank (which takes, each day, the nearest expiry's)."""

    underlying = models.CharField(max_length=32)
    expiry = models.DateField()
    day = models.DateField()
    minute = models.DateTimeField()  # the bar's minute: the day's last one written
    # Who wrote the row: the feed's recording ("live") or ``backfillhistory`` from a broker's
    # historical API ("backfill:<broker kind>"); a backfill never replaces a live day.
    source = models.CharField(max_length=32, default="live")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["underlying", "expiry", "day"], name="daily_close_unique"
            )
        ]
        indexes = [models.Index(fields=["underlying", "day"], name="daily_close_day")]
        ordering = ["underlying", "day", "expiry"]

    def __str__(self) -> str:
        return f"{self.underlying} {self.expiry} close of {self.day}"
