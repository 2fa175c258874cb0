"""The broker kinds this product speaks, looked up by kind; unknown kinds are refused.

Pure Python. Each ``BrokerSpec`` names the broker's real hosts (an account may override each
one, e.g. to point at the local simulator), which account fields it needs, and how its
instrument master is parsed. Adding a broker = a new ``brokers/<kind>/`` folder + one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .exceptions import UnknownBrokerKind
from .masters import InstrumentRecord, KeepFilter


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """What the product needs to know about one broker kind."""

    kind: str
    label: str
    rest_base_url: str
    feed_base_url: str
    login_base_url: str
    master_url: str
    client_id_label: str
    # Account fields (attribute names) that must be non-empty for the account to work at all.
    required_static: tuple[str, ...]
    # Human names of those fields, for messages ("add one in admin → Broker accounts").
    field_labels: dict[str, str]
    parse_master: Callable[[BinaryIO, str, KeepFilter], Iterator[InstrumentRecord]]


def _parse_dhan(stream: BinaryIO, name: str, keep: KeepFilter) -> Iterator[InstrumentRecord]:
    from .dhan.master import parse_scrip_master

    return parse_scrip_master(stream, keep=keep)


def _parse_upstox(stream: BinaryIO, name: str, keep: KeepFilter) -> Iterator[InstrumentRecord]:
    from .upstox.master import parse_instruments

    return parse_instruments(stream, keep=keep)  # gzip detected from the content


REGISTRY: dict[str, BrokerSpec] = {
    "dhan": BrokerSpec(
        kind="dhan",
        label="DhanHQ",
        rest_base_url="https://api.dhan.co",
        feed_base_url="wss://api-feed.dhan.co",
        login_base_url="https://api.dhan.co",
        master_url="https://images.dhan.co/api-data/api-scrip-master.csv",
        client_id_label="DhanHQ client id",
        required_static=("client_id",),
        field_labels={"client_id": "client id", "access_token": "access token"},
        parse_master=_parse_dhan,
    ),
    "upstox": BrokerSpec(
        kind="upstox",
        label="Upstox",
        rest_base_url="https://api.upstox.com",
        feed_base_url="wss://api.upstox.com/v3/feed/market-data-feed",
        login_base_url="https://api.upstox.com",
        master_url="https://assets.upstox.com/market-quote/instruments/exchange/complete.json.gz",
        client_id_label="Upstox API key",
        required_static=("client_id", "api_secret"),
        field_labels={
            "client_id": "API key",
            "api_secret": "API secret",
            "access_token": "access token",
        },
        parse_master=_parse_upstox,
    ),
}


def get_spec(kind: str) -> BrokerSpec:
    """Return the spec of ``kind``; raises UnknownBrokerKind for a kind nobody registered."""
    try:
        return REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownBrokerKind(f"Unknown broker kind {kind!r}: known kinds are {known}.") from None
