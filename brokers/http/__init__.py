"""Shared plumbing of the broker REST clients. Pure Python, no Django.

* :class:`JsonHttpClient` (``client``) wraps one ``httpx.AsyncClient``: a timeout on every
  call, an optional rate limiter acquired before every attempt, retries of *transient* failures
  only with capped exponential backoff and full jitter (:class:`RetryPolicy`), and one error
  type out: :class:`~brokers.exceptions.BrokerError`. What a broker's error body means is
  decided by the broker module (an ``ErrorMapper``); HTTP status decides when the mapper does
  not know (``failures``).
* :func:`redact` (``redaction``) removes tokens and secrets from any text before it reaches a
  message or a log.
* Payload coercion helpers for broker JSON (``payload``); they raise :class:`PayloadError`,
  which the broker clients turn into a permanent ``BrokerError(code="unexpected-response")``.

Logging never includes headers or bodies; paths and messages pass through :func:`redact`.
Every public name is importable from ``brokers.http``.
"""

from __future__ import annotations

from brokers.exceptions import PayloadError

from ..exchange import IST
from .client import JsonHttpClient
from .failures import NO_RETRY, ErrorMapper, RetryPolicy, http_status_error, transport_error
from .payload import (
    as_mapping,
    from_epoch,
    opt_float,
    opt_int,
    opt_str,
    parse_broker_datetime,
    parse_decimal,
    percent_to_fraction,
    req_str,
    unexpected_answer,
)
from .redaction import REDACTED, redact

__all__ = [
    "IST",
    "NO_RETRY",
    "REDACTED",
    "ErrorMapper",
    "JsonHttpClient",
    "PayloadError",
    "RetryPolicy",
    "as_mapping",
    "from_epoch",
    "http_status_error",
    "opt_float",
    "opt_int",
    "opt_str",
    "parse_broker_datetime",
    "parse_decimal",
    "percent_to_fraction",
    "redact",
    "req_str",
    "transport_error",
    "unexpected_answer",
]
