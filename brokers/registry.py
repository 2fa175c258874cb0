"""The broker kinds this product speaks: one entry per kind holds all kind-specific knowledge.

Pure Python. Each ``BrokerSpec`` names the broker's adapter class, its real hosts (an account
may override each one, e.g. to point at the local simulator), which account fields it needs and
what an admin calls them, how its access token is obtained, renewed and replaced (in the words
an admin follows), what its refusals and feed disconnect codes mean for the account, its
rate-limit profile and how its instrument master is parsed.

Code outside ``brokers/<kind>/`` never branches on a kind: it looks the kind up here
(``get_spec``), and an unknown kind raises UnknownBrokerKind naming the known ones. Adding a
broker = a new ``brokers/<kind>/`` folder (wire code + ``adapter.py``) + one entry in
``REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from .adapters import FeedAdapter
from .dhan.adapter import DhanAdapter
from .exceptions import BrokerError, EndpointRefused, UnknownBrokerKind
from .masters import InstrumentRecord, KeepFilter
from .ratelimit import DHAN, UPSTOX, Window
from .upstox.adapter import UpstoxAdapter

# Account statuses (``brokers.models.AccountStatus`` values) a broker's answer can set.
ERROR = "error"
TOKEN_EXPIRED = "token_expired"  # noqa: S105 - an account status, not a secret
AUTH_FAILED = "auth_failed"


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """How an account of one kind gets and keeps its access token, in an admin's words.

    ``obtain`` and ``replace`` are templates with ``{admin}`` (where accounts are kept,
    e.g. "admin → Broker accounts") and ``{name}`` (the account); fill them with
    ``how_to_get`` / ``how_to_replace``. Each reads after "an admin must …" or "To get one, …".
    """

    # What to do for an account's first token.
    obtain: str
    # What to do once the stored token expired or was refused.
    replace: str
    # ``replace`` without the place: callers add " in admin → Broker accounts".
    replace_short: str
    # Completes "<label> tokens …" (e.g. "end at 03:30 IST every day").
    lifetime: str
    # True: the broker renews a token through its API before it ends (the token check does it,
    # with ``FeedAdapter.renew_token``). False: a token past its stored expiry is dead and only
    # an admin can replace it, so the token check does not ask the broker.
    renewable: bool
    # URL name of admin's login with the broker (the view takes the account's id); None: the
    # token is pasted in admin (or set by ``syncaccounts``).
    login_view: str | None

    def how_to_get(self, *, admin: str, name: str) -> str:
        """What an admin must do to give account ``name`` its first token."""
        return self.obtain.format(admin=admin, name=name)

    def how_to_replace(self, *, admin: str, name: str) -> str:
        """What an admin must do once account ``name``'s token expired or was refused."""
        return self.replace.format(admin=admin, name=name)


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """What the product needs to know about one broker kind."""

    kind: str
    label: str
    adapter: type[FeedAdapter]
    rest_base_url: str
    feed_base_url: str
    login_base_url: str
    master_url: str
    client_id_label: str
    # Account fields (attribute names) that must be non-empty for the account to work at all.
    required_static: tuple[str, ...]
    # Encrypted account fields besides the access token (admin shows only whether each is set).
    secret_fields: tuple[str, ...]
    # Human names of those fields, for messages ("add one in admin → Broker accounts").
    field_labels: Mapping[str, str]
    token: TokenSpec
    # Feed disconnect reason codes no retry can fix → the account status each one means.
    disconnect_statuses: Mapping[int, str]
    # Broker error codes that say what is wrong with the account (not with one request) →
    # the account status each one means.
    error_statuses: Mapping[str, str]
    # Endpoint class → its windows (``brokers.ratelimit``; the adapter builds its limiters).
    rate_limits: Mapping[str, tuple[Window, ...]]
    # Feed connections the broker allows per user, in words ("5", "2 (Plus 5)").
    feed_connections: str
    parse_master: Callable[[BinaryIO, str, KeepFilter], Iterator[InstrumentRecord]]

    def disconnect_status(self, reason_code: int) -> str | None:
        """The account status a feed disconnect reason means; None when it is transient (the
        feed reconnects)."""
        return self.disconnect_statuses.get(reason_code)

    def error_status(self, exc: BrokerError) -> str | None:
        """The account status a refusal of this broker means, or None when it is not about
        the account. An HTTP 401 means the token expired unless the code says the account
        has no data plan."""
        status = self.error_statuses.get(exc.code or "")
        if status == ERROR:
            return status
        if exc.http_status == 401:
            return TOKEN_EXPIRED
        return status

    def credential_labels(self) -> list[str]:
        """Human names of the fields the account needs besides its token, in order."""
        return [self.field_labels[f] for f in self.required_static]


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
        adapter=DhanAdapter,
        rest_base_url="https://api.dhan.co",
        feed_base_url="wss://api-feed.dhan.co",
        login_base_url="https://api.dhan.co",
        master_url="https://images.dhan.co/api-data/api-scrip-master.csv",
        client_id_label="DhanHQ client id",
        required_static=("client_id",),
        secret_fields=(),
        field_labels={"client_id": "client id", "access_token": "access token"},
        token=TokenSpec(
            obtain="paste the DhanHQ access token in {admin} → {name}",
            replace="paste a new token in {admin} → {name}",
            replace_short="enter a new access token",
            lifetime="last 24 hours and are renewed by the token check before they end",
            renewable=True,
            login_view=None,
        ),
        disconnect_statuses={
            804: ERROR,  # instruments over the limit: fix the tracked chains
            806: ERROR,  # data APIs not subscribed
            807: TOKEN_EXPIRED,
            808: AUTH_FAILED,
            809: AUTH_FAILED,
            810: AUTH_FAILED,
        },
        error_statuses={
            "DH-902": ERROR,  # no data plan
            "806": ERROR,
            "DH-901": TOKEN_EXPIRED,
            "807": TOKEN_EXPIRED,
            "DH-906": AUTH_FAILED,
            "808": AUTH_FAILED,
            "809": AUTH_FAILED,
            "810": AUTH_FAILED,
            "no-token": AUTH_FAILED,
            EndpointRefused.CODE: ERROR,  # a URL outside BROKER_HOST_ALLOWLIST: nothing sent
        },
        rate_limits=DHAN,
        feed_connections="5",
        parse_master=_parse_dhan,
    ),
    "upstox": BrokerSpec(
        kind="upstox",
        label="Upstox",
        adapter=UpstoxAdapter,
        rest_base_url="https://api.upstox.com",
        feed_base_url="wss://api.upstox.com/v3/feed/market-data-feed",
        login_base_url="https://api.upstox.com",
        master_url="https://assets.upstox.com/market-quote/instruments/exchange/complete.json.gz",
        client_id_label="Upstox API key",
        required_static=("client_id", "api_secret"),
        secret_fields=("api_secret",),
        field_labels={
            "client_id": "API key",
            "api_secret": "API secret",
            "access_token": "access token",
        },
        token=TokenSpec(
            obtain="log in from {admin} → {name} → Log in to Upstox",
            replace="log in again from {admin} → {name} → Log in to Upstox",
            replace_short="log in to Upstox again",
            lifetime="end at 03:30 IST every day",
            renewable=False,
            login_view="upstox-login",
        ),
        disconnect_statuses={},  # Upstox's feed sends no disconnect reason codes
        error_statuses={
            "UDAPI100050": TOKEN_EXPIRED,
            "UDAPI100016": AUTH_FAILED,
            "no-token": AUTH_FAILED,
            EndpointRefused.CODE: ERROR,  # a URL outside BROKER_HOST_ALLOWLIST: nothing sent
        },
        rate_limits=UPSTOX,
        feed_connections="2 (Plus 5)",
        parse_master=_parse_upstox,
    ),
}


def get_spec(kind: str) -> BrokerSpec:
    """Return the spec of ``kind``; raises UnknownBrokerKind for a kind nobody registered."""
    try:
        return REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownBrokerKind(
            f"Unknown broker kind {kind!r}: known kinds are {known}. Register it in "
            "brokers/registry.py, or change the account's kind in admin → Broker accounts."
        ) from None


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) of every registered kind, in registry order: the model's choices."""
    return [(kind, spec.label) for kind, spec in REGISTRY.items()]
