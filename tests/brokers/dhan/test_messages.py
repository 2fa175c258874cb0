"""Dhan feed client messages, their server-side parser, and the feed URL."""

from __future__ import annotations

import json

import pytest

from brokers.dhan.messages import (
    FEED_URL,
    ClientRequest,
    RequestCode,
    disconnect_message,
    feed_url,
    parse_client_message,
    redact_feed_url,
    subscribe_messages,
    unsubscribe_messages,
)

TOKEN = "eyJhbGciOiJIUzUxMiJ9.eyJpc3MiOiJkaGFuIn0.c2lnbmF0dXJl"


def instruments(n: int) -> list[tuple[str, str]]:
    return [("NSE_FNO", str(40000 + i)) for i in range(n)]


# --- subscribe / unsubscribe -------------------------------------------------------------------


def test_subscribe_message_has_dhans_shape() -> None:
    [text] = subscribe_messages("full", [("IDX_I", "13"), ("NSE_FNO", 42528)])
    assert json.loads(text) == {
        "RequestCode": 21,
        "InstrumentCount": 2,
        "InstrumentList": [
            {"ExchangeSegment": "IDX_I", "SecurityId": "13"},
            {"ExchangeSegment": "NSE_FNO", "SecurityId": "42528"},
        ],
    }


@pytest.mark.parametrize(
    ("mode", "subscribe", "unsubscribe"), [("ticker", 15, 16), ("quote", 17, 18), ("full", 21, 22)]
)
def test_each_mode_uses_its_request_codes(mode: str, subscribe: int, unsubscribe: int) -> None:
    pair = [("BSE_FNO", "1")]
    assert json.loads(subscribe_messages(mode, pair)[0])["RequestCode"] == subscribe  # type: ignore[arg-type]
    assert json.loads(unsubscribe_messages(mode, pair)[0])["RequestCode"] == unsubscribe  # type: ignore[arg-type]


@pytest.mark.parametrize(("count", "sizes"), [(1, [1]), (100, [100]), (101, [100, 1]),
                                               (250, [100, 100, 50])])  # fmt: skip
def test_instruments_are_batched_at_most_100_per_message(count: int, sizes: list[int]) -> None:
    messages = [json.loads(text) for text in subscribe_messages("quote", instruments(count))]
    assert [m["InstrumentCount"] for m in messages] == sizes
    assert [len(m["InstrumentList"]) for m in messages] == sizes
    sent = [item["SecurityId"] for m in messages for item in m["InstrumentList"]]
    assert sent == [sid for _, sid in instruments(count)]  # all of them, in order


def test_no_instruments_gives_no_message() -> None:
    assert subscribe_messages("full", []) == []


def test_duplicate_instruments_are_sent_once() -> None:
    [text] = subscribe_messages("ticker", [("IDX_I", "13"), ("IDX_I", 13), ("IDX_I", "25")])
    assert json.loads(text)["InstrumentCount"] == 2


@pytest.mark.parametrize(
    ("mode", "pairs", "match"),
    [
        ("full", [("NSE_FO", "1")], "unknown Dhan exchange segment 'NSE_FO'"),
        ("full", [("nse_fno", "1")], "unknown Dhan exchange segment"),
        ("full", [("NSE_FNO", "12x")], "SecurityId '12x'"),
        ("full", [("NSE_FNO", -1)], "SecurityId -1"),
        ("depth", [("NSE_FNO", "1")], "unknown feed mode 'depth'"),
    ],
)
def test_bad_subscription_input_raises(mode: str, pairs: list, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        subscribe_messages(mode, pairs)  # type: ignore[arg-type]


def test_disconnect_message() -> None:
    assert json.loads(disconnect_message()) == {"RequestCode": 12}


# --- the server side ---------------------------------------------------------------------------


def listing(n: int, count: object = None, **extra: object) -> str:
    items = [{"ExchangeSegment": "NSE_FNO", "SecurityId": str(i)} for i in range(n)]
    return json.dumps({"RequestCode": 21, "InstrumentCount": n if count is None else count,
                       "InstrumentList": items, **extra})  # fmt: skip


@pytest.mark.parametrize("count", [1, 100, 101, 250])
def test_client_messages_round_trip_through_the_parser(count: int) -> None:
    parsed = [parse_client_message(text) for text in subscribe_messages("full", instruments(count))]
    assert all(request.code == RequestCode.SUBSCRIBE_FULL for request in parsed)
    assert [pair for request in parsed for pair in request.instruments] == instruments(count)


def test_parser_accepts_bytes_unknown_keys_and_integer_security_ids() -> None:
    text = json.dumps({"RequestCode": 17, "InstrumentCount": 1, "dhanClientId": "110",
                       "InstrumentList": [{"ExchangeSegment": "IDX_I", "SecurityId": 13,
                                           "Extra": True}]})  # fmt: skip
    request = parse_client_message(text.encode())
    assert request == ClientRequest(17, (("IDX_I", "13"),))
    assert (request.mode, request.subscribe) == ("quote", True)


def test_parser_reads_disconnect_and_unsubscribe() -> None:
    assert parse_client_message('{"RequestCode": 12}') == ClientRequest(12, ())
    assert parse_client_message('{"RequestCode": 12}').mode is None
    request = parse_client_message(unsubscribe_messages("ticker", [("NSE_EQ", "1")])[0])
    assert (request.code, request.mode, request.subscribe) == (16, "ticker", False)


@pytest.mark.parametrize("code", [23, 24, 25])
def test_parser_accepts_depth_codes_in_both_documented_forms(code: int) -> None:
    text = listing(1).replace('"RequestCode": 21', f'"RequestCode": {code}')
    assert parse_client_message(text).mode == "depth20"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        (b"\x0c\x53\x00\xff\xfe", "not UTF-8"),
        ("[21]", "must be a JSON object, got list"),
        ("{}", "no 'RequestCode'"),
        ('{"RequestCode": "21"}', "RequestCode must be an integer"),
        ('{"RequestCode": true}', "RequestCode must be an integer"),
        ('{"RequestCode": 99}', "unknown RequestCode 99"),
        ('{"RequestCode": 21, "InstrumentList": []}', "no 'InstrumentCount'"),
        ('{"RequestCode": 21, "InstrumentCount": 0}', "no 'InstrumentList'"),
        ('{"RequestCode": 21, "InstrumentCount": 1, "InstrumentList": {}}', "must be a list"),
        (listing(3, count=2), "InstrumentCount 2 disagrees with 3 listed"),
        (listing(3, count="3"), "InstrumentCount '3' disagrees"),
        (listing(0), "0 instruments in one message"),
        (listing(101), "101 instruments in one message; Dhan allows 1 to 100"),
        (listing(1).replace('"NSE_FNO"', '"NSE_FUT"'), r"\[0\]: unknown ExchangeSegment 'NSE_FUT'"),
        (listing(1).replace('"SecurityId": "0"', '"SecurityId": "x"'), "SecurityId 'x'"),
        (listing(1).replace(', "SecurityId": "0"', ""), "no 'SecurityId'"),
        ('{"RequestCode": 15, "InstrumentCount": 1, "InstrumentList": [7]}', "must be an object"),
    ],
)
def test_malformed_client_message_raises(text: str | bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_client_message(text)


def test_sdk_binary_trailer_after_disconnect_is_rejected_clearly() -> None:
    trailer = b"\x0c\x53\x00" + b"1100".ljust(30, b"\0") + b"\0" * 50  # SDK's 83-byte frame
    with pytest.raises(ValueError, match="client message is not"):
        parse_client_message(trailer)


# --- URL and redaction -------------------------------------------------------------------------


def test_feed_url_matches_dhans_format() -> None:
    url = feed_url(FEED_URL, token=TOKEN, client_id="1100123456")
    assert url == (f"wss://api-feed.dhan.co?version=2&token={TOKEN}&clientId=1100123456&authType=2")


def test_feed_url_keeps_an_overridden_base_path() -> None:
    url = feed_url("ws://127.0.0.1:8800/dhan/feed", token="t", client_id="c")
    assert url == "ws://127.0.0.1:8800/dhan/feed?version=2&token=t&clientId=c&authType=2"


def test_feed_url_quotes_unsafe_token_characters() -> None:
    assert "token=a%2Bb%26c%3D&" in feed_url(FEED_URL, token="a+b&c=", client_id="c")


@pytest.mark.parametrize(
    ("base", "token", "client_id", "match"),
    [
        ("https://api-feed.dhan.co", "t", "c", "must be ws:// or wss://"),
        ("api-feed.dhan.co", "t", "c", "must be ws:// or wss://"),
        (FEED_URL, "", "c", "no DhanHQ access token"),
        (FEED_URL, "t", "", "no DhanHQ client id"),
    ],
)
def test_feed_url_refuses_bad_input(base: str, token: str, client_id: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        feed_url(base, token=token, client_id=client_id)


def test_redacted_feed_url_hides_the_token_only() -> None:
    url = feed_url(FEED_URL, token=TOKEN, client_id="1100123456")
    redacted = redact_feed_url(url)
    assert TOKEN not in redacted
    assert redacted == "wss://api-feed.dhan.co?version=2&token=***&clientId=1100123456&authType=2"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/f?token=abc", "ws://h/f?token=***"),
        ("ws://h/f?a=1&TOKEN=abc#frag", "ws://h/f?a=1&TOKEN=***#frag"),
        ("ws://h/f?mytoken=keep&token=abc", "ws://h/f?mytoken=keep&token=***"),
        ("ws://h/f?a=1", "ws://h/f?a=1"),
    ],
)
def test_redaction_covers_token_anywhere_in_the_query(url: str, expected: str) -> None:
    assert redact_feed_url(url) == expected
