"""The simulator's credentials: accepted tokens, renewals, OAuth codes, feed codes, revocation.

Pure Python, no I/O; time comes from an injectable wall clock (epoch seconds). The configured
demo tokens never expire on their own (a demo may run for days); tokens the simulator issues
expire as the broker's do — Dhan 24 h after renewal, Upstox at the next 03:30 IST — and any
token can be expired or revoked on command (faults).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlencode

from brokers.upstox.answers import upstox_token_expiry

DHAN_TOKEN_SECONDS = 24 * 3600
OAUTH_CODE_SECONDS = 600
FEED_CODE_SECONDS = 60
TOKEN_REQUEST_SECONDS = 600
UPSTOX_USER_ID = "SIM0001"
UPSTOX_USER_NAME = "Simulator Demo User"
UPSTOX_EMAIL = "demo@simulator.invalid"
DHAN_CLIENT_NAME = "SIMULATOR DEMO"


class Check(StrEnum):
    """The outcome of checking a credential."""

    OK = "ok"
    EXPIRED = "expired"  # was valid, its time is up (or expired on command)
    INVALID = "invalid"  # unknown, revoked, renewed away or logged out
    WRONG_CLIENT = "wrong_client"  # a valid token presented with another client id
    UNKNOWN_CLIENT = "unknown_client"  # a client id the simulator does not know


@dataclass(slots=True)
class Token:
    """An access token the simulator issued or was configured with."""

    value: str = field(repr=False)
    owner: str  # Dhan client id / Upstox user id
    issued_at: float
    expires_at: float | None  # None: never expires on its own
    expired: bool = False  # expired on command
    revoked: bool = False

    def check(self, now: float) -> Check:
        if self.revoked:
            return Check.INVALID
        if self.expired or (self.expires_at is not None and now >= self.expires_at):
            return Check.EXPIRED
        return Check.OK


@dataclass(frozen=True, slots=True)
class Dialog:
    """A login dialog awaiting the user's Approve/Deny."""

    client_id: str
    redirect_uri: str
    state: str | None


@dataclass(slots=True)
class TokenRequest:
    """A v3 token request awaiting approval at the simulator."""

    id: str
    client_id: str
    created_at: float
    expires_at: float
    approved: bool = False


def _new_secret(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(24)}"


class AuthRefused(Exception):
    """A login step was refused; ``code`` is the broker error code, ``status`` the HTTP one."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


class Auth:
    """Every credential the simulator accepts, and how each is checked.

    ``dhan_client_id``/``dhan_token`` and ``upstox_token`` are the configured demo
    credentials; ``clock`` returns epoch seconds (wall clock).
    """

    def __init__(
        self,
        *,
        dhan_client_id: str,
        dhan_token: str,
        upstox_api_key: str,
        upstox_api_secret: str,
        upstox_redirect_uri: str,
        upstox_token: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dhan_client_id = dhan_client_id
        self.upstox_api_key = upstox_api_key
        self.upstox_api_secret = upstox_api_secret
        self.upstox_redirect_uri = upstox_redirect_uri
        self.clock = clock
        now = clock()
        self.dhan: dict[str, Token] = {dhan_token: Token(dhan_token, dhan_client_id, now, None)}
        self.upstox: dict[str, Token] = {
            upstox_token: Token(upstox_token, UPSTOX_USER_ID, now, None)
        }
        self.dialogs: dict[str, Dialog] = {}
        self.codes: dict[str, tuple[Dialog, float]] = {}
        self.feed_codes: dict[tuple[str, str], tuple[str, float]] = {}
        self.token_requests: dict[str, TokenRequest] = {}

    # --- Dhan --------------------------------------------------------------------------------

    def dhan_check(self, token: str | None, client_id: str | None) -> Check:
        """Check a Dhan token presented with a client id (REST headers or feed query)."""
        if not client_id or client_id != self.dhan_client_id:
            return Check.UNKNOWN_CLIENT
        known = self.dhan.get(token or "")
        if known is None:
            return Check.INVALID
        if known.owner != client_id:
            return Check.WRONG_CLIENT
        return known.check(self.clock())

    def dhan_renew(self, token: str) -> Token:
        """Issue a new token for the owner of ``token`` (which must check OK) and revoke it."""
        old = self.dhan[token]
        now = self.clock()
        new = Token(_new_secret("SIM-DHAN"), old.owner, now, now + DHAN_TOKEN_SECONDS)
        old.revoked = True
        self.dhan[new.value] = new
        return new

    def dhan_issue(self) -> Token:
        """Issue a new Dhan token for the configured client (24 h), as web.dhan.co would."""
        now = self.clock()
        token = Token(_new_secret("SIM-DHAN"), self.dhan_client_id, now, now + DHAN_TOKEN_SECONDS)
        self.dhan[token.value] = token
        return token

    def dhan_validity(self, token: str) -> float:
        """When the token stops working: its expiry, or 24 h from now for a configured one."""
        known = self.dhan[token]
        return known.expires_at if known.expires_at is not None else self.clock() + 86400

    # --- Upstox ------------------------------------------------------------------------------

    def upstox_check(self, token: str | None) -> Check:
        """Check an Upstox bearer token."""
        known = self.upstox.get(token or "")
        return Check.INVALID if known is None else known.check(self.clock())

    def upstox_issue(self) -> Token:
        """Issue a new Upstox access token, expiring at the next 03:30 IST."""
        now = self.clock()
        expires = upstox_token_expiry(datetime.fromtimestamp(now, UTC)).timestamp()
        token = Token(_new_secret("SIM-UPSTOX"), UPSTOX_USER_ID, now, expires)
        self.upstox[token.value] = token
        return token

    def upstox_logout(self, token: str) -> None:
        self.upstox[token].revoked = True

    def open_dialog(self, *, client_id: str, redirect_uri: str, state: str | None) -> str:
        """Start a login; returns the dialog id. Raises AuthRefused (UDAPI100068) for an unknown
        API key or a redirect URI other than the registered one."""
        if client_id != self.upstox_api_key or redirect_uri != self.upstox_redirect_uri:
            raise AuthRefused(
                "Check your 'client_id' and 'redirect_uri'; one or both are incorrect.",
                code="UDAPI100068",
                status=400,
            )
        dialog_id = secrets.token_urlsafe(12)
        self.dialogs[dialog_id] = Dialog(client_id, redirect_uri, state)
        return dialog_id

    def decide(self, dialog_id: str, *, approve: bool) -> str:
        """Close a dialog; returns the redirect URL (``code``+``state`` or ``error``).

        Raises KeyError for an unknown or already decided dialog.
        """
        dialog = self.dialogs.pop(dialog_id)
        query: dict[str, str] = {}
        if approve:
            code = secrets.token_urlsafe(6)
            self.codes[code] = (dialog, self.clock() + OAUTH_CODE_SECONDS)
            query["code"] = code
        else:
            query["error"] = "access_denied"
            query["error_description"] = "The user denied the login request."
        if dialog.state is not None:
            query["state"] = dialog.state
        separator = "&" if "?" in dialog.redirect_uri else "?"
        return f"{dialog.redirect_uri}{separator}{urlencode(query)}"

    def exchange_code(
        self, *, code: str, client_id: str, client_secret: str, redirect_uri: str, grant_type: str
    ) -> Token:
        """Exchange a login code (consumed even when this fails) for a new access token.

        Raises AuthRefused: UDAPI100016 for wrong credentials, redirect URI or grant type;
        UDAPI100057 for an unknown, used or expired code.
        """
        issued = self.codes.pop(code, None)
        if (
            client_id != self.upstox_api_key
            or client_secret != self.upstox_api_secret
            or redirect_uri != self.upstox_redirect_uri
            or grant_type != "authorization_code"
        ):
            raise AuthRefused("Invalid Credentials", code="UDAPI100016", status=401)
        if issued is None or issued[1] < self.clock() or issued[0].redirect_uri != redirect_uri:
            raise AuthRefused("Invalid Auth code", code="UDAPI100057", status=400)
        return self.upstox_issue()

    def authorize_feed(self, token: str) -> tuple[str, str]:
        """Return a single-use (requestId, code) pair for the feed WebSocket of ``token``."""
        pair = (secrets.token_hex(16), secrets.token_hex(16))
        self.feed_codes[pair] = (token, self.clock() + FEED_CODE_SECONDS)
        return pair

    def redeem_feed(self, request_id: str, code: str) -> str | None:
        """Consume a feed code; returns its token, or None if unknown, used or stale."""
        entry = self.feed_codes.pop((request_id, code), None)
        if entry is None or entry[1] < self.clock():
            return None
        return entry[0]

    def request_token(self, *, client_id: str, client_secret: str) -> TokenRequest:
        """Record a v3 token request; AuthRefused (UDAPI100016) for wrong credentials."""
        if client_id != self.upstox_api_key or client_secret != self.upstox_api_secret:
            raise AuthRefused("Invalid Credentials", code="UDAPI100016", status=401)
        now = self.clock()
        request = TokenRequest(secrets.token_hex(8), client_id, now, now + TOKEN_REQUEST_SECONDS)
        self.token_requests[request.id] = request
        return request

    def pending_requests(self) -> list[TokenRequest]:
        now = self.clock()
        return [r for r in self.token_requests.values() if not r.approved and r.expires_at > now]

    def approve_request(self, request_id: str) -> Token:
        """Approve a pending token request and issue its token. KeyError if not pending."""
        request = self.token_requests.get(request_id)
        if request is None or request.approved or request.expires_at <= self.clock():
            raise KeyError(request_id)
        request.approved = True
        return self.upstox_issue()

    # --- faults ------------------------------------------------------------------------------

    def tokens(self, broker: str) -> dict[str, Token]:
        if broker == "dhan":
            return self.dhan
        if broker == "upstox":
            return self.upstox
        raise ValueError(f"unknown broker {broker!r}; use 'dhan' or 'upstox'")

    def expire(self, broker: str, token: str | None = None) -> list[str]:
        """Expire ``token`` (default: every active token of the broker); returns those hit.

        Raises KeyError for a token the simulator does not know.
        """
        hit = self._select(broker, token)
        for value in hit:
            self.tokens(broker)[value].expired = True
        return hit

    def revoke(self, broker: str, token: str | None = None) -> list[str]:
        """Revoke ``token`` (default: every active token of the broker); returns those hit."""
        hit = self._select(broker, token)
        for value in hit:
            self.tokens(broker)[value].revoked = True
        return hit

    def _select(self, broker: str, token: str | None) -> list[str]:
        tokens = self.tokens(broker)
        if token is not None:
            if token not in tokens:
                raise KeyError(token)
            return [token]
        now = self.clock()
        return [value for value, t in tokens.items() if t.check(now) is Check.OK]
