"""One broker's JSON-over-HTTP client: timeouts, rate limiting, retries and error mapping."""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from brokers.exceptions import BrokerError
from brokers.ratelimit import RateLimiter, Sleep

from .failures import ErrorMapper, RetryPolicy, http_status_error, transport_error
from .redaction import redact

logger = logging.getLogger(__name__)


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
            failed = transport_error(exc, broker=self.broker, label=self.label, scrub=self.redact)
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            return _Failure(failed, unsent=unsent, retry_after=None)
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
