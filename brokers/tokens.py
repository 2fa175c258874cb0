"""Broker token lifecycle: the service behind the ``check tokens`` task.

Per enabled account (``token_check``):

- no credentials → ``token_missing`` (or ``error`` for a missing client id / API secret);
- a token the broker does not renew (``token.renewable`` False in ``brokers.registry``, e.g.
  Upstox's, which end at 03:30 IST daily) past ``token_expires_at`` → ``token_expired``: an
  admin must replace it; the broker is not asked;
- otherwise the broker's profile call validates the token. A permanent refusal sets the status
  it means (``token_expired``, ``auth_failed``, ``error``) with the broker's message; a
  transient failure keeps the status and records the error;
- a token the broker renews (DhanHQ's, with RenewToken) that expires within
  ``DHAN_RENEW_MARGIN_HOURS`` (by the profile's validity or the stored expiry, whichever is
  earlier) is renewed with ``FeedAdapter.renew_token`` and the new token and expiry stored.
  A failed renewal sets ``error`` with what to do while the old token lasts.

Every outcome updates ``status``, ``last_error`` and ``last_checked_at`` — unless the token was
replaced while it was being checked (then the new token is left for the next check). A renewal
and a change of status (e.g. the token expired or was refused) are written to the account's
admin history, attributed to the system user (``brokers.audit``): no person did them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .accounts import config_of, load_account
from .adapters import RenewedToken, account_status_for, adapter_for
from .audit import account_history
from .exceptions import BrokerError, FeedConfigError, TokenCheckFailed
from .models import AccountStatus, BrokerAccount
from .registry import get_spec
from .secret import Secret

logger = logging.getLogger(__name__)

ADMIN = "admin → Broker accounts"


@dataclass(frozen=True)
class Probe:
    """What the broker said: the token's validity, and a renewal's result when one was due."""

    validity: datetime | None
    renewed: RenewedToken | None = None
    renew_error: BrokerError | None = None


@dataclass(frozen=True)
class Verdict:
    """The result of one account's check: ``ok`` False means a person may need to act."""

    ok: bool
    line: str


class Report(Protocol):
    """Where a service reports what it did, one line at a time (a task's recorded outcome)."""

    def add(self, line: str) -> None: ...


def tokens_check(*, outcome: Report, account: str | None = None) -> None:
    """Check ``account`` (default: every enabled account); one report line each in ``outcome``.

    Raises TokenCheckFailed, after every account was checked and recorded, naming the accounts
    whose token is missing, expired, refused, could not be checked or could not be renewed.
    """
    names = (
        [account]
        if account is not None
        else list(BrokerAccount.objects.filter(enabled=True).values_list("name", flat=True))
    )
    if not names:
        outcome.add("No enabled broker account.")
    failed = []
    for name in names:
        verdict = token_check(name)
        outcome.add(verdict.line)
        if not verdict.ok:
            failed.append(verdict.line)
    if failed:
        raise TokenCheckFailed(f"{len(failed)} account(s) need attention: " + " | ".join(failed))


def token_check(name: str, *, now: datetime | None = None) -> Verdict:
    """Check (and when due renew) the token of account ``name``; store what was found."""
    now = now or timezone.now()
    try:
        account = load_account(name)
    except FeedConfigError as exc:
        return _missing(name, str(exc), now)
    token = account.access_token
    spec = get_spec(account.kind)
    label = spec.label
    if not spec.token.renewable and account.token_expired(now=now):
        assert account.token_expires_at is not None
        message = (
            f"The {label} access token of '{name}' expired at {_ist(account.token_expires_at)} "
            f"({label} tokens {spec.token.lifetime}): an admin must "
            f"{spec.token.how_to_replace(admin=ADMIN, name=name)}."
        )
        return _record(
            name,
            token,
            now,
            False,
            status=AccountStatus.TOKEN_EXPIRED,  # type: ignore[arg-type]  # a TextChoices member is a str
            error=message,
        )
    margin = timedelta(hours=settings.DHAN_RENEW_MARGIN_HOURS)
    try:
        probe = asyncio.run(_probe(account, margin=margin, now=now))
    except BrokerError as exc:
        if not exc.permanent:
            message = f"The {label} token check failed, retried at the next check: {exc}"
            return _record(name, token, now, False, error=message)
        status = account_status_for(exc) or AccountStatus.ERROR
        return _record(
            name,
            token,
            now,
            False,
            status=status,  # type: ignore[arg-type]  # a TextChoices member is a str
            error=str(exc),
        )
    if probe.renewed is not None:
        return _renewed(name, label, token, probe.renewed, now)
    expires = probe.validity or account.token_expires_at
    if probe.renew_error is not None:
        message = (
            f"Renewing the {label} access token of '{name}' failed: {probe.renew_error}. The "
            f"current token works until {_ist(expires)}; renewal is tried again at every "
            f"check. If it keeps failing, {spec.token.how_to_replace(admin=ADMIN, name=name)} "
            "before then."
        )
        status, error, line = AccountStatus.ERROR, message, None
    else:
        until = f", valid until {_ist(expires)}" if expires else ""
        status, error, line = AccountStatus.OK, "", f"{name}: {label} token accepted{until}"
    return _record(
        name,
        token,
        now,
        status == AccountStatus.OK,
        status=status,  # type: ignore[arg-type]  # a TextChoices member is a str
        error=error,
        line=line,
        token_expires_at=expires,
    )


async def _probe(account: BrokerAccount, *, margin: timedelta, now: datetime) -> Probe:
    """Ask the broker's profile; renew a token that expires within ``margin`` when the
    broker renews tokens (``token.renewable`` in the registry).

    Raises BrokerError when the profile call fails.
    """
    adapter = adapter_for(config_of(account))
    try:
        validity = await adapter.check_token()
        earliest = min(
            (t for t in (validity, account.token_expires_at) if t is not None), default=None
        )
        renewable = get_spec(account.kind).token.renewable
        if not renewable or earliest is None or earliest - now > margin:
            return Probe(validity)
        try:
            return Probe(validity, renewed=await adapter.renew_token())
        except BrokerError as exc:
            return Probe(validity, renew_error=exc)
    finally:
        await adapter.aclose()


def _missing(name: str, message: str, now: datetime) -> Verdict:
    account = BrokerAccount.objects.filter(name=name).first()
    if account is None or not account.enabled:  # nothing to record on it
        return Verdict(False, f"{name}: {message}")
    status = AccountStatus.TOKEN_MISSING if not account.has_token else AccountStatus.ERROR
    return _record(
        name,
        account.access_token,
        now,
        False,
        status=status,  # type: ignore[arg-type]  # a TextChoices member is a str
        error=message,
    )


def _renewed(name: str, label: str, old: Secret, token: RenewedToken, now: datetime) -> Verdict:
    with transaction.atomic():
        account = BrokerAccount.objects.select_for_update().get(name=name)
        if account.access_token != old:
            return _replaced(name)
        account.set_access_token(token.access_token, expires_at=token.expires_at)
        account.status, account.last_error, account.last_checked_at = AccountStatus.OK, "", now
        account.save()
        account_history(
            account=account,
            message=f"Token check: renewed the {label} access token, valid until "
            f"{_ist(token.expires_at)}.",
        )
    logger.info("Renewed the %s access token of %s (valid until %s)", label, name, token.expires_at)
    return Verdict(True, f"{name}: {label} token renewed, valid until {_ist(token.expires_at)}")


def _record(
    name: str,
    checked: Secret,
    now: datetime,
    ok: bool,
    *,
    error: str,
    status: str | None = None,
    line: str | None = None,
    **changes: Any,
) -> Verdict:
    """Store the check's result on the account unless its token changed meanwhile.

    ``status`` None keeps the status (a transient failure); ``changes`` are more fields.
    """
    with transaction.atomic():
        account = BrokerAccount.objects.select_for_update().get(name=name)
        if account.access_token != checked:
            return _replaced(name)
        if status is not None and status != account.status:
            before = account.get_status_display()
            account.status = status
            account_history(
                account=account,
                message=f"Token check: status {before} → {account.get_status_display()}"
                + (f": {error}" if error else "."),
            )
        account.last_error = error[:2000]
        account.last_checked_at = now
        for field, value in changes.items():
            setattr(account, field, value)
        account.save(update_fields=["status", "last_error", "last_checked_at", *changes])
    if error:
        logger.warning("Token check of %s: %s", name, error)
    return Verdict(ok, line or f"{name}: {error}")


def _replaced(name: str) -> Verdict:
    return Verdict(True, f"{name}: the token was replaced during the check; checked next time")


def _ist(moment: datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return timezone.localtime(moment).strftime("%d %b %Y %H:%M %Z")
