"""DhanHQ v2 live feed: the client's JSON text messages, their server-side parser, the feed URL.

Pure Python, no Django. The client side builds subscribe / unsubscribe / disconnect messages;
the server side (the exchange simulator) parses them back with ``parse_client_message``.
Access tokens travel in the feed URL's query string: log only ``redact_feed_url(url)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from enum import IntEnum
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode, urlsplit, urlunsplit

from brokers.dhan.segments import SEGMENT_NUMBERS, segment_number

FEED_URL = "wss://api-feed.dhan.co"
MAX_INSTRUMENTS_PER_MESSAGE = 100

FeedMode = Literal["ticker", "quote", "full"]


class RequestCode(IntEnum):
    """The ``RequestCode`` of a client message."""

    DISCONNECT = 12
    SUBSCRIBE_TICKER = 15
    UNSUBSCRIBE_TICKER = 16
    SUBSCRIBE_QUOTE = 17
    UNSUBSCRIBE_QUOTE = 18
    SUBSCRIBE_FULL = 21
    UNSUBSCRIBE_FULL = 22
    SUBSCRIBE_DEPTH_20 = 23  # 20-level depth endpoint; the docs give 24 or 25 to unsubscribe
    UNSUBSCRIBE_DEPTH_20 = 24
    UNSUBSCRIBE_DEPTH_20_ALT = 25


_SUBSCRIBE_CODES: dict[str, RequestCode] = {
    "ticker": RequestCode.SUBSCRIBE_TICKER,
    "quote": RequestCode.SUBSCRIBE_QUOTE,
    "full": RequestCode.SUBSCRIBE_FULL,
}
_UNSUBSCRIBE_CODES: dict[str, RequestCode] = {
    "ticker": RequestCode.UNSUBSCRIBE_TICKER,
    "quote": RequestCode.UNSUBSCRIBE_QUOTE,
    "full": RequestCode.UNSUBSCRIBE_FULL,
}
# Request code → (mode, subscribe?) for the codes that carry an instrument list.
_INSTRUMENT_CODES: dict[int, tuple[str, bool]] = {
    **{int(code): (mode, True) for mode, code in _SUBSCRIBE_CODES.items()},
    **{int(code): (mode, False) for mode, code in _UNSUBSCRIBE_CODES.items()},
    RequestCode.SUBSCRIBE_DEPTH_20: ("depth20", True),
    RequestCode.UNSUBSCRIBE_DEPTH_20: ("depth20", False),
    RequestCode.UNSUBSCRIBE_DEPTH_20_ALT: ("depth20", False),
}


class ClientRequest(NamedTuple):
    """A parsed client message: its request code and its (segment name, security id) list.

    ``instruments`` is empty for a disconnect. ``mode`` is "ticker", "quote", "full" or
    "depth20" (None for a disconnect); ``subscribe`` is True to subscribe, False to
    unsubscribe (None for a disconnect).
    """

    code: int
    instruments: tuple[tuple[str, str], ...] = ()

    @property
    def mode(self) -> str | None:
        entry = _INSTRUMENT_CODES.get(self.code)
        return None if entry is None else entry[0]

    @property
    def subscribe(self) -> bool | None:
        entry = _INSTRUMENT_CODES.get(self.code)
        return None if entry is None else entry[1]


def _security_id(value: object) -> str:
    # A string per Dhan's docs; SDK users also pass ints, which the server accepts.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise ValueError(f"SecurityId {value!r} is not a non-negative decimal number")


def _messages(code: RequestCode, instruments: Iterable[tuple[str, int | str]]) -> list[str]:
    unique: dict[tuple[str, str], None] = {}
    for segment, security_id in instruments:
        segment_number(segment)  # raises ValueError for an unknown segment name
        unique[(segment, _security_id(security_id))] = None
    pairs = list(unique)
    step = MAX_INSTRUMENTS_PER_MESSAGE
    return [
        json.dumps(
            {
                "RequestCode": int(code),
                "InstrumentCount": len(batch),
                "InstrumentList": [
                    {"ExchangeSegment": segment, "SecurityId": security_id}
                    for segment, security_id in batch
                ],
            }
        )
        for batch in (pairs[i : i + step] for i in range(0, len(pairs), step))
    ]


def subscribe_messages(mode: FeedMode, instruments: Iterable[tuple[str, int | str]]) -> list[str]:
    """Return the JSON text messages subscribing ``instruments`` in ``mode``.

    ``instruments`` are (segment name, security id) pairs, e.g. ("NSE_FNO", "42528"); duplicates
    are sent once, order is kept, and each message carries at most 100 instruments (an empty
    input gives no message). Raises ValueError for an unknown mode, an unknown segment name or
    a security id that is not a non-negative decimal number.
    """
    return _messages(_mode_code(_SUBSCRIBE_CODES, mode), instruments)


def unsubscribe_messages(mode: FeedMode, instruments: Iterable[tuple[str, int | str]]) -> list[str]:
    """Like ``subscribe_messages``, with the unsubscribe request code of ``mode``."""
    return _messages(_mode_code(_UNSUBSCRIBE_CODES, mode), instruments)


def _mode_code(codes: dict[str, RequestCode], mode: str) -> RequestCode:
    try:
        return codes[mode]
    except KeyError:
        raise ValueError(f"unknown feed mode {mode!r}; expected ticker, quote or full") from None


def disconnect_message() -> str:
    """Return the JSON text message asking the server to close the feed."""
    return json.dumps({"RequestCode": int(RequestCode.DISCONNECT)})


def _field(message: dict[str, Any], key: str) -> Any:
    try:
        return message[key]
    except KeyError:
        raise ValueError(f"client message has no {key!r}: {message!r:.200}") from None


def parse_client_message(text: str | bytes) -> ClientRequest:
    """Parse a client's JSON message (the simulator's side). Unknown keys are ignored.

    Raises ValueError, saying what is wrong, for: bytes that are not UTF-8, text that is not a
    JSON object, a missing or unknown ``RequestCode``, and — for the subscribe / unsubscribe
    codes — a missing ``InstrumentCount`` or ``InstrumentList``, a count that disagrees with the
    list, an empty list or more than 100 instruments, an unknown ``ExchangeSegment`` or a
    ``SecurityId`` that is not a non-negative decimal number (string or int).
    A server should not call this on binary frames it does not expect: the official SDK sends
    an 83-byte binary frame after its disconnect message, which is not JSON.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"client message is not UTF-8 text: {exc}") from None
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"client message is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError(f"client message must be a JSON object, got {type(message).__name__}")
    code = _field(message, "RequestCode")
    if isinstance(code, bool) or not isinstance(code, int):
        raise ValueError(f"RequestCode must be an integer, got {code!r}")
    if code == RequestCode.DISCONNECT:
        return ClientRequest(int(code))
    if code not in _INSTRUMENT_CODES:
        raise ValueError(f"unknown RequestCode {code}")
    count = _field(message, "InstrumentCount")
    items = _field(message, "InstrumentList")
    if not isinstance(items, list):
        raise ValueError(f"InstrumentList must be a list, got {type(items).__name__}")
    if isinstance(count, bool) or not isinstance(count, int) or count != len(items):
        raise ValueError(f"InstrumentCount {count!r} disagrees with {len(items)} listed")
    if not 1 <= len(items) <= MAX_INSTRUMENTS_PER_MESSAGE:
        raise ValueError(f"{len(items)} instruments in one message; Dhan allows 1 to 100")
    instruments = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"InstrumentList[{index}] must be an object, got {item!r:.80}")
        segment = _field(item, "ExchangeSegment")
        if segment not in SEGMENT_NUMBERS:
            raise ValueError(f"InstrumentList[{index}]: unknown ExchangeSegment {segment!r}")
        instruments.append((segment, _security_id(_field(item, "SecurityId"))))
    return ClientRequest(code, tuple(instruments))


def feed_url(base_url: str, *, token: str, client_id: str) -> str:
    """Return the feed WebSocket URL: ``base_url`` plus Dhan's v2 auth query.

    ``base_url`` is normally ``FEED_URL``; a simulator's (``ws://127.0.0.1:8800/dhan/feed``)
    works the same. Its path is kept; any query it already has is kept before Dhan's
    parameters. Raises ValueError for a scheme other than ws/wss or an empty token/client id.
    The result contains the token: log ``redact_feed_url(url)`` instead.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"feed base URL must be ws:// or wss:// with a host, got {base_url!r}")
    if not token:
        raise ValueError("no DhanHQ access token: add one to the broker account")
    if not client_id:
        raise ValueError("no DhanHQ client id: add one to the broker account")
    auth = urlencode({"version": "2", "token": token, "clientId": client_id, "authType": "2"})
    query = f"{parts.query}&{auth}" if parts.query else auth
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


_TOKEN_VALUE = re.compile(r"([?&]token=)[^&#]*", re.IGNORECASE)


def redact_feed_url(url: str) -> str:
    """Return ``url`` with every ``token`` query value replaced by ``***`` (safe to log)."""
    return _TOKEN_VALUE.sub(r"\1***", url)
