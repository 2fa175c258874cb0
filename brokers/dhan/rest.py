"""DhanHQ v2 REST client (async, httpx): option chain, expiries, quotes, profile, token renewal.

Pure Python, no Django. Wire facts: docs/protocols/dhan.md §2. Every call sends the headers
``access-token``, ``client-id`` and ``Content-Type: application/json``; errors come out as
:class:`~brokers.exceptions.BrokerError` with ``permanent`` set per :func:`dhan_error`.
Rate limits come from a :class:`~brokers.ratelimit.DhanLimiters` that callers of one account
share (pass the same instance to every client of that account). The answers' shapes and
parsers are in :mod:`brokers.dhan.answers`.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import partial
from typing import Any, Literal

import httpx

from brokers.dhan.answers import (
    DhanOptionChain,
    DhanProfile,
    DhanQuote,
    DhanToken,
    parse_expiry_list,
    parse_option_chain,
    parse_profile,
    parse_quotes,
    parse_token,
)
from brokers.dhan.segments import SEGMENT_NUMBERS
from brokers.exceptions import BrokerError
from brokers.http import (
    JsonHttpClient,
    PayloadError,
    RetryPolicy,
    http_status_error,
    redact,
    unexpected_answer,
)
from brokers.ratelimit import CombinedLimiter, DhanLimiters, Sleep, dhan_limiters
from brokers.secret import Secret, reveal

BROKER = "dhan"
LABEL = "DhanHQ"
MAX_QUOTE_INSTRUMENTS = 1000
QuoteKind = Literal["ltp", "ohlc", "quote"]

_PASTE_NEW = "paste a new token in admin → Broker accounts"
_RETRIED = "retried automatically"
# errorCode → (permanent, what a person should do)
_ERROR_CODES: dict[str, tuple[bool, str]] = {
    "DH-901": (True, f"DhanHQ rejected the access token (expired or invalid): {_PASTE_NEW}"),
    "DH-902": (
        True,
        "DhanHQ says this account has no access to this API (no active Data API plan?): "
        "subscribe to Data APIs on web.dhan.co, then re-check the account in "
        "admin → Broker accounts",
    ),
    "DH-903": (
        True,
        "DhanHQ reported an account or segment problem: check in the Dhan app that the "
        "account is active and the segment is enabled",
    ),
    "DH-904": (False, f"DhanHQ rate limit reached: {_RETRIED} after a pause"),
    "DH-905": (
        True,
        "DhanHQ rejected the request as invalid input: check the underlying, segment and "
        "expiry configured for this chain",
    ),
    "DH-906": (True, f"DhanHQ rejected the request (order error or invalid token): {_PASTE_NEW}"),
    "DH-907": (
        True,
        "DhanHQ has no data for this request (wrong parameters or no data): check the "
        "underlying and expiry",
    ),
    "DH-908": (False, f"DhanHQ had an internal server error: {_RETRIED}"),
    "DH-909": (False, f"DhanHQ reported a network problem on its side: {_RETRIED}"),
}
# data error code → (permanent, what a person should do)
_DATA_CODES: dict[str, tuple[bool, str]] = {
    "800": (False, f"DhanHQ had an internal error: {_RETRIED}"),
    "804": (True, "DhanHQ refused: too many instruments in one request"),
    "805": (False, f"DhanHQ says too many requests or connections: {_RETRIED} after a pause"),
    "806": (
        True,
        "DhanHQ says the Data APIs are not subscribed for this account: subscribe on "
        "web.dhan.co, then re-check the account in admin → Broker accounts",
    ),
    "807": (True, f"DhanHQ says the access token has expired: {_PASTE_NEW}"),
    "808": (
        True,
        "DhanHQ authentication failed: check the client ID and paste a new token in "
        "admin → Broker accounts",
    ),
    "809": (True, f"DhanHQ says the access token is invalid: {_PASTE_NEW}"),
    "810": (True, "DhanHQ says the client ID is invalid: correct it in admin → Broker accounts"),
    "811": (True, "DhanHQ says the expiry date is invalid: refresh the expiry list and pick one"),
    "812": (True, "DhanHQ says the date format is invalid: report this to optionsite developers"),
    "813": (True, "DhanHQ says the security id is invalid: refresh the instrument master"),
    "814": (True, "DhanHQ says the request is invalid: check the chain's underlying and expiry"),
}


def dhan_error(
    status: int, body: Any, *, scrub: Callable[[str], str] = redact
) -> BrokerError | None:
    """Map a DhanHQ answer to a ``BrokerError``, or None if it carries no error.

    Reads ``{"errorType", "errorCode": "DH-9xx", "errorMessage"}`` and data errors
    ``{"status": "failed", "data": {"811": "Invalid Expiry Date"}}``. Unknown codes (DH-910 and
    anything new) are transient for HTTP 429/5xx and permanent otherwise. The broker's own text
    is appended after passing through ``scrub`` (it must never echo a token).
    """
    if not isinstance(body, Mapping):
        return None
    code = body.get("errorCode")
    if isinstance(code, str) and code:
        said = body.get("errorMessage") or body.get("errorType")
        return _coded_error(code, _ERROR_CODES.get(code), status, said, scrub)
    if body.get("status") in ("failed", "failure", "error"):
        data = body.get("data")
        if isinstance(data, Mapping) and data:
            data_code, said = next(iter(data.items()))
            return _coded_error(
                str(data_code), _DATA_CODES.get(str(data_code)), status, said, scrub
            )
        return _coded_error(None, None, status, data if isinstance(data, str) else None, scrub)
    return None


def _coded_error(
    code: str | None,
    known: tuple[bool, str] | None,
    status: int,
    said: Any,
    scrub: Callable[[str], str],
) -> BrokerError:
    if known is not None:
        permanent, advice = known
    else:
        fallback = http_status_error(status, broker=BROKER, label=LABEL)
        permanent = fallback.permanent if status >= 400 else True
        advice = fallback.message if status >= 400 else f"{LABEL} reported a failure"
    if said:
        advice = f"{advice} — DhanHQ said: {scrub(str(said))}"
    return BrokerError(
        advice, broker=BROKER, permanent=permanent, code=code, http_status=status or None
    )


class DhanRestClient:
    """Async DhanHQ REST client for one account.

    ``transport`` lets tests pass ``httpx.MockTransport``. ``limiters`` should be the one
    instance shared by all clients of this account (default: a private set). ``retry`` applies
    to idempotent reads; token renewal is never retried once sent. Raises ``BrokerError``
    (permanent, code ``"no-token"``) when the client id or token is empty.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        access_token: Secret | str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        limiters: DhanLimiters | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        client_id, access_token = (client_id or "").strip(), reveal(access_token).strip()
        if not client_id or not access_token:
            raise BrokerError(
                "No DhanHQ client ID or access token: add both in admin → Broker accounts",
                broker=BROKER,
                permanent=True,
                code="no-token",
            )
        self.client_id = client_id
        self.limiters = limiters if limiters is not None else dhan_limiters(sleep=sleep)
        self._chain = CombinedLimiter(
            self.limiters.option_chain, self.limiters.data, name="dhan-chain+data"
        )
        self._http = JsonHttpClient(
            broker=BROKER,
            label=LABEL,
            base_url=base_url,
            headers={
                "access-token": access_token,
                "client-id": client_id,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            map_error=partial(dhan_error, scrub=partial(redact, secrets=(access_token,))),
            timeout=timeout,
            retry=retry,
            transport=transport,
            sleep=sleep,
            random=random,
            secrets=(access_token,),
        )

    async def expiry_list(self, underlying_scrip: int, underlying_seg: str) -> list[date]:
        """Return the underlying's option expiries, ascending.

        Shares the option-chain limit (and identical concurrent/recent requests). Raises
        ``ValueError`` for an unknown segment, ``BrokerError`` on any broker failure.
        """
        body = {"UnderlyingScrip": _scrip(underlying_scrip), "UnderlyingSeg": _seg(underlying_seg)}
        key = ("expirylist", body["UnderlyingScrip"], body["UnderlyingSeg"])

        async def call() -> list[date]:
            answer = await self._post("/v2/optionchain/expirylist", body, limiter=self._chain)
            return self._parse("expiry list", parse_expiry_list, answer)

        return list(await self.limiters.option_chain.run(key, call))

    async def option_chain(
        self, underlying_scrip: int, underlying_seg: str, expiry: date
    ) -> DhanOptionChain:
        """Return the option chain of one underlying and expiry.

        Requests are spaced ≥ 3 s apart; an identical request in flight or just answered is
        shared (see :class:`~brokers.ratelimit.UniqueRequestLimiter`). Raises ``ValueError``
        for an unknown segment, ``BrokerError`` on any broker failure (811 = invalid expiry).
        """
        if isinstance(expiry, datetime) or not isinstance(expiry, date):
            raise ValueError(f"expiry must be a date, got {type(expiry).__name__}")
        scrip, seg = _scrip(underlying_scrip), _seg(underlying_seg)
        body = {"UnderlyingScrip": scrip, "UnderlyingSeg": seg, "Expiry": expiry.isoformat()}
        key = ("optionchain", scrip, seg, body["Expiry"])

        async def call() -> DhanOptionChain:
            answer = await self._post("/v2/optionchain", body, limiter=self._chain)
            return self._parse(
                "option chain",
                partial(
                    parse_option_chain,
                    underlying_scrip=scrip,
                    underlying_seg=seg,
                    expiry=expiry,
                ),
                answer,
            )

        return await self.limiters.option_chain.run(key, call)

    async def market_quote(
        self, kind: QuoteKind, instruments: Mapping[str, list[int]]
    ) -> dict[tuple[str, int], DhanQuote]:
        """Return quotes keyed by (segment, security id) from ``/v2/marketfeed/<kind>``.

        ``instruments`` maps a segment name to security ids, at most 1000 ids in total. Raises
        ``ValueError`` for an unknown kind or segment, no ids, a non-integer id, or more than
        1000 ids; ``BrokerError`` on any broker failure. Instruments the broker did not answer
        for are absent from the result.
        """
        if kind not in ("ltp", "ohlc", "quote"):
            raise ValueError(f"kind must be 'ltp', 'ohlc' or 'quote', got {kind!r}")
        request: dict[str, list[int]] = {}
        for segment, ids in instruments.items():
            request[_seg(segment)] = [_scrip(i) for i in ids]
        total = sum(len(ids) for ids in request.values())
        if total == 0:
            raise ValueError("market_quote needs at least one security id")
        if total > MAX_QUOTE_INSTRUMENTS:
            raise ValueError(
                f"market_quote takes at most {MAX_QUOTE_INSTRUMENTS} ids per call, got {total}: "
                "split the request"
            )
        answer = await self._post(f"/v2/marketfeed/{kind}", request, limiter=self.limiters.quotes)
        return self._parse(f"{kind} quote", parse_quotes, answer)

    async def profile(self) -> DhanProfile:
        """Return the account profile (token validity, data plan). Raises ``BrokerError``."""
        answer = await self._http.request("GET", "/v2/profile", limiter=self.limiters.non_trading)
        return self._parse("profile", parse_profile, answer)

    async def renew_token(self) -> DhanToken:
        """Renew the access token (``GET /v2/RenewToken``) and return the new one.

        Not retried once the request may have reached DhanHQ (a lost answer could leave us
        holding a replaced token); retried only when the connection was never made. The caller
        must store the returned token and build a new client with it. Raises ``BrokerError``.
        """
        answer = await self._http.request(
            "GET",
            "/v2/RenewToken",
            headers={"dhanClientId": self.client_id},
            limiter=self.limiters.non_trading,
            idempotent=False,
        )
        return self._parse("token renewal", parse_token, answer)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> DhanRestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _post(self, path: str, body: Mapping[str, Any], *, limiter: Any) -> Any:
        return await self._http.request("POST", path, json=body, limiter=limiter)

    def _parse(self, what: str, parser: Callable[[Any], Any], answer: Any) -> Any:
        try:
            return parser(answer)
        except PayloadError as exc:
            raise unexpected_answer(exc, broker=BROKER, label=LABEL, what=what) from None


def _scrip(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"security id must be a non-negative int, got {value!r}")
    return value


def _seg(value: Any) -> str:
    if not isinstance(value, str) or value not in SEGMENT_NUMBERS:
        known = ", ".join(SEGMENT_NUMBERS)
        raise ValueError(f"unknown DhanHQ segment {value!r}; expected one of {known}")
    return value
