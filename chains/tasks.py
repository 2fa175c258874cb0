"""The Celery tasks (thin: record the outcome, call one service).

Every periodic task lives here, the brokers' too: the outcome recorder is the chains app's
(the status page shows it), and ``brokers/`` imports nothing from ``chains/``. Task names are
stable (the beat schedule and queued messages name them).
"""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from brokers.exchange import IST
from brokers.loading import masters_refresh
from brokers.tokens import tokens_check

from .history.store import history_prune
from .outcomes import (
    CHECK_TOKENS,
    PRUNE_HISTORY,
    REFRESH_INSTRUMENTS,
    REPOPULATE,
    REPOPULATE_FORCED,
    record_outcome,
)
from .repopulate import chains_repopulate


@shared_task(name="chains.repopulate_chains")
def repopulate_chains(
    account: str | None = None, force: bool = False, calendar: bool = False
) -> str:
    """Fetch REST option chains where the feed is not live (all tracked chains when ``force``:
    market open and close); ``account`` limits the run to one account; ``calendar`` (set by
    the beat schedule) skips chains whose exchange is closed (weekend, holiday, outside the
    session). Returns the report; raises RepopulateFailed (after recording it) when a chain
    could not be refreshed."""
    with record_outcome(REPOPULATE_FORCED if force else REPOPULATE) as outcome:
        chains_repopulate(outcome=outcome, account=account, force=force, calendar=calendar)
    return outcome.detail


@shared_task(name="brokers.check_tokens")
def check_tokens(account: str | None = None) -> str:
    """Validate every enabled account's token (or ``account``'s), renew DhanHQ tokens before
    they expire, mark expired ones. Returns the report; raises TokenCheckFailed (after
    recording it) when an account needs a person."""
    with record_outcome(CHECK_TOKENS) as outcome:
        tokens_check(outcome=outcome, account=account)
    return outcome.detail


@shared_task(name="brokers.refresh_instruments")
def refresh_instruments(account: str | None = None) -> str:
    """Download and load every enabled account's instrument master (or ``account``'s).
    Returns the report; raises InstrumentRefreshFailed (after recording it) when one failed."""
    with record_outcome(REFRESH_INSTRUMENTS) as outcome:
        for report in masters_refresh(account=account):
            outcome.add(report.summary_lines()[0])
    return outcome.detail


@shared_task(name="chains.prune_history")
def prune_history() -> str:
    """Drop intraday history older than HISTORY_DAYS (whole days) and daily closes older than
    HISTORY_DAILY_DAYS, counted from today in exchange time. Returns the report."""
    with record_outcome(PRUNE_HISTORY) as outcome:
        report = history_prune(today=datetime.now(IST).date())
        outcome.add(report.summary())
    return outcome.detail
