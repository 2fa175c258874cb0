"""Upstox's daily login from admin: the OAuth dialog and callback, and the v3 token request
with its notifier webhook (service functions; the views only parse and render).

The OAuth ``state`` is signed (Django's signing with its own salt), expires in minutes, names
the account, and carries a nonce kept in the admin's session that the callback removes, so a
state works once, in the session that started the login, for the account it names.
Nothing is stored unless the broker accepted the code; tokens never reach a message or log.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core import signing
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from .exceptions import BrokerError, LoginError, NotifierRefused
from .models import AccountStatus, BrokerAccount, BrokerKind
from .upstox.answers import UpstoxToken, UpstoxTokenRequest, parse_notifier_payload
from .upstox.rest import UpstoxRestClient

logger = logging.getLogger(__name__)

STATE_SALT = "optionsite.brokers.upstox-login"
STATE_MAX_AGE = 600  # seconds between clicking "Log in to Upstox" and coming back
SESSION_KEY = "upstox_login_nonces"
MAX_PENDING = 5


def redirect_uri() -> str:
    """The redirect URI to register with Upstox (built from PUBLIC_BASE_URL)."""
    return settings.PUBLIC_BASE_URL + reverse("upstox-callback")


def notifier_url(account: BrokerAccount) -> str:
    """The notifier URL to register for the account's v3 token requests."""
    return settings.PUBLIC_BASE_URL + reverse("upstox-notifier", args=[account.notifier_secret])


def _client(account: BrokerAccount, *, token: bool = False) -> UpstoxRestClient:
    return UpstoxRestClient(
        account.effective_rest_base_url(), access_token=account.access_token if token else None
    )


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
    account.set_access_token(token.access_token, expires_at=token.expires_at)
    account.upstox_user_id = token.user_id
    account.status = AccountStatus.OK
    account.last_error = ""
    account.last_checked_at = timezone.now()
    account.save()
    logger.info("Upstox login for %s stored a token expiring %s", account.name, token.expires_at)
    return account


async def _exchange(account: BrokerAccount, code: str) -> UpstoxToken:
    async with _client(account) as client:
        return await client.exchange_code(
            code=code,
            client_id=account.client_id,
            client_secret=account.api_secret,
            redirect_uri=redirect_uri(),
        )


def request_token(account: BrokerAccount) -> UpstoxTokenRequest:
    """Ask Upstox to send a token to the notifier once the user approves in the Upstox app.
    Raises LoginError with what to do."""
    if account.kind != BrokerKind.UPSTOX:
        raise LoginError(f"'{account.name}' is not an Upstox account.")
    missing = account.missing_static_credentials()
    if missing:
        raise LoginError(f"Account '{account.name}' has no {' and no '.join(missing)}.")

    async def call() -> UpstoxTokenRequest:
        async with _client(account) as client:
            return await client.request_token(
                client_id=account.client_id, client_secret=account.api_secret
            )

    try:
        return async_to_sync(call)()
    except BrokerError as exc:
        raise LoginError(f"Upstox refused the token request: {exc.message}") from None


def accept_notification(secret: str, body: bytes) -> BrokerAccount:
    """Store the token an Upstox notifier POST carries. Raises NotifierRefused (logged by the
    caller without the token) for an unknown secret, a malformed body, or a client/user id
    that does not match the account."""
    account = (
        BrokerAccount.objects.filter(kind=BrokerKind.UPSTOX).filter(notifier_secret=secret).first()
    )
    if account is None or not hmac.compare_digest(account.notifier_secret, secret):
        raise NotifierRefused("unknown notifier address")
    try:
        note = parse_notifier_payload(body)
    except ValueError as exc:
        raise NotifierRefused(f"{account.name}: {exc}") from None
    if note.client_id != account.client_id:
        raise NotifierRefused(f"{account.name}: the notification is for another API key")
    if not account.upstox_user_id:
        raise NotifierRefused(
            f"{account.name}: no Upstox user id is recorded: log in once from admin (or enter "
            "the user id) so notifications can be checked"
        )
    if note.user_id != account.upstox_user_id:
        raise NotifierRefused(f"{account.name}: the notification is for another Upstox user")
    account.set_access_token(note.access_token, expires_at=note.expires_at)
    account.status = AccountStatus.OK
    account.last_error = ""
    account.last_checked_at = timezone.now()
    account.save()
    logger.info("Upstox notifier stored a token for %s expiring %s", account.name, note.expires_at)
    return account
