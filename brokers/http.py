"""Shared plumbing of the broker REST clients. Pure Python, no Django.

* :class:`JsonHttpClient` wraps one ``httpx.AsyncClient``: a timeout on every call, an optional
  rate limiter acquired before every attempt, retries of *transient* failures only with capped
  exponential backoff and full jitter (:class:`RetryPolicy`), and one error type out:
  :class:`~brokers.exceptions.BrokerError`. What a broker's error body means is decided by the
  broker module (an ``ErrorMapper``); HTTP status decides when the mapper does not know.
* :func:`redact` removes tokens and secrets from any text before it reaches a message or a log.
* Payload coercion helpers for broker JSON; they raise :class:`PayloadError`, which the broker
  clients turn into a permanent ``BrokerError(code="unexpected-response")``.

Logging never includes headers or bodies; paths and messages pass through :func:`redact`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from brokers.exceptions import BrokerError, PayloadError
from brokers.ratelimit import RateLimiter, Sleep

from .exchange import IST

logger = logging.getLogger(__name__)

REDACTED = "***"

ErrorMapper = Callable[[int, Any], BrokerError | None]
"""(HTTP status, decoded JSON body or None) → the broker's error, or None if not recognised."""

_SENSITIVE_KEYS = (
    r"access[_-]?token|accesstoken|extended[_-]?token|extendedtoken|token|"
    r"client[_-]?secret|clientsecret|code|authorization|password"
)
_QUOTED_KEY = re.compile(rf"""(?i)(["'](?:{_SENSITIVE_KEYS})["']\s*:\s*["'])[^"']*(["'])""")
_QUERY_OR_FORM = re.compile(rf"(?i)\b((?:{_SENSITIVE_KEYS})=)[^&\s\"'#,;]+")
_HEADER = re.compile(r"(?i)\b((?:access-token|authorization)\s*:\s*)(?:bearer\s+)?[^\s,;&\"']+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/=]+")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every secret replaced by ``***``.

    Removes the given ``secrets`` verbatim (values shorter than 4 characters are ignored), plus
    anything that looks like one: ``token=``/``code=``/``client_secret=`` in a query or form,
    the ``access-token`` and ``Authorization`` headers, ``Bearer <x>``, and JSON keys such as
    ``"access_token": "..."``.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _QUOTED_KEY.sub(rf"\g<1>{REDACTED}\g<2>", text)
    text = _HEADER.sub(rf"\g<1>{REDACTED}", text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    return _QUERY_OR_FORM.sub(rf"\g<1>{REDACTED}", text)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures.

    ``attempts`` counts every try (1 = never retry). Before retry *n* (1-based) the client sleeps
    ``random() × min(cap, base × 2**(n-1))`` seconds ("full jitter"), or a server's Retry-After
    when that is longer (itself capped at ``cap``).
    """

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be ≥ 1, got {self.attempts!r}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be ≥ 0 seconds")

    def backoff(self, retry: int, random: Callable[[], float]) -> float:
        """Return the sleep before retry number ``retry`` (1-based) for a draw of ``random()``."""
        ceiling = min(self.cap, self.base * 2 ** (retry - 1))
        return random() * ceiling


NO_RETRY = RetryPolicy(attempts=1)


def transport_error(
    exc: httpx.TransportError,
    *,
    broker: str,
    label: str,
    scrub: Callable[[str], str] = redact,
) -> BrokerError:
    """Classify an httpx transport failure; its text passes through ``scrub``.

    Timeouts and network/protocol failures are transient; ``UnsupportedProtocol`` and
    ``LocalProtocolError`` mean our own URL or request is wrong and are permanent.
    """
    detail = f"{type(exc).__name__}: {scrub(str(exc))}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return BrokerError(
            f"{label} did not answer in time ({detail}): retried automatically; "
            "if it persists check the server's network connection",
            broker=broker,
            permanent=False,
            code="timeout",
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return BrokerError(
            f"{label} could not be called ({detail}): check the broker base URL setting",
            broker=broker,
            permanent=True,
            code="bad-request",
        )
    return BrokerError(
        f"{label} could not be reached ({detail}): retried automatically; "
        "if it persists check the server's network connection",
        broker=broker,
        permanent=False,
        code="network",
    )


def http_status_error(status: int, *, broker: str, label: str) -> BrokerError:
    """Classify an HTTP error status the broker's mapper did not recognise (429/5xx transient)."""
    if status == 429 or status >= 500:
        return BrokerError(
            f"{label} is busy or failing (HTTP {status}): retried automatically",
            broker=broker,
            permanent=False,
            http_status=status,
        )
    return BrokerError(
        f"{label} refused the request (HTTP {status}): check the account settings in "
        "admin → Broker accounts; if they are right, report this to the optionsite developers",
        broker=broker,
        permanent=True,
        http_status=status,
    )


_NOT_JSON = object()


@dataclass(frozen=True)
class _Failure:
    error: BrokerError
    unsent: bool  # the broker cannot have acted on the request: safe to retry any method
    retry_after: float | None


class JsonHttpClient:
    """One broker's ``httpx.AsyncClient`` with timeouts, rate limiting, retries and error mapping.

    ``headers`` go on every request; ``secrets`` are redacted from every message this client
    builds. ``transport`` lets tests pass ``httpx.MockTransport``; ``sleep`` and ``random`` make
    backoff testable. Use as ``async with`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        broker: str,
        label: str,
        base_url: str,
        headers: Mapping[str, str],
        map_error: ErrorMapper,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        secrets: Iterable[str | None] = (),
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.broker = broker
        self.label = label
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self._map_error = map_error
        self._sleep = sleep
        self._random = random
        self._secrets = tuple(s for s in secrets if s)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    def redact(self, text: str) -> str:
        """Return ``text`` with this client's secrets and secret-looking values removed."""
        return redact(text, self._secrets)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        limiter: RateLimiter | None = None,
        idempotent: bool = True,
        retry: RetryPolicy | None = None,
        secrets: Iterable[str] = (),
    ) -> Any:
        """Send the request and return the decoded JSON body of a successful answer.

        Every attempt first acquires ``limiter``. Transient failures are retried per ``retry``
        (default: the client's policy); a non-``idempotent`` request is retried only when the
        broker cannot have acted on it (connection not made, HTTP 429). Raises ``BrokerError``:
        the first permanent one, or the last transient one when attempts run out. ``secrets``
        (e.g. a client secret in the body) are redacted from log lines, like the client's own.
        """
        policy = retry if retry is not None else self.retry
        what = f"{method} {self.redact(path)}"
        for attempt in range(1, policy.attempts + 1):
            if limiter is not None:
                await limiter.acquire()
            outcome = await self._attempt(method, path, json=json, data=data, headers=headers)
            if not isinstance(outcome, _Failure):
                return outcome
            error = outcome.error
            retryable = not error.permanent and (idempotent or outcome.unsent)
            if not retryable or attempt == policy.attempts:
                raise error
            delay = policy.backoff(attempt, self._random)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, policy.cap))
            logger.warning(
                "%s %s failed (attempt %d of %d): %s; retrying in %.2fs",
                self.broker,
                what,
                attempt,
                policy.attempts,
                redact(str(error), (*self._secrets, *secrets)),
                delay,
            )
            await self._sleep(delay)
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> Any:
        try:
            response = await self._client.request(
                method, path, json=json, data=data, headers=headers, timeout=self.timeout
            )
        except httpx.TransportError as exc:
            error = transport_error(exc, broker=self.broker, label=self.label, scrub=self.redact)
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            return _Failure(error, unsent=unsent, retry_after=None)
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError: the body is not JSON
            body = _NOT_JSON
        error = self._map_error(status, None if body is _NOT_JSON else body)
        if error is None and status >= 400:
            error = http_status_error(status, broker=self.broker, label=self.label)
        if error is None and (body is _NOT_JSON or not 200 <= status < 300):
            error = BrokerError(
                f"{self.label} answered HTTP {status} without a JSON body: retried "
                "automatically; if it persists the broker's API may be down or have changed",
                broker=self.broker,
                permanent=False,
                http_status=status,
            )
        if error is None:
            return body
        logger.debug(
            "%s %s %s → HTTP %d %s", self.broker, method, self.redact(path), status, error.code
        )
        return _Failure(error, unsent=status == 429, retry_after=_retry_after(response))

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._client.aclose()

    async def __aenter__(self) -> JsonHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:  # absent, or an HTTP date: fall back to our own backoff
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# --- payload coercion ---------------------------------------------------------------------


def unexpected_answer(exc: PayloadError, *, broker: str, label: str, what: str) -> BrokerError:
    """Return the permanent ``BrokerError`` (code ``unexpected-response``) for a bad shape.

    ``exc`` must not quote secrets (the parsers name fields, not token values).
    """
    return BrokerError(
        f"{label} answered the {what} request in an unexpected shape ({exc}): its API may "
        "have changed; report this to the optionsite developers",
        broker=broker,
        permanent=True,
        code="unexpected-response",
    )


def as_mapping(value: Any, what: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a JSON object; raise ``PayloadError`` naming ``what`` if not."""
    if not isinstance(value, Mapping):
        raise PayloadError(f"{what} is {type(value).__name__}, expected an object")
    return value


def opt_float(obj: Mapping[str, Any], key: str) -> float | None:
    """Return ``obj[key]`` as a float; None when absent, null or not finite (NaN = no value)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(f"{key} is {type(value).__name__}, expected a number")
    try:
        number = float(value)
    except ValueError:
        raise PayloadError(f"{key}={value!r} is not a number") from None
    return number if math.isfinite(number) else None


def opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    """Return ``obj[key]`` as an int (750 or 750.0 or "750"); None when absent or null."""
    number = opt_float(obj, key)
    if number is None:
        return None
    if not number.is_integer():
        raise PayloadError(f"{key}={number!r} is not a whole number")
    return int(number)


def opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    """Return ``obj[key]`` as a string; None when absent or null; numbers become strings."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadError(f"{key} is {type(value).__name__}, expected a string")
    return str(value)


def req_str(obj: Mapping[str, Any], key: str) -> str:
    """Return ``obj[key]`` as a non-empty string; raise ``PayloadError`` if missing or empty."""
    value = opt_str(obj, key)
    if not value:
        raise PayloadError(f"{key} is missing")
    return value


def percent_to_fraction(value: float | None) -> float | None:
    """Return ``value`` percent as a fraction (9.79 → 0.0979), None stays None."""
    return None if value is None else value / 100.0


def parse_decimal(value: Any, what: str) -> Decimal:
    """Parse a strike such as ``"25650.000000"`` or ``21100.5`` into a Decimal without noise zeros.

    Raises ``PayloadError`` when the value is not a finite number.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadError(f"{what} {value!r} is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise PayloadError(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise PayloadError(f"{what} {value!r} is not a finite number")
    if number == number.to_integral_value():
        return number.quantize(Decimal(1))
    return number.normalize()


_DMY_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S")


def parse_broker_datetime(value: Any, what: str) -> datetime:
    """Parse an ISO 8601 or ``dd/mm/yyyy HH:MM[:SS]`` time into an aware datetime (naive = IST).

    Epoch numbers are accepted too (milliseconds when above 10**11, else seconds).
    Raises ``PayloadError`` for anything else.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_epoch(value, what)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{what} is {type(value).__name__}, expected a date-time string")
    text = value.strip()
    if text.isdigit():
        return from_epoch(int(text), what)
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for fmt in _DMY_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)  # naive means IST, below
                break
            except ValueError:
                continue
    if parsed is None:
        raise PayloadError(f"{what} {text!r} is not a date-time we understand")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=IST)


def from_epoch(value: float | str, what: str) -> datetime:
    """Return an aware UTC datetime from epoch milliseconds (> 10**11) or seconds."""
    try:
        number = float(value)
    except ValueError:
        raise PayloadError(f"{what} {value!r} is not an epoch time") from None
    if not math.isfinite(number) or number < 0:
        raise PayloadError(f"{what} {value!r} is not an epoch time")
    seconds = number / 1000.0 if number > 1e11 else number
    return datetime.fromtimestamp(seconds, tz=UTC)
