"""DhanHQ v2 REST answers: their shapes and the parsers that build them.

Pure Python, no Django. Wire facts: docs/protocols/dhan.md §2. A field the broker did not send
is None, never 0. The parsers raise :class:`~brokers.exceptions.PayloadError` when an answer is
not in the documented shape (the client turns it into a permanent ``BrokerError``); they never
quote a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from brokers.http import (
    PayloadError,
    as_mapping,
    opt_float,
    opt_int,
    opt_str,
    parse_broker_datetime,
    parse_decimal,
    percent_to_fraction,
    req_str,
)


@dataclass(frozen=True, slots=True)
class DhanOptionLeg:
    """One call or put of a strike. A field the broker did not send is None, never 0.

    ``implied_volatility`` is a fraction (0.0979 = 9.79 %); ``implied_volatility_percent`` is
    the value as sent.
    """

    security_id: int
    last_price: float | None = None
    oi: int | None = None
    previous_close_price: float | None = None
    previous_oi: int | None = None
    volume: int | None = None
    previous_volume: int | None = None
    top_bid_price: float | None = None
    top_bid_quantity: int | None = None
    top_ask_price: float | None = None
    top_ask_quantity: int | None = None
    average_price: float | None = None
    implied_volatility: float | None = None
    implied_volatility_percent: float | None = None
    delta: float | None = None
    theta: float | None = None
    gamma: float | None = None
    vega: float | None = None


@dataclass(frozen=True, slots=True)
class DhanStrike:
    """One strike row; ``ce``/``pe`` are None when the broker sent no such leg."""

    strike: Decimal
    ce: DhanOptionLeg | None
    pe: DhanOptionLeg | None


@dataclass(frozen=True, slots=True)
class DhanOptionChain:
    """An option chain: the underlying's last price and the strikes in ascending order."""

    underlying_scrip: int
    underlying_seg: str
    expiry: date
    underlying_last_price: float | None
    strikes: tuple[DhanStrike, ...]


@dataclass(frozen=True, slots=True)
class DhanQuote:
    """A market-quote row: ``last_price`` when sent, and every field as the broker sent it."""

    segment: str
    security_id: int
    last_price: float | None
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DhanProfile:
    """The account profile; ``token_validity`` is an aware datetime (the broker sends IST)."""

    client_id: str
    token_validity: datetime | None
    data_plan: str | None
    data_validity: str | None
    active_segment: str | None
    ddpi: str | None
    mtf: str | None

    @property
    def has_data_plan(self) -> bool:
        """True when DhanHQ reports the Data API plan as active."""
        return (self.data_plan or "").strip().lower() == "active"


@dataclass(frozen=True, slots=True)
class DhanToken:
    """A renewed access token; the token is left out of ``repr``."""

    client_id: str
    client_name: str | None
    access_token: str = field(repr=False)
    expires_at: datetime


def parse_expiry_list(answer: Any) -> tuple[date, ...]:
    """Parse ``{"data": ["2024-10-17", ...]}`` into ascending dates. Raises ``PayloadError``."""
    data = as_mapping(answer, "answer").get("data")
    if not isinstance(data, list):
        raise PayloadError("data is not a list of expiry dates")
    try:
        return tuple(sorted({date.fromisoformat(str(item)[:10]) for item in data}))
    except ValueError:
        raise PayloadError("data holds a value that is not a YYYY-MM-DD date") from None


def parse_option_chain(
    answer: Any, *, underlying_scrip: int, underlying_seg: str, expiry: date
) -> DhanOptionChain:
    """Parse ``{"data": {"last_price", "oc": {"25650.000000": {"ce", "pe"}}}}``.

    Strike keys become Decimals (``Decimal("25650")``); IV percent becomes a fraction.
    Raises ``PayloadError`` when the shape is not the documented one.
    """
    data = as_mapping(as_mapping(answer, "answer").get("data"), "data")
    chain = as_mapping(data.get("oc"), "data.oc")
    strikes = []
    for key, row in chain.items():
        row = as_mapping(row, f"strike {key}")
        strikes.append(
            DhanStrike(
                strike=parse_decimal(key, "strike"),
                ce=_leg(row.get("ce"), f"{key}.ce"),
                pe=_leg(row.get("pe"), f"{key}.pe"),
            )
        )
    strikes.sort(key=lambda s: s.strike)
    return DhanOptionChain(
        underlying_scrip=underlying_scrip,
        underlying_seg=underlying_seg,
        expiry=expiry,
        underlying_last_price=opt_float(data, "last_price"),
        strikes=tuple(strikes),
    )


def _leg(value: Any, where: str) -> DhanOptionLeg | None:
    if value is None:
        return None
    leg = as_mapping(value, where)
    if not leg:
        return None
    security_id = opt_int(leg, "security_id")
    if security_id is None:
        raise PayloadError(f"{where}.security_id is missing")
    greeks = leg.get("greeks")
    greeks = as_mapping(greeks, f"{where}.greeks") if greeks is not None else {}
    iv = opt_float(leg, "implied_volatility")
    return DhanOptionLeg(
        security_id=security_id,
        last_price=opt_float(leg, "last_price"),
        oi=opt_int(leg, "oi"),
        previous_close_price=opt_float(leg, "previous_close_price"),
        previous_oi=opt_int(leg, "previous_oi"),
        volume=opt_int(leg, "volume"),
        previous_volume=opt_int(leg, "previous_volume"),
        top_bid_price=opt_float(leg, "top_bid_price"),
        top_bid_quantity=opt_int(leg, "top_bid_quantity"),
        top_ask_price=opt_float(leg, "top_ask_price"),
        top_ask_quantity=opt_int(leg, "top_ask_quantity"),
        average_price=opt_float(leg, "average_price"),
        implied_volatility=percent_to_fraction(iv),
        implied_volatility_percent=iv,
        delta=opt_float(greeks, "delta"),
        theta=opt_float(greeks, "theta"),
        gamma=opt_float(greeks, "gamma"),
        vega=opt_float(greeks, "vega"),
    )


def parse_quotes(answer: Any) -> dict[tuple[str, int], DhanQuote]:
    """Parse ``{"data": {"NSE_FNO": {"49081": {...}}}}``. Raises ``PayloadError``."""
    data = as_mapping(as_mapping(answer, "answer").get("data"), "data")
    quotes: dict[tuple[str, int], DhanQuote] = {}
    for segment, rows in data.items():
        for security_id, row in as_mapping(rows, f"data.{segment}").items():
            row = as_mapping(row, f"data.{segment}.{security_id}")
            sid = opt_int({"security_id": security_id}, "security_id")
            assert sid is not None  # a dict key is never None
            quotes[(segment, sid)] = DhanQuote(segment, sid, opt_float(row, "last_price"), row)
    return quotes


def parse_profile(answer: Any) -> DhanProfile:
    """Parse the ``/v2/profile`` answer (not wrapped in data). Raises ``PayloadError``."""
    body = as_mapping(answer, "answer")
    validity = body.get("tokenValidity")
    return DhanProfile(
        client_id=req_str(body, "dhanClientId"),
        token_validity=None
        if validity in (None, "")
        else parse_broker_datetime(validity, "tokenValidity"),
        data_plan=opt_str(body, "dataPlan"),
        data_validity=opt_str(body, "dataValidity"),
        active_segment=opt_str(body, "activeSegment"),
        ddpi=opt_str(body, "ddpi"),
        mtf=opt_str(body, "mtf"),
    )


def parse_token(answer: Any) -> DhanToken:
    """Parse the ``/v2/RenewToken`` answer; expiry in ISO or ``dd/mm/yyyy HH:MM`` (naive = IST).

    Raises ``PayloadError`` without ever quoting the token.
    """
    body = as_mapping(answer, "answer")
    return DhanToken(
        client_id=req_str(body, "dhanClientId"),
        client_name=opt_str(body, "dhanClientName"),
        access_token=req_str(body, "accessToken"),
        expires_at=parse_broker_datetime(body.get("expiryTime"), "expiryTime"),
    )
