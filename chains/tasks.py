"""Celery tasks of the chains app (thin: record the outcome, call one service)."""

from __future__ import annotations

from celery import shared_task

from .outcomes import REPOPULATE, REPOPULATE_FORCED, record_outcome
from .repopulate import chains_repopulate


@shared_task(name="chains.repopulate_chains")
def repopulate_chains(account: str | None = None, force: bool = False) -> str:
    """Fetch REST option chains where the feed is not live (all tracked chains when ``force``:
    market open and close); ``account`` limits the run to one account. Returns the report;
    raises RepopulateFailed (after recording it) when a chain could not be refreshed."""
    with record_outcome(REPOPULATE_FORCED if force else REPOPULATE) as outcome:
        chains_repopulate(outcome=outcome, account=account, force=force)
    return outcome.detail
