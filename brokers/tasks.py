"""Celery tasks of the brokers app (thin: record the outcome, call one service)."""

from __future__ import annotations

from celery import shared_task

from chains.outcomes import CHECK_TOKENS, REFRESH_INSTRUMENTS, record_outcome

from .loading import masters_refresh
from .tokens import tokens_check


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
