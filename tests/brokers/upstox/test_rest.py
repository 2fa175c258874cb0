"""UpstoxRestClient against httpx.MockTransport with bodies from docs/protocols/upstox.md."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.exceptions import BrokerError
from brokers.http import IST, RetryPolicy
from brokers.ratelimit import upstox_limiter
from brokers.upstox.answers import parse_notifier_payload, upstox_token_expiry
from brokers.upstox.rest import UpstoxRestClient, upstox_error

TOKEN = "FAKE-TOKEN-upstox-eyJ0eXAi.fake.sig"
SECRET = "FAKE-SECRET-upstox-api-secret"
BASE = "https://api.upstox.com"
ISSUED = datetime(2025, 2, 13, 10, 0, tzinfo=IST)


def leg(key: str, *, iv: float = 262.31, **market: Any) -> dict[str, Any]:
    return {
        "instrument_key": key,
        "market_data": {
            "ltp": 2449.9,
            "volume": 0,
            "oi": 750,
            "close_price": 2449.9,
            "bid_price": 1856.65,
            "bid_qty": 1125,
            "ask_price": 1941.65,
            "ask_qty": 1125,
            "prev_oi": 1500,
            **market,
        },
        "option_greeks": {
            "vega": 4.1731,
            "theta": -472.8941,
            "gamma": 0.0001,
            "delta": 0.743,
            "iv": iv,
            "pop": 40.56,
        },
    }


def strike(price: float, **legs: Any) -> dict[str, Any]:
    return {
        "expiry": "2025-02-13",
        "pcr": 7515.3,
        "strike_price": price,
        "underlying_key": "NSE_INDEX|Nifty 50",
        "underlying_spot_price": 22976.2,
        **legs,
    }


CHAIN_BODY = {
    "status": "success",
    "data": [
        strike(
            21150.0,
            call_options=leg("NSE_FO|51061"),
            put_options={"instrument_key": "NSE_FO|51062"},
        ),
        strike(21100, call_options=leg("NSE_FO|51059"), put_options=leg("NSE_FO|51060", iv=13.34)),
        strike(21200.5, put_options=leg("NSE_FO|51064")),
    ],
}

PROFILE_BODY = {
    "status": "success",
    "data": {
        "email": "user@example.invalid",
        "exchanges": ["NSE", "NFO", "BSE"],
        "products": ["D", "I"],
        "broker": "UPSTOX",
        "user_id": "AB1234",
        "user_name": "Test User",
        "order_types": ["MARKET", "LIMIT"],
        "user_type": "individual",
        "poa": False,
        "is_active": True,
    },
}


def envelope(code: str, message: str, *, camel_only: bool = False) -> dict[str, Any]:
    error: dict[str, Any] = {"errorCode": code, "message": message, "propertyPath": None}
    if not camel_only:
        error.update({"error_code": code, "property_path": None, "invalid_value": None})
    return {"status": "error", "errors": [error]}


class Broker:
    """A scripted Upstox: answers in order (the last one repeats) and records requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def client_for(
    broker: Broker, *, token: str | None = TOKEN, attempts: int = 3, sleeps: Sleeps | None = None
) -> UpstoxRestClient:
    return UpstoxRestClient(
        BASE,
        access_token=token,
        transport=httpx.MockTransport(broker),
        retry=RetryPolicy(attempts=attempts, base=0.25, cap=1.0),
        limiter=upstox_limiter(sleep=Sleeps()),
        sleep=sleeps or Sleeps(),
        random=lambda: 1.0,
        now=lambda: ISSUED,
    )


# --- happy paths ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_option_chain_parses_legs_with_iv_as_a_fraction() -> None:
    broker = Broker(ok(CHAIN_BODY))
    async with client_for(broker) as client:
        chain = await client.option_chain("NSE_INDEX|Nifty 50", date(2025, 2, 13))

    assert chain.underlying_spot_price == 22976.2
    assert [s.strike for s in chain.strikes] == [
        Decimal("21100"),
        Decimal("21150"),
        Decimal("21200.5"),
    ]
    row = chain.strikes[0]
    assert row.pcr == 7515.3
    assert row.call is not None and row.put is not None
    call = row.call
    assert call.instrument_key == "NSE_FO|51059"
    assert (call.ltp, call.volume, call.oi, call.close_price, call.prev_oi) == (
        2449.9,
        0,
        750,
        2449.9,
        1500,
    )
    assert (call.bid_price, call.bid_qty, call.ask_price, call.ask_qty) == (
        1856.65,
        1125,
        1941.65,
        1125,
    )
    assert (call.vega, call.theta, call.gamma, call.delta) == (4.1731, -472.8941, 0.0001, 0.743)
    assert call.iv == pytest.approx(2.6231)
    assert call.iv_percent == 262.31
    assert call.pop_percent == 40.56
    assert row.put.iv == pytest.approx(0.1334)


@pytest.mark.asyncio
async def test_option_chain_keeps_missing_legs_and_fields_as_none() -> None:
    async with client_for(Broker(ok(CHAIN_BODY))) as client:
        chain = await client.option_chain("NSE_INDEX|Nifty 50", date(2025, 2, 13))
    _, mid, high = chain.strikes
    assert high.call is None and high.put is not None
    assert mid.put is not None
    assert mid.put.ltp is None and mid.put.oi is None and mid.put.iv is None


@pytest.mark.asyncio
async def test_option_chain_query_is_percent_encoded_and_bearer_authorised() -> None:
    broker = Broker(ok(CHAIN_BODY))
    async with client_for(broker) as client:
        await client.option_chain("NSE_INDEX|Nifty 50", date(2025, 2, 13))
    (request,) = broker.requests
    assert request.url.raw_path == (
        b"/v2/option/chain?instrument_key=NSE_INDEX%7CNifty%2050&expiry_date=2025-02-13"
    )
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"


@pytest.mark.asyncio
async def test_empty_option_chain_has_no_strikes_and_no_spot() -> None:
    async with client_for(Broker(ok({"status": "success", "data": []}))) as client:
        chain = await client.option_chain("NSE_INDEX|Nifty 50", date(2025, 2, 13))
    assert chain.strikes == ()
    assert chain.underlying_spot_price is None


@pytest.mark.asyncio
async def test_option_contracts_parse_expiry_and_strike() -> None:
    body = {
        "status": "success",
        "data": [
            {
                "name": "NIFTY",
                "segment": "NSE_FO",
                "exchange": "NSE",
                "expiry": "2025-02-13",
                "weekly": True,
                "instrument_key": "NSE_FO|51059",
                "exchange_token": "51059",
                "trading_symbol": "NIFTY 21100 CE 13 FEB 25",
                "tick_size": 5.0,
                "lot_size": 75,
                "instrument_type": "CE",
                "freeze_quantity": 1800.0,
                "underlying_key": "NSE_INDEX|Nifty 50",
                "underlying_type": "INDEX",
                "underlying_symbol": "NIFTY",
                "strike_price": 21100.0,
                "minimum_lot": 75,
            }
        ],
    }
    broker = Broker(ok(body))
    async with client_for(broker) as client:
        (contract,) = await client.option_contracts("NSE_INDEX|Nifty 50", date(2025, 2, 13))
        await client.option_contracts("NSE_INDEX|Nifty 50")
    assert contract.expiry == date(2025, 2, 13)
    assert contract.strike_price == Decimal("21100")
    assert (contract.lot_size, contract.instrument_type, contract.weekly) == (75, "CE", True)
    assert "expiry_date=2025-02-13" in str(broker.requests[0].url)
    assert "expiry_date" not in str(broker.requests[1].url)


@pytest.mark.asyncio
async def test_profile_reads_the_user() -> None:
    async with client_for(Broker(ok(PROFILE_BODY))) as client:
        profile = await client.profile()
    assert (profile.user_id, profile.is_active, profile.exchanges) == (
        "AB1234",
        True,
        ("NSE", "NFO", "BSE"),
    )


@pytest.mark.parametrize(
    "data",
    [
        {"authorized_redirect_uri": "wss://feed.invalid/v3?requestId=r&code=c"},
        {"authorizedRedirectUri": "wss://feed.invalid/v3?requestId=r&code=c"},
        {
            "authorized_redirect_uri": "wss://feed.invalid/v3?requestId=r&code=c",
            "authorizedRedirectUri": "wss://feed.invalid/v3?requestId=r&code=c",
        },
    ],
)
@pytest.mark.asyncio
async def test_authorize_feed_reads_either_key(data: dict[str, str]) -> None:
    broker = Broker(ok({"status": "success", "data": data}))
    async with client_for(broker) as client:
        assert await client.authorize_feed() == "wss://feed.invalid/v3?requestId=r&code=c"
    assert broker.requests[0].url.path == "/v3/feed/market-data-feed/authorize"


@pytest.mark.asyncio
async def test_exchange_code_posts_the_form_and_computes_the_expiry() -> None:
    body = {
        "email": "user@example.invalid",
        "exchanges": ["NSE"],
        "products": ["D"],
        "broker": "UPSTOX",
        "user_id": "AB1234",
        "user_name": "Test User",
        "order_types": ["MARKET"],
        "user_type": "individual",
        "poa": False,
        "is_active": True,
        "access_token": TOKEN,
        "extended_token": None,
    }
    broker = Broker(ok(body))
    async with client_for(broker, token=None) as client:
        token = await client.exchange_code(
            code="FAKE-CODE-1",
            client_id="api-key",
            client_secret=SECRET,
            redirect_uri="https://x/cb",
        )
    assert (token.user_id, token.access_token, token.extended_token) == ("AB1234", TOKEN, None)
    assert token.issued_at == ISSUED
    assert token.expires_at == datetime(2025, 2, 14, 3, 30, tzinfo=IST)
    assert TOKEN not in repr(token)
    (request,) = broker.requests
    assert request.url.path == "/v2/login/authorization/token"
    assert "authorization" not in request.headers
    assert parse_qs(request.content.decode()) == {
        "code": ["FAKE-CODE-1"],
        "client_id": ["api-key"],
        "client_secret": [SECRET],
        "redirect_uri": ["https://x/cb"],
        "grant_type": ["authorization_code"],
    }


@pytest.mark.asyncio
async def test_request_token_posts_the_secret_and_reads_the_expiry() -> None:
    body = {
        "status": "success",
        "data": {"authorization_expiry": "1740729566039", "notifier_url": "https://x/notify"},
    }
    broker = Broker(ok(body))
    async with client_for(broker, token=None) as client:
        pending = await client.request_token(client_id="api-key", client_secret=SECRET)
    assert pending.authorization_expiry == datetime(2025, 2, 28, 7, 59, 26, 39000, tzinfo=UTC)
    assert pending.notifier_url == "https://x/notify"
    assert broker.requests[0].url.path == "/v3/login/auth/token/request/api-key"
    assert json.loads(broker.requests[0].content) == {"client_secret": SECRET}


@pytest.mark.asyncio
async def test_logout_sends_delete_with_the_token() -> None:
    broker = Broker(ok({"status": "success", "data": True}))
    async with client_for(broker) as client:
        assert await client.logout() is None
    assert broker.requests[0].method == "DELETE"
    assert broker.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


# --- token expiry and notifier --------------------------------------------------------------


@pytest.mark.parametrize(
    ("issued", "expires"),
    [
        (datetime(2025, 2, 13, 2, 30, tzinfo=IST), datetime(2025, 2, 13, 3, 30, tzinfo=IST)),
        (datetime(2025, 2, 13, 10, 0, tzinfo=IST), datetime(2025, 2, 14, 3, 30, tzinfo=IST)),
        (datetime(2025, 2, 13, 3, 30, tzinfo=IST), datetime(2025, 2, 14, 3, 30, tzinfo=IST)),
        (datetime(2025, 2, 13, 23, 59, tzinfo=IST), datetime(2025, 2, 14, 3, 30, tzinfo=IST)),
        # 21:30 UTC on the 12th is 03:00 IST on the 13th
        (datetime(2025, 2, 12, 21, 30, tzinfo=UTC), datetime(2025, 2, 13, 3, 30, tzinfo=IST)),
    ],
)
def test_token_expires_at_the_next_0330_ist(issued: datetime, expires: datetime) -> None:
    assert upstox_token_expiry(issued) == expires


@given(st.datetimes(timezones=st.just(UTC)))
def test_token_expiry_is_always_a_0330_ist_within_a_day(issued: datetime) -> None:
    expires = upstox_token_expiry(issued)
    local = expires.astimezone(IST)
    assert (local.hour, local.minute, local.second) == (3, 30, 0)
    assert timedelta(0) < expires - issued <= timedelta(days=1)


def test_token_expiry_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        upstox_token_expiry(datetime(2025, 2, 13, 10, 0))


def notifier_body(**changes: Any) -> bytes:
    payload: dict[str, Any] = {
        "client_id": "api-key",
        "user_id": "AB1234",
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_at": "1740769200000",
        "issued_at": "1740729566039",
        "message_type": "access_token",
    }
    payload.update(changes)
    return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()


def test_notifier_payload_parses_into_a_token() -> None:
    token = parse_notifier_payload(notifier_body())
    assert (token.client_id, token.user_id, token.access_token) == ("api-key", "AB1234", TOKEN)
    assert token.expires_at == datetime(2025, 2, 28, 19, 0, tzinfo=UTC)
    assert token.issued_at == datetime(2025, 2, 28, 7, 59, 26, 39000, tzinfo=UTC)
    assert TOKEN not in repr(token)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "not an object"),
        (notifier_body(message_type="order_update"), "message_type"),
        (notifier_body(token_type="MAC"), "token_type"),
        (notifier_body(access_token=...), "access_token"),
        (notifier_body(user_id=""), "user_id"),
        (notifier_body(expires_at=1740769200000), "expires_at"),
        (notifier_body(issued_at="yesterday"), "issued_at"),
        (notifier_body(issued_at="9" * 30), "issued_at"),  # would overflow a datetime
        (notifier_body(expires_at="١٧٤٠٧٦٩٢٠٠٠٠٠"), "expires_at"),  # non-ASCII digits
    ],
)
def test_bad_notifier_payload_raises_a_clear_value_error_without_the_token(
    body: bytes, match: str
) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        parse_notifier_payload(body)
    assert TOKEN not in str(caught.value)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "status", "advice"),
    [
        (
            ok(envelope("UDAPI100050", "Invalid token used to access API"), 401),
            "UDAPI100050",
            401,
            "expired at 03:30 IST or revoked",
        ),
        (
            ok(envelope("UDAPI100050", "Invalid token", camel_only=True), 401),
            "UDAPI100050",
            401,
            "Log in to Upstox",
        ),
        (
            ok(envelope("UDAPI100016", "Invalid Credentials"), 401),
            "UDAPI100016",
            401,
            "API key and secret",
        ),
        (
            ok(envelope("UDAPI100068", "Check your 'client_id' and 'redirect_uri'"), 400),
            "UDAPI100068",
            400,
            "redirect URI",
        ),
        (
            ok(envelope("UDAPI100067", "not allowed with extended_token"), 403),
            "UDAPI100067",
            403,
            "extended token",
        ),
        (httpx.Response(401, text="Unauthorized"), None, 401, "Log in to Upstox"),
        (ok(envelope("UDAPI1000XX", "Something new"), 400), "UDAPI1000XX", 400, "Something new"),
    ],
)
@pytest.mark.asyncio
async def test_permanent_errors_are_raised_at_once_saying_what_to_do(
    answer: httpx.Response, code: str | None, status: int, advice: str
) -> None:
    broker = Broker(answer)
    async with client_for(broker) as client:
        with pytest.raises(BrokerError) as caught:
            await client.profile()
    error = caught.value
    assert (error.code, error.http_status, error.permanent) == (code, status, True)
    assert advice in str(error)
    assert len(broker.requests) == 1


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        (ok(envelope("UDAPI10005", "Too Many Request Sent"), 429), "UDAPI10005", 429),
        (ok(envelope("UDAPI100500", "Something went wrong"), 500), "UDAPI100500", 500),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), None, 502),
        (httpx.Response(429), None, 429),
        (httpx.ReadTimeout("read timed out"), "timeout", None),
        (httpx.ConnectError("connection refused"), "network", None),
    ],
)
@pytest.mark.asyncio
async def test_transient_errors_are_retried_then_raised_as_transient(
    answer: httpx.Response | Exception, code: str | None, status: int | None
) -> None:
    sleeps = Sleeps()
    broker = Broker(answer)
    async with client_for(broker, attempts=4, sleeps=sleeps) as client:
        with pytest.raises(BrokerError) as caught:
            await client.option_chain("NSE_INDEX|Nifty 50", date(2025, 2, 13))
    assert (caught.value.code, caught.value.http_status, caught.value.permanent) == (
        code,
        status,
        False,
    )
    assert len(broker.requests) == 4
    assert sleeps.delays == [0.25, 0.5, 1.0]


@pytest.mark.asyncio
async def test_rate_limited_request_succeeds_after_backoff() -> None:
    limited = ok(envelope("UDAPI10005", "Too Many Request Sent"), 429)
    broker = Broker(limited, limited, ok(PROFILE_BODY))
    async with client_for(broker, attempts=3) as client:
        assert (await client.profile()).user_id == "AB1234"
    assert len(broker.requests) == 3


@pytest.mark.asyncio
async def test_calls_needing_a_token_fail_permanently_without_one() -> None:
    broker = Broker(ok(PROFILE_BODY))
    async with client_for(broker, token=None) as client:
        with pytest.raises(BrokerError) as caught:
            await client.profile()
    assert caught.value.code == "no-token"
    assert caught.value.permanent
    assert broker.requests == []


@pytest.mark.asyncio
async def test_authorize_feed_without_a_uri_is_an_unexpected_response() -> None:
    async with client_for(Broker(ok({"status": "success", "data": {}}))) as client:
        with pytest.raises(BrokerError) as caught:
            await client.authorize_feed()
    assert caught.value.code == "unexpected-response"
    assert caught.value.permanent


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, text="oops"),
        httpx.ReadTimeout("read timed out"),
        ok(envelope("UDAPI100016", "Invalid Credentials"), 401),
    ],
)
@pytest.mark.asyncio
async def test_failed_code_exchange_is_permanent_and_never_resent(
    answer: httpx.Response | Exception,
) -> None:
    broker = Broker(answer)
    async with client_for(broker, token=None, attempts=3) as client:
        with pytest.raises(BrokerError) as caught:
            await client.exchange_code(
                code="FAKE-CODE-2", client_id="k", client_secret=SECRET, redirect_uri="https://x"
            )
    assert caught.value.permanent
    assert len(broker.requests) == 1
    assert "log in again" in str(caught.value).lower()
    assert SECRET not in str(caught.value)
    assert "FAKE-CODE-2" not in str(caught.value)


@pytest.mark.asyncio
async def test_request_token_is_not_resent_after_a_timeout() -> None:
    broker = Broker(httpx.ReadTimeout("read timed out"))
    async with client_for(broker, token=None, attempts=3) as client:
        with pytest.raises(BrokerError):
            await client.request_token(client_id="k", client_secret=SECRET)
    assert len(broker.requests) == 1


@pytest.mark.asyncio
async def test_errors_and_logs_never_carry_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = ok(envelope("UDAPI100500", f"failed for Bearer {TOKEN}"), 500)
    broker = Broker(
        echo,
        httpx.ConnectError(f"refused {TOKEN}"),
        ok(envelope("UDAPI100050", f"bad {TOKEN}"), 401),
    )
    async with client_for(broker, attempts=3) as client:
        with pytest.raises(BrokerError) as caught:
            await client.profile()
    assert caught.value.code == "UDAPI100050"
    assert "retrying" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success", "data": {"not": "a list"}},
        {"status": "success", "data": [{"strike_price": "x"}]},
        {"status": "success", "data": [strike(21100, call_options={"market_data": {}})]},
        {"status": "partial", "data": []},
        {"data": []},
    ],
)
@pytest.mark.asyncio
async def test_an_unexpected_chain_shape_is_a_permanent_unexpected_response(body: Any) -> None:
    async with client_for(Broker(ok(body))) as client:
        with pytest.raises(BrokerError) as caught:
            await client.option_chain("NSE_INDEX|Nifty 50", date(2025, 2, 13))
    assert caught.value.code == "unexpected-response"
    assert caught.value.permanent


def test_success_bodies_map_to_no_error() -> None:
    assert upstox_error(200, CHAIN_BODY) is None
    assert upstox_error(200, {"email": "x", "access_token": TOKEN}) is None
    assert upstox_error(204, None) is None


def test_error_envelope_with_status_200_is_still_an_error() -> None:
    error = upstox_error(200, envelope("UDAPI100050", "Invalid token used to access API"))
    assert error is not None
    assert error.permanent
    assert error.code == "UDAPI100050"


@pytest.mark.asyncio
async def test_code_exchange_retry_logs_never_carry_the_client_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    limited = ok(envelope("UDAPI10005", f"slow down, client_secret {SECRET}"), 429)
    broker = Broker(limited, ok({"user_id": "AB1234", "access_token": TOKEN}))
    async with client_for(broker, token=None) as client:
        token = await client.exchange_code(
            code="FAKE-CODE-3", client_id="k", client_secret=SECRET, redirect_uri="https://x"
        )
    assert token.user_id == "AB1234"
    assert len(broker.requests) == 2  # 429 means not processed: safe to resend
    assert "retrying" in caplog.text
    assert SECRET not in caplog.text
