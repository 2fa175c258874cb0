"""Upstox REST answers: their shapes, the parsers that build them, and the token rules
(03:30 IST expiry, the notifier webhook's payload).

Pure Python, no Django. Wire facts: docs/protocols/upstox.md. A field the broker did not send
is None, never 0. The answer parsers raise :class:`~brokers.exceptions.PayloadError` when an
answer is not in the documented shape (the client turns it into a permanent ``BrokerError``);
nothing here quotes a token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.http import (
    IST,
    PayloadError,
    as_mapping,
    from_epoch,
    opt_float,
    opt_int,
    opt_str,
    parse_decimal,
    percent_to_fraction,
    req_str,
)


@dataclass(frozen=True, slots=True)
class UpstoxOptionLeg:
    """A call or put of a strike; absent fields are None, never 0.

    ``iv`` is a fraction (0.2623 = 26.23 %), ``iv_percent`` as sent; ``pop_percent`` is the
    probability of profit in percent, as sent.
    """

    instrument_key: str
    ltp: float | None = None
    volume: int | None = None
    oi: int | None = None
    close_price: float | None = None
    bid_price: float | None = None
    bid_qty: int | None = None
    ask_price: float | None = None
    ask_qty: int | None = None
    prev_oi: int | None = None
    vega: float | None = None
    theta: float | None = None
    gamma: float | None = None
    delta: float | None = None
    iv: float | None = None
    iv_percent: float | None = None
    pop_percent: float | None = None


@dataclass(frozen=True, slots=True)
class UpstoxStrike:
    """One strike row; ``call``/``put`` are None when the broker sent no such leg."""

    strike: Decimal
    pcr: float | None
    underlying_spot_price: float | None
    call: UpstoxOptionLeg | None
    put: UpstoxOptionLeg | None


@dataclass(frozen=True, slots=True)
class UpstoxOptionChain:
    """An option chain, strikes ascending; the spot is the first one a strike row carried."""

    instrument_key: str
    expiry: date
    underlying_spot_price: float | None
    strikes: tuple[UpstoxStrike, ...]


@dataclass(frozen=True, slots=True)
class UpstoxContract:
    """One option contract from ``/v2/option/contract``."""

    instrument_key: str
    expiry: date
    strike_price: Decimal
    instrument_type: str
    trading_symbol: str | None = None
    exchange_token: str | None = None
    name: str | None = None
    segment: str | None = None
    exchange: str | None = None
    lot_size: int | None = None
    minimum_lot: int | None = None
    freeze_quantity: float | None = None
    tick_size: float | None = None
    underlying_key: str | None = None
    underlying_type: str | None = None
    underlying_symbol: str | None = None
    weekly: bool | None = None


@dataclass(frozen=True, slots=True)
class UpstoxProfile:
    """The user profile (``GET /v2/user/profile``)."""

    user_id: str
    user_name: str | None
    email: str | None
    broker: str | None
    user_type: str | None
    is_active: bool | None
    exchanges: tuple[str, ...]
    products: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpstoxToken:
    """A token from the code exchange; tokens are left out of ``repr``."""

    user_id: str
    user_name: str | None
    email: str | None
    access_token: str = field(repr=False)
    extended_token: str | None = field(repr=False)
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class UpstoxTokenRequest:
    """A v3 token request awaiting the user's approval in the Upstox app."""

    authorization_expiry: datetime
    notifier_url: str | None


@dataclass(frozen=True, slots=True)
class UpstoxNotifierToken:
    """The token the broker POSTs to our notifier webhook; the token is left out of ``repr``."""

    client_id: str
    user_id: str
    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime
    issued_at: datetime
    message_type: str


def upstox_token_expiry(issued_at: datetime) -> datetime:
    """Return when a token issued at ``issued_at`` expires: the next 03:30 IST, in IST.

    Issued 02:30 IST → 03:30 the same day; issued 03:30 or later → 03:30 the next day.
    Raises ``ValueError`` for a naive datetime.
    """
    if issued_at.tzinfo is None or issued_at.utcoffset() is None:
        raise ValueError("issued_at must be timezone-aware")
    local = issued_at.astimezone(IST)
    cutoff = local.replace(hour=3, minute=30, second=0, microsecond=0)
    return cutoff if local < cutoff else cutoff + timedelta(days=1)


_NOTIFIER_FIELDS = (
    "client_id",
    "user_id",
    "access_token",
    "token_type",
    "expires_at",
    "issued_at",
    "message_type",
)


def parse_notifier_payload(body: bytes) -> UpstoxNotifierToken:
    """Parse the notifier webhook body (a JSON object of strings, see upstox.md §1).

    Raises ``ValueError`` with a message naming what is wrong — never quoting the token —
    for bytes that are not a UTF-8 JSON object, a missing/empty/non-string field, a
    ``message_type`` other than ``"access_token"``, a ``token_type`` other than Bearer, or
    times that are not epoch milliseconds.
    """
    try:
        payload = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("Upstox notifier body is not UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise ValueError(f"Upstox notifier body is a JSON {type(payload).__name__}, not an object")
    wrong = [k for k in _NOTIFIER_FIELDS if not isinstance(payload.get(k), str) or not payload[k]]
    if wrong:
        raise ValueError(
            f"Upstox notifier body lacks non-empty string field(s): {', '.join(wrong)}"
        )
    if payload["message_type"] != "access_token":
        raise ValueError(
            f"Upstox notifier message_type is {payload['message_type'][:40]!r}, "
            "expected 'access_token'"
        )
    if payload["token_type"].lower() != "bearer":
        raise ValueError(
            f"Upstox notifier token_type is {payload['token_type'][:40]!r}, expected 'Bearer'"
        )
    times = {}
    for key in ("expires_at", "issued_at"):
        # 13 digits: epoch milliseconds until the year 2286; more would overflow a datetime.
        if not (payload[key].isascii() and payload[key].isdigit() and len(payload[key]) <= 13):
            raise ValueError(f"Upstox notifier {key} is not epoch milliseconds")
        times[key] = datetime.fromtimestamp(int(payload[key]) / 1000, tz=UTC)
    return UpstoxNotifierToken(
        client_id=payload["client_id"],
        user_id=payload["user_id"],
        access_token=payload["access_token"],
        token_type=payload["token_type"],
        expires_at=times["expires_at"],
        issued_at=times["issued_at"],
        message_type=payload["message_type"],
    )


def unwrap_data(answer: Any) -> Any:
    """The ``data`` of a ``{"status": "success", "data": ...}`` answer. Raises ``PayloadError``."""
    body = as_mapping(answer, "answer")
    if body.get("status") != "success":
        raise PayloadError(f"status is {str(body.get('status'))[:40]!r}, expected 'success'")
    if "data" not in body:
        raise PayloadError("data is missing")
    return body["data"]


def _optional_mapping(row: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = row.get(key)
    return {} if value is None else as_mapping(value, key)


def _leg(value: Any, where: str) -> UpstoxOptionLeg | None:
    if value is None:
        return None
    leg = as_mapping(value, where)
    if not leg:
        return None
    market = _optional_mapping(leg, "market_data")
    greeks = _optional_mapping(leg, "option_greeks")
    iv = opt_float(greeks, "iv")
    return UpstoxOptionLeg(
        instrument_key=req_str(leg, "instrument_key"),
        ltp=opt_float(market, "ltp"),
        volume=opt_int(market, "volume"),
        oi=opt_int(market, "oi"),
        close_price=opt_float(market, "close_price"),
        bid_price=opt_float(market, "bid_price"),
        bid_qty=opt_int(market, "bid_qty"),
        ask_price=opt_float(market, "ask_price"),
        ask_qty=opt_int(market, "ask_qty"),
        prev_oi=opt_int(market, "prev_oi"),
        vega=opt_float(greeks, "vega"),
        theta=opt_float(greeks, "theta"),
        gamma=opt_float(greeks, "gamma"),
        delta=opt_float(greeks, "delta"),
        iv=percent_to_fraction(iv),
        iv_percent=iv,
        pop_percent=opt_float(greeks, "pop"),
    )


def parse_option_chain(answer: Any, *, instrument_key: str, expiry: date) -> UpstoxOptionChain:
    """Parse ``{"status": "success", "data": [strike rows]}``. Raises ``PayloadError``."""
    rows = unwrap_data(answer)
    if not isinstance(rows, list):
        raise PayloadError("data is not a list of strikes")
    strikes = []
    for index, row in enumerate(rows):
        row = as_mapping(row, f"data[{index}]")
        strikes.append(
            UpstoxStrike(
                strike=parse_decimal(row.get("strike_price"), f"data[{index}].strike_price"),
                pcr=opt_float(row, "pcr"),
                underlying_spot_price=opt_float(row, "underlying_spot_price"),
                call=_leg(row.get("call_options"), f"data[{index}].call_options"),
                put=_leg(row.get("put_options"), f"data[{index}].put_options"),
            )
        )
    strikes.sort(key=lambda s: s.strike)
    spots = (s.underlying_spot_price for s in strikes if s.underlying_spot_price is not None)
    return UpstoxOptionChain(instrument_key, expiry, next(spots, None), tuple(strikes))


def parse_contracts(answer: Any) -> list[UpstoxContract]:
    """Parse the ``/v2/option/contract`` answer. Raises ``PayloadError``."""
    rows = unwrap_data(answer)
    if not isinstance(rows, list):
        raise PayloadError("data is not a list of contracts")
    contracts = []
    for index, row in enumerate(rows):
        row = as_mapping(row, f"data[{index}]")
        try:
            expiry = date.fromisoformat(req_str(row, "expiry")[:10])
        except ValueError:
            raise PayloadError(f"data[{index}].expiry is not a YYYY-MM-DD date") from None
        weekly = row.get("weekly")
        contracts.append(
            UpstoxContract(
                instrument_key=req_str(row, "instrument_key"),
                expiry=expiry,
                strike_price=parse_decimal(row.get("strike_price"), f"data[{index}].strike"),
                instrument_type=req_str(row, "instrument_type"),
                trading_symbol=opt_str(row, "trading_symbol"),
                exchange_token=opt_str(row, "exchange_token"),
                name=opt_str(row, "name"),
                segment=opt_str(row, "segment"),
                exchange=opt_str(row, "exchange"),
                lot_size=opt_int(row, "lot_size"),
                minimum_lot=opt_int(row, "minimum_lot"),
                freeze_quantity=opt_float(row, "freeze_quantity"),
                tick_size=opt_float(row, "tick_size"),
                underlying_key=opt_str(row, "underlying_key"),
                underlying_type=opt_str(row, "underlying_type"),
                underlying_symbol=opt_str(row, "underlying_symbol"),
                weekly=weekly if isinstance(weekly, bool) else None,
            )
        )
    return contracts


def _str_tuple(row: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = row.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PayloadError(f"{key} is not a list")
    return tuple(str(item) for item in value)


def parse_profile(answer: Any) -> UpstoxProfile:
    """Parse the ``/v2/user/profile`` answer. Raises ``PayloadError``."""
    data = as_mapping(unwrap_data(answer), "data")
    active = data.get("is_active")
    return UpstoxProfile(
        user_id=req_str(data, "user_id"),
        user_name=opt_str(data, "user_name"),
        email=opt_str(data, "email"),
        broker=opt_str(data, "broker"),
        user_type=opt_str(data, "user_type"),
        is_active=active if isinstance(active, bool) else None,
        exchanges=_str_tuple(data, "exchanges"),
        products=_str_tuple(data, "products"),
    )


def parse_feed_authorization(answer: Any) -> str:
    """Return the single-use feed URI (``authorized_redirect_uri`` or ``authorizedRedirectUri``)."""
    data = as_mapping(unwrap_data(answer), "data")
    uri = opt_str(data, "authorized_redirect_uri") or opt_str(data, "authorizedRedirectUri")
    if not uri:
        raise PayloadError("neither authorized_redirect_uri nor authorizedRedirectUri is present")
    return uri


def parse_token(answer: Any, *, issued_at: datetime) -> UpstoxToken:
    """Parse the (unwrapped) code-exchange answer. Raises ``PayloadError``, never quoting tokens."""
    body = as_mapping(answer, "answer")
    return UpstoxToken(
        user_id=req_str(body, "user_id"),
        user_name=opt_str(body, "user_name"),
        email=opt_str(body, "email"),
        access_token=req_str(body, "access_token"),
        extended_token=opt_str(body, "extended_token") or None,
        issued_at=issued_at,
        expires_at=upstox_token_expiry(issued_at),
    )


def parse_token_request(answer: Any) -> UpstoxTokenRequest:
    """Parse the v3 token-request answer (``authorization_expiry`` in epoch ms)."""
    data = as_mapping(unwrap_data(answer), "data")
    return UpstoxTokenRequest(
        authorization_expiry=from_epoch(req_str(data, "authorization_expiry"), "expiry"),
        notifier_url=opt_str(data, "notifier_url"),
    )
