"""What a failed broker call means — permanent or transient — and how transient ones are
retried (:class:`RetryPolicy`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from brokers.exceptions import BrokerError

from .redaction import redact

ErrorMapper = Callable[[int, Any], BrokerError | None]
"""(HTTP status, decoded JSON body or None) → the broker's error, or None if not recognised."""


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
