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
