"""DhanRestClient against httpx.MockTransport with broker bodies from docs/protocols/dhan.md."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from brokers.dhan.rest import DhanRestClient, dhan_error
from brokers.exceptions import BrokerError
from brokers.http import IST, RetryPolicy
from brokers.ratelimit import dhan_limiters

TOKEN = "FAKE-TOKEN-dhan-eyJhbGciOi.fake.payload"
CLIENT_ID = "1100000001"
BASE = "https://api.dhan.co"

CHAIN_BODY = {
    "data": {
        "last_price": 25642.8,
        "oc": {
            "25700.000000": {
                "ce": {
                    "average_price": 120.35,
                    "greeks": {"delta": 0.4621, "theta": -14.23, "gamma": 0.0011, "vega": 12.1},
                    "implied_volatility": 9.79,
                    "last_price": 118.6,
                    "oi": 1523400,
                    "previous_close_price": 131.2,
                    "previous_oi": 1402350,
                    "previous_volume": 38120475,
                    "security_id": 42528,
                    "top_ask_price": 118.7,
                    "top_ask_quantity": 525,
                    "top_bid_price": 118.55,
                    "top_bid_quantity": 300,
                    "volume": 29011350,
                },
                "pe": {
                    "greeks": {"delta": -0.5379, "theta": -10.5, "gamma": 0.0011, "vega": 12.1},
                    "implied_volatility": 10.12,
                    "last_price": 172.05,
                    "oi": 998700,
                    "security_id": 42529,
                },
            },
            "25650.000000": {"pe": {"security_id": 42527, "last_price": 150.0}},
            "25750.500000": {"ce": {"security_id": 42530}},
        },
    },
    "status": "success",
}


class Broker:
    """A scripted DhanHQ: answers in order, records requests and the headers they carried."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[..., Any]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def dh(code: str, status: int, message: str = "see docs") -> httpx.Response:
    return ok({"errorType": "Some_Type", "errorCode": code, "errorMessage": message}, status)


def data_error(code: str, message: str, status: int = 400) -> httpx.Response:
    return ok({"status": "failed", "data": {code: message}}, status)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def client_for(
    broker: Broker,
    *,
    attempts: int = 3,
    sleeps: Sleeps | None = None,
    limiter_sleeps: Sleeps | None = None,
    clock: Callable[[], float] = lambda: 1_000.0,
) -> DhanRestClient:
    """A client whose retry backoff and rate-limit waits are recorded, not slept; its rate
    limits read ``clock`` (by default one that stands still)."""
    return DhanRestClient(
        BASE,
        CLIENT_ID,
        TOKEN,
        transport=httpx.MockTransport(broker),
        retry=RetryPolicy(attempts=attempts, base=0.5, cap=2.0),
        limiters=dhan_limiters(clock=clock, sleep=limiter_sleeps or Sleeps()),
        sleep=sleeps or Sleeps(),
        random=lambda: 1.0,
    )


# --- happy paths ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_option_chain_parses_strikes_legs_and_iv_as_a_fraction() -> None:
    broker = Broker(ok(CHAIN_BODY))
    async with client_for(broker) as client:
        chain = await client.option_chain(13, "IDX_I", date(2024, 10, 31))

    assert chain.underlying_last_price == 25642.8
    assert [s.strike for s in chain.strikes] == [
        Decimal("25650"),
        Decimal("25700"),
        Decimal("25750.5"),
    ]
    ce = chain.strikes[1].ce
    assert ce is not None
    assert ce.security_id == 42528
    assert ce.implied_volatility == pytest.approx(0.0979)
    assert ce.implied_volatility_percent == 9.79
    assert (ce.delta, ce.theta, ce.gamma, ce.vega) == (0.4621, -14.23, 0.0011, 12.1)
    assert (ce.top_bid_price, ce.top_bid_quantity) == (118.55, 300)
    assert (ce.top_ask_price, ce.top_ask_quantity) == (118.7, 525)
    assert (ce.oi, ce.previous_oi, ce.volume, ce.previous_volume) == (
        1523400,
        1402350,
        29011350,
        38120475,
    )
    assert (ce.previous_close_price, ce.average_price) == (131.2, 120.35)


@pytest.mark.asyncio
async def test_option_chain_keeps_missing_legs_and_fields_as_none() -> None:
    async with client_for(Broker(ok(CHAIN_BODY))) as client:
        chain = await client.option_chain(13, "IDX_I", date(2024, 10, 31))

    low, mid, high = chain.strikes
    assert low.ce is None and low.pe is not None
    assert high.pe is None and high.ce is not None
    assert high.ce.last_price is None
    assert high.ce.implied_volatility is None
    assert high.ce.delta is None
    assert mid.pe is not None and mid.pe.average_price is None and mid.pe.volume is None


@pytest.mark.asyncio
async def test_option_chain_sends_the_documented_body_and_headers() -> None:
    broker = Broker(ok(CHAIN_BODY))
    async with client_for(broker) as client:
        await client.option_chain(13, "IDX_I", date(2024, 10, 31))

    (request,) = broker.requests
    assert request.method == "POST"
    assert request.url == f"{BASE}/v2/optionchain"
    assert json.loads(request.content) == {
        "UnderlyingScrip": 13,
        "UnderlyingSeg": "IDX_I",
        "Expiry": "2024-10-31",
    }
    assert request.headers["access-token"] == TOKEN
    assert request.headers["client-id"] == CLIENT_ID
    assert request.headers["content-type"] == "application/json"


@pytest.mark.asyncio
async def test_identical_option_chain_request_right_after_is_served_without_a_call() -> None:
    broker = Broker(ok(CHAIN_BODY))
    async with client_for(broker) as client:
        first = await client.option_chain(13, "IDX_I", date(2024, 10, 31))
        second = await client.option_chain(13, "IDX_I", date(2024, 10, 31))
    assert first is second
    assert len(broker.requests) == 1


@pytest.mark.asyncio
async def test_a_different_option_chain_request_waits_out_the_3_5_second_spacing() -> None:
    waits = Sleeps()
    broker = Broker(ok(CHAIN_BODY))
    async with client_for(broker, limiter_sleeps=waits) as client:
        await client.option_chain(13, "IDX_I", date(2024, 10, 31))
        await client.option_chain(25, "IDX_I", date(2024, 10, 30))
    assert len(broker.requests) == 2
    assert waits.delays == [3.5]  # the clock stood still between them: the whole spacing


@pytest.mark.asyncio
async def test_expiry_list_returns_sorted_dates() -> None:
    broker = Broker(ok({"data": ["2024-10-24", "2024-10-17", "2024-10-31"], "status": "success"}))
    async with client_for(broker) as client:
        expiries = await client.expiry_list(13, "IDX_I")
    assert expiries == [date(2024, 10, 17), date(2024, 10, 24), date(2024, 10, 31)]
    assert json.loads(broker.requests[0].content) == {
        "UnderlyingScrip": 13,
        "UnderlyingSeg": "IDX_I",
    }
    assert broker.requests[0].url.path == "/v2/optionchain/expirylist"


@pytest.mark.asyncio
async def test_market_quote_keys_rows_by_segment_and_security_id() -> None:
    body = {
        "data": {
            "NSE_FNO": {
                "49081": {"last_price": 368.15},
                "49082": {"last_price": 694.35, "ohlc": {"open": 700.0}},
            }
        },
        "status": "success",
    }
    broker = Broker(ok(body))
    async with client_for(broker) as client:
        quotes = await client.market_quote("ltp", {"NSE_FNO": [49081, 49082]})
    assert quotes[("NSE_FNO", 49081)].last_price == 368.15
    assert quotes[("NSE_FNO", 49082)].fields["ohlc"] == {"open": 700.0}
    assert broker.requests[0].url.path == "/v2/marketfeed/ltp"
    assert json.loads(broker.requests[0].content) == {"NSE_FNO": [49081, 49082]}


@pytest.mark.asyncio
async def test_profile_reads_token_validity_as_ist() -> None:
    body = {
        "dhanClientId": CLIENT_ID,
        "tokenValidity": "30/03/2025 15:37",
        "activeSegment": "Equity, Derivative",
        "ddpi": "Active",
        "mtf": "Active",
        "dataPlan": "Active",
        "dataValidity": "2025-04-30 23:59:59.0",
    }
    async with client_for(Broker(ok(body))) as client:
        profile = await client.profile()
    assert profile.token_validity == datetime(2025, 3, 30, 15, 37, tzinfo=IST)
    assert profile.token_validity.astimezone(UTC) == datetime(2025, 3, 30, 10, 7, tzinfo=UTC)
    assert profile.has_data_plan
    assert profile.client_id == CLIENT_ID


@pytest.mark.asyncio
async def test_profile_without_data_plan_says_so() -> None:
    body = {"dhanClientId": CLIENT_ID, "tokenValidity": "30/03/2025 15:37", "dataPlan": "Deactive"}
    async with client_for(Broker(ok(body))) as client:
        assert not (await client.profile()).has_data_plan


@pytest.mark.parametrize(
    ("expiry_time", "expected"),
    [
        ("2025-03-31T15:37:00", datetime(2025, 3, 31, 15, 37, tzinfo=IST)),
        ("2025-03-31T10:07:00.000Z", datetime(2025, 3, 31, 10, 7, tzinfo=UTC)),
        ("31/03/2025 15:37", datetime(2025, 3, 31, 15, 37, tzinfo=IST)),
    ],
)
@pytest.mark.asyncio
async def test_renew_token_returns_the_new_token_and_its_expiry(
    expiry_time: str, expected: datetime
) -> None:
    new = "FAKE-TOKEN-dhan-renewed"
    body = {
        "dhanClientId": CLIENT_ID,
        "dhanClientName": "TEST USER",
        "accessToken": new,
        "expiryTime": expiry_time,
    }
    broker = Broker(ok(body))
    async with client_for(broker) as client:
        token = await client.renew_token()
    assert token.access_token == new
    assert token.expires_at == expected
    assert new not in repr(token)
    (request,) = broker.requests
    assert request.method == "GET"
    assert request.url.path == "/v2/RenewToken"
    assert request.headers["dhanClientId"] == CLIENT_ID
    assert request.headers["access-token"] == TOKEN


# --- input errors ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_market_quote_refuses_more_than_1000_ids_without_calling() -> None:
    broker = Broker(ok({}))
    async with client_for(broker) as client:
        with pytest.raises(ValueError, match="at most 1000"):
            await client.market_quote(
                "quote", {"NSE_FNO": list(range(600)), "BSE_FNO": list(range(401))}
            )
    assert broker.requests == []


@pytest.mark.parametrize(
    ("kind", "instruments", "match"),
    [
        ("depth", {"NSE_FNO": [1]}, "kind"),
        ("ltp", {"NSE_FO": [1]}, "segment"),
        ("ltp", {"NSE_FNO": ["49081"]}, "security id"),
        ("ltp", {"NSE_FNO": []}, "at least one"),
    ],
)
@pytest.mark.asyncio
async def test_market_quote_refuses_bad_arguments(kind: str, instruments: Any, match: str) -> None:
    async with client_for(Broker(ok({}))) as client:
        with pytest.raises(ValueError, match=match):
            await client.market_quote(kind, instruments)  # type: ignore[arg-type]


def test_client_without_a_token_fails_with_a_permanent_error_saying_what_to_do() -> None:
    with pytest.raises(BrokerError) as caught:
        DhanRestClient(BASE, CLIENT_ID, "  ")
    assert caught.value.permanent
    assert caught.value.code == "no-token"
    assert "admin → Broker accounts" in str(caught.value)


# --- broker errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "permanent", "status"),
    [
        (
            dh("DH-901", 401, "Client ID or user generated access token is invalid or expired."),
            "DH-901",
            True,
            401,
        ),
        (dh("DH-902", 403), "DH-902", True, 403),
        (dh("DH-903", 400), "DH-903", True, 400),
        (dh("DH-905", 400), "DH-905", True, 400),
        (dh("DH-906", 400), "DH-906", True, 400),
        (dh("DH-907", 400), "DH-907", True, 400),
        (data_error("806", "Data APIs not subscribed"), "806", True, 400),
        (data_error("807", "Access token is expired"), "807", True, 400),
        (data_error("808", "Authentication Failed"), "808", True, 400),
        (data_error("809", "Access token is invalid"), "809", True, 400),
        (data_error("810", "Client ID is invalid"), "810", True, 400),
        (data_error("811", "Invalid Expiry Date"), "811", True, 400),
        (data_error("812", "Invalid Date Format"), "812", True, 400),
        (data_error("813", "Invalid SecurityId"), "813", True, 400),
        (data_error("814", "Invalid Request"), "814", True, 400),
        (dh("DH-910", 400), "DH-910", True, 400),
    ],
)
@pytest.mark.asyncio
async def test_permanent_errors_are_raised_at_once_with_code_and_status(
    answer: httpx.Response, code: str, permanent: bool, status: int
) -> None:
    broker = Broker(answer)
    async with client_for(broker) as client:
        with pytest.raises(BrokerError) as caught:
            await client.option_chain(13, "IDX_I", date(2024, 10, 31))
    error = caught.value
    assert (error.code, error.permanent, error.http_status) == (code, permanent, status)
    assert error.broker == "dhan"
    assert len(broker.requests) == 1  # not retried


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        (dh("DH-904", 429, "Too many requests"), "DH-904", 429),
        (dh("DH-908", 500), "DH-908", 500),
        (dh("DH-909", 502), "DH-909", 502),
        (dh("DH-910", 503), "DH-910", 503),
        (data_error("805", "Too many requests"), "805", 400),
        (data_error("800", "Internal Server Error", 500), "800", 500),
        (httpx.Response(503, text="<html>Service Unavailable</html>"), None, 503),
        (httpx.Response(429), None, 429),
    ],
)
@pytest.mark.asyncio
async def test_transient_errors_are_retried_then_raised_as_transient(
    answer: httpx.Response, code: str | None, status: int
) -> None:
    sleeps = Sleeps()
    broker = Broker(answer)
    async with client_for(broker, attempts=3, sleeps=sleeps) as client:
        with pytest.raises(BrokerError) as caught:
            await client.expiry_list(13, "IDX_I")
    assert (caught.value.code, caught.value.permanent, caught.value.http_status) == (
        code,
        False,
        status,
    )
    assert len(broker.requests) == 3
    assert sleeps.delays == [0.5, 1.0]  # capped exponential backoff (random() = 1.0)


@pytest.mark.asyncio
async def test_rate_limited_call_succeeds_once_the_limit_clears() -> None:
    broker = Broker(dh("DH-904", 429), dh("DH-904", 429), ok(CHAIN_BODY))
    async with client_for(broker, attempts=4) as client:
        chain = await client.option_chain(13, "IDX_I", date(2024, 10, 31))
    assert len(broker.requests) == 3
    assert chain.underlying_last_price == 25642.8


@pytest.mark.asyncio
async def test_timeouts_are_retried_and_then_reported_as_transient() -> None:
    broker = Broker(httpx.ReadTimeout("timed out"))
    async with client_for(broker, attempts=3) as client:
        with pytest.raises(BrokerError) as caught:
            await client.profile()
    assert len(broker.requests) == 3
    assert caught.value.code == "timeout"
    assert not caught.value.permanent


@pytest.mark.asyncio
async def test_timeout_then_success_returns_the_answer() -> None:
    body = {"dhanClientId": CLIENT_ID, "tokenValidity": "30/03/2025 15:37", "dataPlan": "Active"}
    broker = Broker(httpx.ReadTimeout("timed out"), ok(body))
    async with client_for(broker) as client:
        assert (await client.profile()).client_id == CLIENT_ID
    assert len(broker.requests) == 2


@pytest.mark.asyncio
async def test_renew_token_is_not_resent_after_a_timeout() -> None:
    broker = Broker(httpx.ReadTimeout("timed out"))
    async with client_for(broker, attempts=3) as client:
        with pytest.raises(BrokerError):
            await client.renew_token()
    assert len(broker.requests) == 1


@pytest.mark.asyncio
async def test_dh901_message_says_what_to_do_and_never_shows_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"Invalid token {TOKEN}"  # a broker that echoes the token must not leak it
    async with client_for(Broker(dh("DH-901", 401, echo))) as client:
        with pytest.raises(BrokerError) as caught:
            await client.option_chain(13, "IDX_I", date(2024, 10, 31))
    text = str(caught.value)
    assert "paste a new token in admin → Broker accounts" in text
    assert "expired or invalid" in text
    assert TOKEN not in text
    assert TOKEN not in caplog.text


@pytest.mark.asyncio
async def test_retries_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = Broker(httpx.ConnectError(f"refused access-token={TOKEN}"), ok(CHAIN_BODY))
    async with client_for(broker) as client:
        await client.option_chain(13, "IDX_I", date(2024, 10, 31))
    assert "retrying" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"last_price": 1.0}, "status": "success"},  # no oc
        {"data": {"oc": {"not-a-strike": {}}}, "status": "success"},
        {"data": {"oc": {"25650.000000": {"ce": {"last_price": 1.0}}}}, "status": "success"},
        {"data": {"oc": {"25650.000000": {"ce": {"security_id": 1, "oi": "lots"}}}}},
        ["not", "an", "object"],
    ],
)
@pytest.mark.asyncio
async def test_an_unexpected_chain_shape_is_a_permanent_unexpected_response(body: Any) -> None:
    async with client_for(Broker(ok(body))) as client:
        with pytest.raises(BrokerError) as caught:
            await client.option_chain(13, "IDX_I", date(2024, 10, 31))
    assert caught.value.code == "unexpected-response"
    assert caught.value.permanent


@pytest.mark.asyncio
async def test_renew_token_without_a_token_in_the_answer_does_not_quote_the_body() -> None:
    body = {"dhanClientId": CLIENT_ID, "expiryTime": "31/03/2025 15:37"}
    async with client_for(Broker(ok(body))) as client:
        with pytest.raises(BrokerError) as caught:
            await client.renew_token()
    assert caught.value.code == "unexpected-response"
    assert "accessToken is missing" in str(caught.value)


@pytest.mark.asyncio
async def test_renew_token_with_an_unreadable_expiry_is_an_unexpected_response() -> None:
    body = {"dhanClientId": CLIENT_ID, "accessToken": "FAKE-TOKEN-new", "expiryTime": "soon"}
    async with client_for(Broker(ok(body))) as client:
        with pytest.raises(BrokerError) as caught:
            await client.renew_token()
    assert caught.value.code == "unexpected-response"
    assert "FAKE-TOKEN-new" not in str(caught.value)


def test_success_bodies_map_to_no_error() -> None:
    assert dhan_error(200, CHAIN_BODY) is None
    assert dhan_error(200, ["2024-10-17"]) is None
    assert dhan_error(200, None) is None


def test_failed_status_without_a_code_is_still_an_error() -> None:
    error = dhan_error(400, {"status": "failed", "data": "Something went wrong"})
    assert error is not None
    assert error.permanent
    assert "Something went wrong" in error.message


@pytest.mark.asyncio
async def test_network_error_text_never_carries_the_token() -> None:
    broker = Broker(httpx.ConnectError(f"refused while sending {TOKEN}"))
    async with client_for(broker, attempts=2) as client:
        with pytest.raises(BrokerError) as caught:
            await client.expiry_list(13, "IDX_I")
    assert caught.value.code == "network"
    assert not caught.value.permanent
    assert TOKEN not in str(caught.value)
    assert len(broker.requests) == 2


@pytest.mark.asyncio
async def test_option_chain_refuses_a_datetime_or_unknown_segment() -> None:
    broker = Broker(ok(CHAIN_BODY))
    async with client_for(broker) as client:
        with pytest.raises(ValueError, match="date"):
            await client.option_chain(13, "IDX_I", datetime(2024, 10, 31, tzinfo=UTC))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="segment"):
            await client.option_chain(13, "NSE_INDEX", date(2024, 10, 31))
    assert broker.requests == []
