"""Upstox V3 client requests: builders (client side) and parse_client_request (simulator side)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.upstox.messages import (
    KEY_LIMITS,
    ClientRequest,
    change_mode,
    check_key_limit,
    key_limit,
    parse_client_request,
    sub,
    unsub,
)


def keys(n: int, segment: str = "NSE_FO") -> list[str]:
    return [f"{segment}|{40000 + i}" for i in range(n)]


# --- builders --------------------------------------------------------------------------------


def test_sub_builds_the_documented_json_as_utf8_bytes():
    (request,) = sub(["NSE_INDEX|Nifty 50", "NSE_FO|43919"], mode="option_greeks")

    assert isinstance(request, bytes)
    body = json.loads(request.decode("utf-8"))
    assert body["method"] == "sub"
    assert body["data"] == {
        "mode": "option_greeks",
        "instrumentKeys": ["NSE_INDEX|Nifty 50", "NSE_FO|43919"],
    }
    assert isinstance(body["guid"], str) and body["guid"]


def test_sub_defaults_to_ltpc_mode():
    (request,) = sub(["NSE_FO|1"])
    assert json.loads(request)["data"]["mode"] == "ltpc"


def test_change_mode_carries_the_new_mode_and_unsub_none():
    (moved,) = change_mode(["NSE_FO|1"], mode="full")
    (dropped,) = unsub(["NSE_FO|1"])
    assert json.loads(moved)["method"] == "change_mode"
    assert json.loads(moved)["data"]["mode"] == "full"
    assert json.loads(dropped) | {"guid": "x"} == {
        "guid": "x",
        "method": "unsub",
        "data": {"instrumentKeys": ["NSE_FO|1"]},
    }


def test_every_request_gets_a_unique_guid():
    requests = sub(keys(2500), mode="ltpc", batch_size=100) + unsub(keys(300), batch_size=100)
    guids = [json.loads(r)["guid"] for r in requests]
    assert len(guids) == len(set(guids)) == 28


def test_large_key_lists_are_split_into_batches_in_order():
    wanted = keys(2500)
    requests = sub(wanted, mode="option_greeks", batch_size=1000)
    batches = [json.loads(r)["data"]["instrumentKeys"] for r in requests]
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [k for b in batches for k in b] == wanted


def test_duplicate_keys_are_sent_once():
    (request,) = sub(["NSE_FO|1", "NSE_FO|2", "NSE_FO|1"], mode="full")
    assert json.loads(request)["data"]["instrumentKeys"] == ["NSE_FO|1", "NSE_FO|2"]


@pytest.mark.parametrize(("mode", "limit"), sorted(KEY_LIMITS.items()))
def test_a_request_may_hold_exactly_the_mode_limit_but_not_one_more(mode, limit):
    assert (
        sum(len(json.loads(r)["data"]["instrumentKeys"]) for r in sub(keys(limit), mode=mode))
        == limit
    )
    with pytest.raises(
        ValueError, match=f"{limit + 1} instrument keys in Upstox {mode} mode exceed the {limit}"
    ):
        sub(keys(limit + 1), mode=mode)
    with pytest.raises(ValueError, match=f"exceed the {limit}"):
        change_mode(keys(limit + 1), mode=mode)


def test_limits_count_unique_keys():
    assert sub(keys(50) + keys(50), mode="full_d30")


def test_unsub_is_capped_at_the_largest_connection_limit():
    assert unsub(keys(5000))
    with pytest.raises(ValueError, match="exceed the 5000"):
        unsub(keys(5001))


@pytest.mark.parametrize("mode", ["LTPC", "full_d5", "option_chain", ""])
def test_unknown_mode_raises(mode):
    with pytest.raises(ValueError, match="unknown Upstox feed mode"):
        sub(["NSE_FO|1"], mode=mode)
    with pytest.raises(ValueError, match="unknown Upstox feed mode"):
        change_mode(["NSE_FO|1"], mode=mode)


@pytest.mark.parametrize(
    ("bad_keys", "message"),
    [([], "no instrument keys"), ("NSE_FO|1", "not the string"),
     (["45450"], "not an Upstox instrument key"), ([7], "not an Upstox instrument key")],
)  # fmt: skip
def test_bad_key_lists_raise(bad_keys, message):
    with pytest.raises(ValueError, match=message):
        sub(bad_keys, mode="ltpc")


def test_batch_size_below_one_raises():
    with pytest.raises(ValueError, match="batch_size"):
        sub(["NSE_FO|1"], batch_size=0)


def test_key_limit_and_check_for_mixed_modes():
    assert key_limit("full") == 2000
    assert key_limit("full", mixed_modes=True) == 1500
    assert key_limit("full_d30", mixed_modes=True) == 1500
    check_key_limit("ltpc", 2000, mixed_modes=True)
    with pytest.raises(ValueError, match="a connection mixing modes"):
        check_key_limit("ltpc", 2001, mixed_modes=True)
    with pytest.raises(ValueError, match="unknown Upstox feed mode"):
        key_limit("quote")


# --- parse_client_request ------------------------------------------------------------------


@given(
    method=st.sampled_from(["sub", "change_mode", "unsub"]),
    mode=st.sampled_from(["ltpc", "option_greeks", "full", "full_d30"]),
    wanted=st.lists(
        st.integers(1, 10**9).map(lambda n: f"NSE_FO|{n}"), min_size=1, max_size=50, unique=True
    ),
)
def test_builders_round_trip_through_the_parser(method, mode, wanted):
    build = {
        "sub": lambda: sub(wanted, mode=mode),
        "change_mode": lambda: change_mode(wanted, mode=mode),
    }
    (request,) = build.get(method, lambda: unsub(wanted))()
    parsed = parse_client_request(request)
    assert parsed == ClientRequest(
        guid=json.loads(request)["guid"],
        method=method,
        mode=None if method == "unsub" else mode,
        instrument_keys=tuple(wanted),
    )


def test_sub_without_mode_parses_as_ltpc():
    data = b'{"guid": "g1", "method": "sub", "data": {"instrumentKeys": ["NSE_FO|1"]}}'
    assert parse_client_request(data) == ClientRequest("g1", "sub", "ltpc", ("NSE_FO|1",))


def test_parser_accepts_bytearray_and_memoryview():
    data = b'{"guid": "g", "method": "unsub", "data": {"instrumentKeys": ["NSE_FO|1"]}}'
    assert parse_client_request(bytearray(data)) == parse_client_request(memoryview(data))


def request(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "guid": "g",
        "method": "sub",
        "data": {"mode": "full", "instrumentKeys": ["NSE_FO|1"]},
    }
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b'{"guid": "g", "method":', "not JSON"),
        (b"", "not JSON"),
        (b'["sub"]', "must be a JSON object, got list"),
        (request(guid=None), "non-empty string guid"),
        (request(guid=""), "non-empty string guid"),
        (request(method="subscribe"), "unknown Upstox request method 'subscribe'"),
        (request(data=None), "needs a 'data' object"),
        (request(data={"mode": "quote", "instrumentKeys": ["NSE_FO|1"]}),
         "unknown Upstox feed mode 'quote'"),
        (request(method="change_mode", data={"instrumentKeys": ["NSE_FO|1"]}),
         "change_mode request needs data.mode"),
        (request(data={"mode": "ltpc"}), "needs data.instrumentKeys"),
        (request(data={"mode": "ltpc", "instrumentKeys": []}), "needs data.instrumentKeys"),
        (request(data={"mode": "ltpc", "instrumentKeys": "NSE_FO|1"}), "needs data.instrumentKeys"),
        (request(data={"mode": "ltpc", "instrumentKeys": [1]}), "not an instrument key"),
        (request(data={"mode": "ltpc", "instrumentKeys": ["45450"]}), "not an instrument key"),
    ],
)  # fmt: skip
def test_malformed_requests_raise_saying_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=message):
        parse_client_request(data)
