"""The shared REST plumbing: redaction, backoff, transport errors, retries, payload coercion."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.exceptions import BrokerError
from brokers.http import (
    IST,
    NO_RETRY,
    JsonHttpClient,
    PayloadError,
    RetryPolicy,
    from_epoch,
    http_status_error,
    opt_float,
    opt_int,
    parse_broker_datetime,
    parse_decimal,
    redact,
    transport_error,
)

TOKEN = "FAKE-TOKEN-http-0123456789"


# --- redact -------------------------------------------------------------------------------


def test_redact_removes_the_token_from_the_dhan_feed_url() -> None:
    url = f"wss://api-feed.dhan.co?version=2&token={TOKEN}&clientId=1100000001&authType=2"
    cleaned = redact(url)
    assert TOKEN not in cleaned
    assert "token=***" in cleaned
    assert "clientId=1100000001" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        f"access-token: {TOKEN}",
        f"Authorization: Bearer {TOKEN}",
        f"headers={{'access-token': '{TOKEN}'}}",
        f'{{"access_token": "{TOKEN}", "user_id": "AB1234"}}',
        f'{{"accessToken":"{TOKEN}"}}',
        f"code=4fd1c2&client_id=key&client_secret={TOKEN}&grant_type=authorization_code",
        f"sent Bearer {TOKEN} to upstox",
    ],
)
def test_redact_removes_secret_looking_values(text: str) -> None:
    assert TOKEN not in redact(text)


def test_redact_removes_the_one_time_code_of_the_upstox_feed_uri() -> None:
    uri = "wss://x/feeds?requestId=6f1e-aa&code=ab12-cd34-ef56"
    assert redact(uri) == "wss://x/feeds?requestId=6f1e-aa&code=***"


def test_redact_removes_given_secrets_anywhere() -> None:
    assert redact(f"broker echoed {TOKEN}!", [TOKEN]) == "broker echoed ***!"


def test_redact_keeps_error_codes_and_ordinary_text() -> None:
    text = "error_code=UDAPI100050 errorCode=DH-901 expiry 2025-02-13 token_type Bearer"
    assert redact(text, ["", None, "abc"]) == text


# --- backoff --------------------------------------------------------------------------------


def test_backoff_doubles_from_base_until_the_cap() -> None:
    policy = RetryPolicy(attempts=8, base=0.5, cap=4.0)
    ceilings = [policy.backoff(n, lambda: 1.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_backoff_is_full_jitter_over_the_ceiling() -> None:
    policy = RetryPolicy(attempts=4, base=1.0, cap=30.0)
    assert policy.backoff(3, lambda: 0.25) == pytest.approx(1.0)
    assert policy.backoff(3, lambda: 0.0) == 0.0


@given(retry=st.integers(min_value=1, max_value=200), draw=st.floats(min_value=0, max_value=1))
def test_backoff_never_exceeds_the_cap_nor_goes_negative(retry: int, draw: float) -> None:
    delay = RetryPolicy(attempts=3, base=0.5, cap=8.0).backoff(retry, lambda: draw)
    assert 0.0 <= delay <= 8.0


def test_retry_policy_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


# --- classification -------------------------------------------------------------------------


def _request() -> httpx.Request:
    return httpx.Request("GET", "https://example.invalid/x")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ReadTimeout("read timed out", request=_request()), "timeout"),
        (httpx.ConnectTimeout("connect timed out", request=_request()), "timeout"),
        (httpx.ConnectError("connection refused", request=_request()), "network"),
        (httpx.RemoteProtocolError("peer closed", request=_request()), "network"),
        (httpx.ReadError("reset by peer", request=_request()), "network"),
    ],
)
def test_timeouts_and_network_failures_are_transient(exc: httpx.TransportError, code: str) -> None:
    error = transport_error(exc, broker="dhan", label="DhanHQ")
    assert not error.permanent
    assert error.code == code


def test_unsupported_protocol_is_permanent_and_points_at_the_base_url() -> None:
    exc = httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'.")
    error = transport_error(exc, broker="dhan", label="DhanHQ")
    assert error.permanent
    assert "base URL" in error.message


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(429, False), (500, False), (503, False), (400, True), (403, True), (404, True)],
)
def test_unrecognised_http_status_is_classified_by_its_class(status: int, permanent: bool) -> None:
    error = http_status_error(status, broker="upstox", label="Upstox")
    assert error.permanent is permanent
    assert error.http_status == status


# --- JsonHttpClient -------------------------------------------------------------------------


def _no_error(status: int, body: Any) -> BrokerError | None:
    return None


class Recorder:
    """Sleep and random stand-ins that record what the client asked for."""

    def __init__(self, draw: float = 1.0) -> None:
        self.sleeps: list[float] = []
        self.draw = draw

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)

    def random(self) -> float:
        return self.draw


def make_client(handler: Any, rec: Recorder, **kwargs: Any) -> JsonHttpClient:
    options: dict[str, Any] = {
        "broker": "test",
        "label": "TestBroker",
        "base_url": "https://broker.invalid",
        "headers": {"access-token": TOKEN},
        "map_error": _no_error,
        "retry": RetryPolicy(attempts=4, base=0.5, cap=1.5),
        "transport": httpx.MockTransport(handler),
        "sleep": rec.sleep,
        "random": rec.random,
        "secrets": [TOKEN],
    }
    options.update(kwargs)
    return JsonHttpClient(**options)


@pytest.mark.asyncio
async def test_every_call_carries_the_configured_timeout() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"ok": True})

    async with make_client(handler, Recorder(), timeout=2.5) as client:
        assert await client.request("GET", "/x") == {"ok": True}
    assert seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]


@pytest.mark.asyncio
async def test_transient_failures_are_retried_with_capped_jittered_backoff() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"ok": True})

    rec = Recorder(draw=0.5)
    async with make_client(handler, rec) as client:
        assert await client.request("GET", "/x") == {"ok": True}
    assert attempts == 4
    assert rec.sleeps == [0.25, 0.5, 0.75]  # 0.5 × min(1.5, 0.5·2^n)


@pytest.mark.asyncio
async def test_gives_up_after_the_last_attempt_with_a_transient_error() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return httpx.Response(502, text="bad gateway")

    rec = Recorder()
    async with make_client(handler, rec) as client:
        with pytest.raises(BrokerError) as caught:
            await client.request("GET", "/x")
    assert attempts == 4
    assert len(rec.sleeps) == 3
    assert not caught.value.permanent
    assert caught.value.http_status == 502


@pytest.mark.asyncio
async def test_permanent_errors_are_not_retried() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return httpx.Response(403, json={"message": "no"})

    rec = Recorder()
    async with make_client(handler, rec) as client:
        with pytest.raises(BrokerError) as caught:
            await client.request("GET", "/x")
    assert attempts == 1
    assert rec.sleeps == []
    assert caught.value.permanent


@pytest.mark.asyncio
async def test_non_idempotent_request_is_not_resent_after_a_read_timeout() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ReadTimeout("timed out", request=request)

    async with make_client(handler, Recorder()) as client:
        with pytest.raises(BrokerError) as caught:
            await client.request("POST", "/renew", idempotent=False)
    assert attempts == 1
    assert caught.value.code == "timeout"


@pytest.mark.asyncio
async def test_non_idempotent_request_is_resent_when_the_connection_was_never_made() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": 1})

    async with make_client(handler, Recorder()) as client:
        assert await client.request("POST", "/renew", idempotent=False) == {"ok": 1}
    assert attempts == 2


@pytest.mark.asyncio
async def test_retry_after_header_is_honoured_up_to_the_cap() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "1.2"}),
            httpx.Response(429, headers={"Retry-After": "60"}),
            httpx.Response(200, json=[]),
        ]
    )
    rec = Recorder(draw=0.0)
    async with make_client(lambda request: next(answers), rec) as client:
        assert await client.request("GET", "/x") == []
    assert rec.sleeps == [1.2, 1.5]


@pytest.mark.asyncio
async def test_a_200_that_is_not_json_is_a_transient_error() -> None:
    rec = Recorder()
    client = make_client(lambda r: httpx.Response(200, text="<html>"), rec, retry=NO_RETRY)
    async with client:
        with pytest.raises(BrokerError) as caught:
            await client.request("GET", "/x")
    assert not caught.value.permanent
    assert caught.value.http_status == 200


@pytest.mark.asyncio
async def test_the_limiter_is_acquired_before_every_attempt() -> None:
    class CountingLimiter:
        calls = 0

        async def acquire(self) -> float:
            self.calls += 1
            return 0.0

    limiter = CountingLimiter()
    answers = iter([httpx.Response(500), httpx.Response(200, json={})])
    async with make_client(lambda r: next(answers), Recorder()) as client:
        await client.request("GET", "/x", limiter=limiter)  # type: ignore[arg-type]
    assert limiter.calls == 2


@pytest.mark.asyncio
async def test_retry_log_lines_name_the_attempt_but_never_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused (header access-token: {TOKEN})", request=request)

    caplog.set_level(logging.DEBUG)
    async with make_client(handler, Recorder()) as client:
        with pytest.raises(BrokerError) as caught:
            await client.request("GET", f"/feed?token={TOKEN}")
    assert "attempt 1 of 4" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value)


# --- payload coercion -----------------------------------------------------------------------


def test_absent_and_null_numbers_are_none_never_zero() -> None:
    assert opt_float({}, "ltp") is None
    assert opt_float({"ltp": None}, "ltp") is None
    assert opt_int({"oi": None}, "oi") is None
    assert opt_float({"ltp": 0}, "ltp") == 0.0  # a real zero stays zero


def test_whole_floats_and_numeric_strings_become_ints() -> None:
    assert opt_int({"oi": 750.0}, "oi") == 750
    assert opt_int({"oi": "1125"}, "oi") == 1125


@pytest.mark.parametrize("value", [True, "abc", 1.5, [1], {"a": 1}])
def test_values_that_are_not_whole_numbers_raise_payload_error(value: object) -> None:
    with pytest.raises(PayloadError, match="oi"):
        opt_int({"oi": value}, "oi")


def test_strike_keys_parse_to_decimals_without_noise_zeros() -> None:
    assert parse_decimal("25650.000000", "strike") == Decimal("25650")
    assert str(parse_decimal("25650.000000", "strike")) == "25650"
    assert str(parse_decimal("182.500000", "strike")) == "182.5"
    assert str(parse_decimal(21100, "strike")) == "21100"


@pytest.mark.parametrize("value", ["", "abc", "NaN", None, True])
def test_strikes_that_are_not_numbers_raise_payload_error(value: object) -> None:
    with pytest.raises(PayloadError):
        parse_decimal(value, "strike")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30/03/2025 15:37", datetime(2025, 3, 30, 15, 37, tzinfo=IST)),
        ("30/03/2025 15:37:45", datetime(2025, 3, 30, 15, 37, 45, tzinfo=IST)),
        ("2025-03-30T15:37:00", datetime(2025, 3, 30, 15, 37, tzinfo=IST)),
        ("2025-03-30 15:37:00.000", datetime(2025, 3, 30, 15, 37, tzinfo=IST)),
        ("2025-03-30T10:07:00Z", datetime(2025, 3, 30, 10, 7, tzinfo=UTC)),
        ("2025-03-30T15:37:00+05:30", datetime(2025, 3, 30, 15, 37, tzinfo=IST)),
    ],
)
def test_broker_times_parse_as_aware_with_naive_meaning_ist(text: str, expected: datetime) -> None:
    parsed = parse_broker_datetime(text, "expiryTime")
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("value", ["", "tomorrow", "31/02/2025 10:00", None, [2025]])
def test_unreadable_times_raise_payload_error(value: object) -> None:
    with pytest.raises(PayloadError, match="expiryTime"):
        parse_broker_datetime(value, "expiryTime")


def test_epoch_milliseconds_and_seconds_are_told_apart() -> None:
    assert from_epoch("1740729566039", "t") == datetime(2025, 2, 28, 7, 59, 26, 39000, tzinfo=UTC)
    assert from_epoch(1740729566, "t") == datetime(2025, 2, 28, 7, 59, 26, tzinfo=UTC)
