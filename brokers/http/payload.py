"""Coercion of broker JSON into typed values; failures raise :class:`PayloadError`, which the
broker clients turn into a permanent ``BrokerError`` (:func:`unexpected_answer`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from brokers.exceptions import BrokerError, PayloadError

from ..exchange import IST


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
