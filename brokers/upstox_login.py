"""Upstox's daily login from admin: the OAuth dialog and callback, and the v3 token request
with its notifier webhook (service functions; the views only parse and render).

The OAuth ``state`` is signed (Django's signing with its own salt), expires in minutes, names
the account, and carries a nonce kept in the admin's session that the callback removes, so a
state works once, in the session that started the login, for the account it names.
Nothing is stored unless the broker accepted the code; tokens never reach a message or log.

The notifier accepts a token only for a pending :class:`~brokers.models.TokenRequest` (made
from admin, not yet consumed, within the approval window the broker gave), once, and only a
token that is fresh (issued at most ``NOTIFIER_MAX_TOKEN_AGE`` ago, not expired) and newer
than the stored one. Its path secret is stored only as a SHA-256 hash; a refusal changes
nothing on the account. Each outcome is written to the account's admin history.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from .audit import account_history
from .exceptions import BrokerError, EndpointRefused, LoginError, NotifierRefused
from .models import AccountStatus, BrokerAccount, BrokerKind, TokenRequest, notifier_secret_hash
from .secret import Secret
from .upstox.answers import (
    UpstoxNotifierToken,
    UpstoxProfile,
    UpstoxToken,
    UpstoxTokenRequest,
    parse_notifier_payload,
)
from .upstox.rest import UpstoxRestClient

logger = logging.getLogger(__name__)

STATE_SALT = "optionsite.brokers.upstox-login"
STATE_MAX_AGE = 600  # seconds between clicking "Log in to Upstox" and coming back
SESSION_KEY = "upstox_login_nonces"
MAX_PENDING = 5
# The notifier refuses a token issued longer ago than this (a delivery takes seconds after the
# approval), or issued more than NOTIFIER_CLOCK_SKEW in the future or before its request.
NOTIFIER_MAX_TOKEN_AGE = timedelta(minutes=5)
NOTIFIER_CLOCK_SKEW = timedelta(minutes=1)
# A token request stays pending until the authorization_expiry Upstox answers with, at most
# this long, so that a wrong answer cannot keep the notifier open for days.
TOKEN_REQUEST_MAX_WINDOW = timedelta(hours=1)
UNKNOWN_ADDRESS = "unknown notifier address"


def redirect_uri() -> str:
    """The redirect URI to register with Upstox (built from PUBLIC_BASE_URL)."""
    return settings.PUBLIC_BASE_URL + reverse("upstox-callback")


def notifier_url(secret: str) -> str:
    """The notifier URL with path secret ``secret`` (only shown once, when it is created)."""
    return settings.PUBLIC_BASE_URL + reverse("upstox-notifier", args=[secret])


def rotate_notifier(account: BrokerAccount, *, user: Any) -> str:
    """Give the account a new notifier URL, save it, write the history entry naming ``user``,
    and return the URL — the only time it is available: only its secret's hash is stored.
    Raises LoginError for an account that is not an Upstox one."""
    if account.kind != BrokerKind.UPSTOX:
        raise LoginError(f"'{account.name}' is not an Upstox account: it has no notifier URL.")
    secret = account.rotate_notifier_secret()
    account.save(update_fields=["notifier_secret_hash", "updated_at"])
    account_history(
        account=account,
        user=user,
        message="Created a new Upstox notifier URL (the previous one no longer works): "
        "register it with the Upstox app.",
    )
    return notifier_url(secret)


def _client(account: BrokerAccount, *, token: bool = False) -> UpstoxRestClient:
    """A REST client of the account's REST URL; LoginError (nothing sent) when that URL is
    refused by BROKER_HOST_ALLOWLIST or the https rule (brokers.endpoints)."""
    from .exceptions import EndpointRefused

    try:
        base_url = account.effective_rest_base_url()
    except EndpointRefused as exc:
        raise LoginError(f"Account '{account.name}': {exc.message} Nothing was sent.") from None
    return UpstoxRestClient(base_url, access_token=account.access_token if token else None)


def _upstox(account_id: int) -> BrokerAccount:
    account = BrokerAccount.objects.filter(pk=account_id, kind=BrokerKind.UPSTOX).first()
    if account is None:
        raise LoginError(f"There is no Upstox account with id {account_id}.")
    return account


def start_login(request: HttpRequest, account_id: int) -> str:
    """The broker's authorization-dialog URL for the account; the state's nonce is put in
    the session. Raises LoginError when the account cannot log in (says what is missing)."""
    account = _upstox(account_id)
    missing = account.missing_static_credentials()
    if missing:
        raise LoginError(
            f"Account '{account.name}' has no {' and no '.join(missing)}: enter "
            f"{' and '.join(missing)} first."
        )
    nonce = secrets.token_urlsafe(16)
    pending = request.session.get(SESSION_KEY, [])[-(MAX_PENDING - 1) :]
    request.session[SESSION_KEY] = [*pending, nonce]
    state = signing.dumps({"account": account.pk, "nonce": nonce}, salt=STATE_SALT)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": account.client_id,
            "redirect_uri": redirect_uri(),
            "state": state,
        }
    )
    return f"{account.effective_login_base_url()}/v2/login/authorization/dialog?{query}"


def _account_from_state(request: HttpRequest, state: str) -> BrokerAccount:
    try:
        payload = signing.loads(state, salt=STATE_SALT, max_age=STATE_MAX_AGE)
    except signing.SignatureExpired:
        raise LoginError("This Upstox login took longer than 10 minutes: start it again.") from None
    except signing.BadSignature:
        raise LoginError(
            "The Upstox login came back with a state this site did not issue: start it again "
            "from admin → Broker accounts."
        ) from None
    pending = request.session.get(SESSION_KEY, [])
    nonce = payload.get("nonce") if isinstance(payload, dict) else None
    if nonce not in pending:
        raise LoginError(
            "This Upstox login was already completed or was started in another browser "
            "session: start it again from admin → Broker accounts."
        )
    request.session[SESSION_KEY] = [n for n in pending if n != nonce]  # single use
    return _upstox(int(payload["account"]))


def account_for_state(state: str) -> BrokerAccount | None:
    """The account a (validly signed) state names, for redirecting back; None otherwise."""
    try:
        payload = signing.loads(state, salt=STATE_SALT)
    except signing.BadSignature:
        return None
    return BrokerAccount.objects.filter(pk=payload.get("account"), kind=BrokerKind.UPSTOX).first()


def complete_login(
    request: HttpRequest, *, code: str | None, state: str | None, error: str | None
) -> BrokerAccount:
    """Validate the callback and exchange the code; store the token (encrypted) with its
    03:30 IST expiry. Returns the account. Raises LoginError (nothing stored) on a denied
    login, a bad/replayed/expired state, or a broker refusal (reused code, wrong redirect)."""
    if not state:
        raise LoginError("The Upstox login came back without a state: start it again.")
    account = _account_from_state(request, state)
    if error:
        raise LoginError(f"The Upstox login was not approved ({error[:60]}): nothing changed.")
    if not code:
        raise LoginError("The Upstox login came back without a code: start it again.")
    try:
        token = async_to_sync(_exchange)(account, code)
    except BrokerError as exc:
        logger.warning("Upstox code exchange for %s failed: %s", account.name, exc)
        raise LoginError(f"Upstox refused the login: {exc.message}") from None
    account.set_access_token(
        token.access_token, expires_at=token.expires_at, issued_at=token.issued_at
    )
    account.upstox_user_id = token.user_id
    account.status = AccountStatus.OK
    account.last_error = ""
    account.last_checked_at = timezone.now()
    account.save()
    logger.info("Upstox login for %s stored a token expiring %s", account.name, token.expires_at)
    account_history(
        account=account,
        user=request.user,
        message=f"Logged in to Upstox (OAuth): stored a new access token valid until "
        f"{_ist(token.expires_at)}.",
    )
    return account


async def _exchange(account: BrokerAccount, code: str) -> UpstoxToken:
    async with _client(account) as client:
        return await client.exchange_code(
            code=code,
            client_id=account.client_id,
            client_secret=account.api_secret,
            redirect_uri=redirect_uri(),
        )


def request_token(account: BrokerAccount, *, user: Any) -> TokenRequest:
    """Ask Upstox to send a token to the notifier once the user approves in the Upstox app,
    and record the pending request (made by ``user``) that the notifier will accept one token
    for. Returns the recorded request. Raises LoginError with what to do."""
    if account.kind != BrokerKind.UPSTOX:
        raise LoginError(f"'{account.name}' is not an Upstox account.")
    missing = account.missing_static_credentials()
    if missing:
        raise LoginError(f"Account '{account.name}' has no {' and no '.join(missing)}.")
    if not account.notifier_secret_hash:
        raise LoginError(
            f"Account '{account.name}' has no notifier URL: run the action 'Create a new Upstox "
            "notifier URL', register the URL it shows with the Upstox app, then request again."
        )

    async def call() -> UpstoxTokenRequest:
        async with _client(account) as client:
            return await client.request_token(
                client_id=account.client_id, client_secret=account.api_secret
            )

    try:
        answer = async_to_sync(call)()
    except BrokerError as exc:
        raise LoginError(f"Upstox refused the token request: {exc.message}") from None
    now = timezone.now()
    return TokenRequest.objects.create(
        account=account,
        requested_at=now,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        valid_until=min(answer.authorization_expiry, now + TOKEN_REQUEST_MAX_WINDOW),
    )


def _ist(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%d %b %Y %H:%M:%S %Z")


def _notifier_account(secret: str) -> BrokerAccount:
    """The Upstox account whose notifier path secret is ``secret``. Only hashes are stored, so
    the lookup is by hash (which says nothing about the secret), then compared in constant
    time. Raises NotifierRefused(UNKNOWN_ADDRESS)."""
    digest = notifier_secret_hash(secret)
    account = BrokerAccount.objects.filter(
        kind=BrokerKind.UPSTOX, notifier_secret_hash=digest
    ).first()
    if account is None or not hmac.compare_digest(account.notifier_secret_hash or "", digest):
        raise NotifierRefused(UNKNOWN_ADDRESS)
    return account


def _pending_request(account: BrokerAccount, now: datetime) -> TokenRequest | None:
    return (
        TokenRequest.objects.filter(account=account, consumed_at__isnull=True, valid_until__gte=now)
        .select_related("requested_by")
        .order_by("-requested_at")
        .first()
    )


def _checked(
    account: BrokerAccount, body: bytes, digest: str, pending: TokenRequest | None, now: datetime
) -> tuple[UpstoxNotifierToken, TokenRequest]:
    """The notification's token and the pending request it answers. Raises NotifierRefused
    (never quoting the token) when it must not be stored."""
    name = account.name
    try:
        note = parse_notifier_payload(body)
    except ValueError as exc:
        raise NotifierRefused(f"{name}: {exc}") from None
    if note.client_id != account.client_id:
        raise NotifierRefused(f"{name}: the notification is for another API key")
    if not account.upstox_user_id:
        raise NotifierRefused(
            f"{name}: no Upstox user id is recorded: log in once from admin (or enter "
            "the user id) so notifications can be checked"
        )
    if note.user_id != account.upstox_user_id:
        raise NotifierRefused(f"{name}: the notification is for another Upstox user")
    if TokenRequest.objects.filter(account=account, notification_sha256=digest).exists():
        raise NotifierRefused(
            f"{name}: this notification was already accepted; a replay is refused"
        )
    if pending is None:
        raise NotifierRefused(
            f"{name}: no token request is pending: run 'Request an Upstox token' in admin → "
            "Broker accounts and approve it in the Upstox app within its window; a token "
            "nobody requested is refused"
        )
    if note.expires_at <= now:
        raise NotifierRefused(f"{name}: the token expired at {_ist(note.expires_at)}")
    if note.issued_at < now - NOTIFIER_MAX_TOKEN_AGE:
        minutes = int(NOTIFIER_MAX_TOKEN_AGE.total_seconds() // 60)
        raise NotifierRefused(
            f"{name}: the token was issued at {_ist(note.issued_at)}, more than {minutes} "
            "minutes ago: a stale token is refused"
        )
    if note.issued_at > now + NOTIFIER_CLOCK_SKEW:
        raise NotifierRefused(
            f"{name}: the token's issued_at ({_ist(note.issued_at)}) is in the future: check "
            "this server's clock"
        )
    if note.issued_at < pending.requested_at - NOTIFIER_CLOCK_SKEW:
        raise NotifierRefused(
            f"{name}: the token was issued at {_ist(note.issued_at)}, before the pending token "
            f"request (made at {_ist(pending.requested_at)})"
        )
    return note, pending


def _refuse_older(account: BrokerAccount, note: UpstoxNotifierToken) -> None:
    stored = account.token_issued_at
    if account.has_token and stored is not None and note.issued_at <= stored:
        raise NotifierRefused(
            f"{account.name}: the token (issued at {_ist(note.issued_at)}) is not newer than "
            f"the stored one (issued at {_ist(stored)})"
        )


def _verify_at_broker(account: BrokerAccount, note: UpstoxNotifierToken) -> None:
    """Ask Upstox whose token this is (its profile) before storing it: whoever learned the
    notifier URL could otherwise post any string in the right shape while a request is pending
    and replace a working token. Raises NotifierRefused when Upstox does not accept the token
    or it belongs to another user."""

    try:
        base_url = account.effective_rest_base_url()
    except EndpointRefused as exc:  # the account's REST URL breaks BROKER_HOST_ALLOWLIST
        raise NotifierRefused(f"{account.name}: {exc.message} Nothing was sent.") from None

    async def call() -> UpstoxProfile:
        async with UpstoxRestClient(base_url, access_token=Secret(note.access_token)) as client:
            return await client.profile()

    try:
        profile = async_to_sync(call)()
    except BrokerError as exc:
        raise NotifierRefused(
            f"{account.name}: Upstox does not accept the notified token ({exc.message})"
        ) from None
    if profile.user_id != account.upstox_user_id:
        raise NotifierRefused(
            f"{account.name}: the notified token belongs to another Upstox user "
            f"({profile.user_id[:20]!r})"
        )


def accept_notification(secret: str, body: bytes, *, now: datetime | None = None) -> BrokerAccount:
    """Store the token an Upstox notifier POST carries, consuming the pending token request it
    answers. Returns the account.

    Raises NotifierRefused (logged by the caller; never carrying the token or the secret) for
    an unknown secret (message ``UNKNOWN_ADDRESS``), a malformed body, another API key or
    user id, no pending request (none made from admin, already answered, its window passed),
    a replay, a stale or expired token, or one not newer than the stored token. A refusal
    changes nothing on the account (so the running feed keeps its token); it is written to
    the account's admin history, as is an acceptance.
    """
    account = _notifier_account(secret)
    now = now or timezone.now()
    digest = hashlib.sha256(body).hexdigest()
    pending = _pending_request(account, now)
    try:
        note, request = _checked(account, body, digest, pending, now)
        _refuse_older(account, note)  # cheap first; again under the row lock below
        _verify_at_broker(account, note)
        with transaction.atomic():
            account = BrokerAccount.objects.select_for_update().get(pk=account.pk)
            _refuse_older(account, note)
            taken = TokenRequest.objects.filter(pk=request.pk, consumed_at__isnull=True).update(
                consumed_at=now, notification_sha256=digest
            )
            if not taken:
                raise NotifierRefused(f"{account.name}: the token request was already answered")
            # Older requests still pending are superseded: one token per approval window.
            TokenRequest.objects.filter(account=account, consumed_at__isnull=True).update(
                consumed_at=now
            )
            account.set_access_token(
                note.access_token, expires_at=note.expires_at, issued_at=note.issued_at
            )
            account.status = AccountStatus.OK
            account.last_error = ""
            account.last_checked_at = now
            account.save()
    except NotifierRefused as exc:
        account_history(
            account=account,
            user=pending.requested_by if pending else None,
            message=f"Refused an Upstox token notification: {exc}",
        )
        raise
    logger.info("Upstox notifier stored a token for %s expiring %s", account.name, note.expires_at)
    account_history(
        account=account,
        user=request.requested_by,
        message=f"Upstox notifier stored a new access token valid until "
        f"{_ist(note.expires_at)}, for the token request made at {_ist(request.requested_at)}.",
    )
    return account
