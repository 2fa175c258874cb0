"""Upstox REST client (async, httpx): option chain, contracts, profile, feed authorisation, login.

Pure Python, no Django. Wire facts: docs/protocols/upstox.md. Authenticated calls send
``Authorization: Bearer <token>``; errors come out as :class:`~brokers.exceptions.BrokerError`
with ``permanent`` set per :func:`upstox_error`. One :func:`~brokers.ratelimit.upstox_limiter`
instance should be shared by all clients of one account. The answers' shapes and parsers, and
the token rules, are in :mod:`brokers.upstox.answers`.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from brokers.exceptions import BrokerError
from brokers.http import (
    JsonHttpClient,
    PayloadError,
    RetryPolicy,
    http_status_error,
    redact,
    unexpected_answer,
)
from brokers.ratelimit import RateLimiter, Sleep, upstox_limiter
from brokers.secret import Secret, reveal
from brokers.upstox.answers import (
    UpstoxContract,
    UpstoxOptionChain,
    UpstoxProfile,
    UpstoxToken,
    UpstoxTokenRequest,
    parse_contracts,
    parse_feed_authorization,
    parse_option_chain,
    parse_profile,
    parse_token,
    parse_token_request,
    unwrap_data,
)

BROKER = "upstox"
LABEL = "Upstox"
_LOGIN_AGAIN = "log in again from admin → Broker accounts → Log in to Upstox"
# error code → (permanent, what a person should do)
_ERROR_CODES: dict[str, tuple[bool, str]] = {
    "UDAPI100050": (
        True,
        f"Upstox rejected the access token (expired at 03:30 IST or revoked): {_LOGIN_AGAIN}",
    ),
    "UDAPI100016": (
        True,
        "Upstox rejected the credentials: check the API key and secret in "
        "admin → Broker accounts, then log in again",
    ),
    "UDAPI100068": (
        True,
        "Upstox rejected the API key or redirect URI: make the API key and redirect URI in "
        "admin → Broker accounts match the app in the Upstox developer console",
    ),
    "UDAPI100067": (
        True,
        f"Upstox does not allow this API with an extended token: {_LOGIN_AGAIN} "
        "to get a normal access token",
    ),
    "UDAPI10005": (False, "Upstox rate limit reached: retried automatically after a pause"),
    "UDAPI100500": (False, "Upstox had an internal server error: retried automatically"),
}


def upstox_error(
    status: int, body: Any, *, scrub: Callable[[str], str] = redact
) -> BrokerError | None:
    """Map an Upstox answer to a ``BrokerError``, or None if it carries no error.

    Reads ``{"status": "error", "errors": [{"error_code" or "errorCode", "message"}]}``. An
    unknown code, or no envelope, is classified by HTTP status (401 = the token message,
    429/5xx transient, other 4xx permanent). The broker's text passes through ``scrub``.
    """
    code: str | None = None
    said: Any = None
    if isinstance(body, Mapping) and body.get("status") == "error":
        errors = body.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else None
        if isinstance(first, Mapping):
            code = first.get("error_code") or first.get("errorCode") or None
            said = first.get("message")
    elif status < 400:
        return None
    known = _ERROR_CODES.get(code or "")
    if known is None and status == 401:
        known = _ERROR_CODES["UDAPI100050"]
    if known is not None:
        permanent, advice = known
    else:
        fallback = http_status_error(status, broker=BROKER, label=LABEL)
        permanent = fallback.permanent if status >= 400 else True
        advice = fallback.message if status >= 400 else f"{LABEL} reported an error"
    if said:
        advice = f"{advice} — Upstox said: {scrub(str(said))}"
    return BrokerError(
        advice, broker=BROKER, permanent=permanent, code=code, http_status=status or None
    )


class UpstoxRestClient:
    """Async Upstox REST client for one account (or, without a token, for logging in).

    ``transport`` lets tests pass ``httpx.MockTransport``. ``limiter`` should be the one
    instance shared by all clients of this account (default: a private
    :func:`~brokers.ratelimit.upstox_limiter`). ``now`` supplies the issue time of exchanged
    tokens. Calls that need a token raise a permanent ``BrokerError`` (code ``"no-token"``)
    when the client has none.
    """

    def __init__(
        self,
        base_url: str = "https://api.upstox.com",
        *,
        access_token: Secret | str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._token = reveal(access_token).strip()
        self._now = now
        self.limiter = limiter if limiter is not None else upstox_limiter(sleep=sleep)
        self._http = JsonHttpClient(
            broker=BROKER,
            label=LABEL,
            base_url=base_url,
            headers={"Accept": "application/json"},
            map_error=partial(upstox_error, scrub=partial(redact, secrets=(self._token,))),
            timeout=timeout,
            retry=retry,
            transport=transport,
            sleep=sleep,
            random=random,
            secrets=(self._token,),
        )

    async def option_chain(self, instrument_key: str, expiry: date) -> UpstoxOptionChain:
        """Return the put/call chain of ``instrument_key`` (e.g. ``"NSE_INDEX|Nifty 50"``).

        Raises ``ValueError`` for an empty key or a non-date expiry, ``BrokerError`` on any
        broker failure.
        """
        if not instrument_key or isinstance(expiry, datetime) or not isinstance(expiry, date):
            raise ValueError("option_chain needs an instrument key and an expiry date")
        query = {"instrument_key": instrument_key, "expiry_date": expiry.isoformat()}
        answer = await self._get("/v2/option/chain", query)
        return self._parse(
            "option chain",
            partial(parse_option_chain, instrument_key=instrument_key, expiry=expiry),
            answer,
        )

    async def option_contracts(
        self, instrument_key: str, expiry: date | None = None
    ) -> list[UpstoxContract]:
        """Return the option contracts of ``instrument_key`` (all expiries when ``expiry`` is
        None). Raises ``ValueError`` for an empty key, ``BrokerError`` on any broker failure.
        """
        if not instrument_key:
            raise ValueError("option_contracts needs an instrument key")
        query = {"instrument_key": instrument_key}
        if expiry is not None:
            query["expiry_date"] = expiry.isoformat()
        answer = await self._get("/v2/option/contract", query)
        return self._parse("option contracts", parse_contracts, answer)

    async def profile(self) -> UpstoxProfile:
        """Return the user profile; the cheapest token check. Raises ``BrokerError``."""
        return self._parse("profile", parse_profile, await self._get("/v2/user/profile"))

    async def authorize_feed(self) -> str:
        """Return a single-use market-data-feed WebSocket URI; call again before every
        reconnect. The URI carries a one-time code: never log it. Raises ``BrokerError``.
        """
        answer = await self._get("/v3/feed/market-data-feed/authorize")
        return self._parse("feed authorisation", parse_feed_authorization, answer)

    async def exchange_code(
        self, *, code: str, client_id: str, client_secret: Secret | str, redirect_uri: str
    ) -> UpstoxToken:
        """Exchange an OAuth authorisation code for an access token.

        The code is single-use and consumed even when the exchange fails, so every failure is
        raised as *permanent* (asking for a new login); the request is resent only when the
        connection was never made or the broker answered 429. Raises ``BrokerError``.
        """
        secret = reveal(client_secret)
        form = {
            "code": code,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": redirect_uri,
            "grant_type": "authorization_code",
        }
        issued_at = self._now()
        try:
            answer = await self._http.request(
                "POST",
                "/v2/login/authorization/token",
                data=form,
                limiter=self.limiter,
                idempotent=False,
                secrets=(secret, code),
            )
        except BrokerError as exc:
            message = redact(exc.message, (secret, code))
            if not exc.permanent:
                message += f" — the login code is now used up: {_LOGIN_AGAIN}"
            raise BrokerError(
                message, broker=BROKER, permanent=True, code=exc.code, http_status=exc.http_status
            ) from None
        return self._parse("token", partial(parse_token, issued_at=issued_at), answer)

    async def request_token(
        self, *, client_id: str, client_secret: Secret | str
    ) -> UpstoxTokenRequest:
        """Ask Upstox (v3) to send the user an approval request; the token later arrives at
        the notifier webhook (see :func:`parse_notifier_payload`). Not resent once it may have
        reached the broker. Raises ``BrokerError``.
        """
        answer = await self._http.request(
            "POST",
            f"/v3/login/auth/token/request/{quote(client_id, safe='')}",
            json={"client_secret": reveal(client_secret)},
            limiter=self.limiter,
            idempotent=False,
            secrets=(reveal(client_secret),),
        )
        return self._parse("token request", parse_token_request, answer)

    async def logout(self) -> None:
        """Invalidate the access token (``DELETE /v2/logout``). Raises ``BrokerError``."""
        answer = await self._http.request(
            "DELETE", "/v2/logout", headers=self._auth(), limiter=self.limiter
        )
        self._parse("logout", unwrap_data, answer)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> UpstoxRestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _auth(self) -> dict[str, str]:
        if not self._token:
            raise BrokerError(
                f"No Upstox access token: {_LOGIN_AGAIN}",
                broker=BROKER,
                permanent=True,
                code="no-token",
            )
        return {"Authorization": f"Bearer {self._token}"}

    async def _get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        # Percent-encode ourselves: "NSE_INDEX|Nifty 50" → NSE_INDEX%7CNifty%2050, as documented.
        if query:
            path = f"{path}?{urlencode(query, quote_via=quote, safe='')}"
        return await self._http.request("GET", path, headers=self._auth(), limiter=self.limiter)

    def _parse(self, what: str, parser: Callable[[Any], Any], answer: Any) -> Any:
        try:
            return parser(answer)
        except PayloadError as exc:
            raise unexpected_answer(exc, broker=BROKER, label=LABEL, what=what) from None
