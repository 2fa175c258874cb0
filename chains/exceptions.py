"""Exceptions of the chains app."""

from __future__ import annotations

from datetime import date, datetime


class SnapshotContention(RuntimeError):
    """A chain snapshot kept changing while a REST merge tried to replace it."""


class RepopulateFailed(RuntimeError):
    """A REST repopulation run could not refresh every chain it should (the message lists them)."""


class ContractError(ValueError):
    """A record from another process lacks a key its type requires (``chains.contracts``)."""


class BackfillError(ValueError):
    """A history backfill cannot run as asked (the message says what to do)."""


class HistoryCorrupt(RuntimeError):
    """A stored minute bar of intraday history cannot be read (its packed legs are corrupt)."""

    def __init__(self, *, underlying: str, expiry: date, minute: datetime) -> None:
        super().__init__(
            f"The stored {minute:%Y-%m-%d %H:%M} IST bar of {underlying} {expiry.isoformat()} "
            "cannot be read: an admin must check the database (deleting that row of "
            "chains_historybar makes the minute a gap)."
        )
        self.underlying, self.expiry, self.minute = underlying, expiry, minute
