"""Broker feed adapters: the shared pieces, and ``adapter_for`` looking the kind up.

An adapter (one small class per broker, in ``brokers/<kind>/adapter.py``, registered in
``brokers.registry``) turns an account's settings into a feed URL, subscribe messages, decoded
events and REST calls (spot prices, option chains normalised to chain-book fields, a token
check). No Django here: the worker passes an ``AccountConfig`` read from the database.

An adapter's REST calls are paced by the account's limits shared through Redis
(``brokers.ratelimit``, keyed by account name): every adapter of one account, in any process,
spends one budget. Close an adapter with ``aclose()`` in the event loop that used it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .endpoints import EndpointPolicy
from .exceptions import BrokerError
from .ratelimit import SlotBook
from .secret import Secret

if TYPE_CHECKING:
    import redis.asyncio as aioredis


@dataclass(frozen=True, slots=True)
class InstrumentRef:
    """An instrument as a feed subscribes to it and a REST call names it."""

    segment: str
    broker_id: str


@dataclass(frozen=True)
class AccountConfig:
    """What an adapter needs from a broker account (read from the database by the worker)."""

    name: str
    kind: str
    client_id: str
    access_token: Secret
    rest_base_url: str
    feed_base_url: str
    # What a URL the broker hands out (Upstox's feed URI) must pass before it is used; the
    # default allows the brokers' real hosts only (``brokers.accounts`` passes the settings').
    endpoints: EndpointPolicy = field(default_factory=EndpointPolicy)


@dataclass(frozen=True)
class RestChain:
    """An option chain from REST: the spot and chain-book fields per instrument id."""

    spot: float | None
    rows: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class HistoryAsk:
    """Which daily history ``FeedAdapter.daily_history`` fetches: an underlying's index, the
    segment of its options, whether it has weekly expiries, and the trading days wanted."""

    underlying: str
    index: InstrumentRef
    option_segment: str
    weekly: bool
    days: tuple[date, ...]


@dataclass(frozen=True)
class DayClose:
    """One trading day's close from a broker's historical API (``brokers/<kind>/historical``):
    None where the broker does not give the figure. ``atm_iv`` is a fraction, the mean of the
    CE and PE IV at the ATM strike; ``straddle`` = CE + PE close at that strike."""

    day: date
    at: datetime  # the instant the figures are of (aware)
    spot: float | None
    atm_strike: float | None
    atm_iv: float | None
    straddle: float | None


class RenewedToken(Protocol):
    """A token a broker issued in place of the account's (``FeedAdapter.renew_token``)."""

    @property
    def access_token(self) -> str: ...

    @property
    def expires_at(self) -> datetime: ...


class FeedAdapter:
    """The interface every broker adapter implements."""

    kind: ClassVar[str]
    binary_requests: ClassVar[bool]

    def __init__(self, config: AccountConfig, *, redis: aioredis.Redis | None = None) -> None:
        """``redis``: where the account's shared rate limits live (default: REDIS_URL)."""
        self.config = config
        # Makes no connection until a shared limiter first reserves a slot.
        self.book = SlotBook(config.name, broker=self.kind, redis=redis)

    async def feed_url(self) -> tuple[str, str]:
        """(URL to open, the same URL safe to log)."""
        raise NotImplementedError

    def subscribe(self, index: Sequence[InstrumentRef], legs: Sequence[InstrumentRef]) -> list[Any]:
        raise NotImplementedError

    def unsubscribe(
        self, index: Sequence[InstrumentRef], legs: Sequence[InstrumentRef]
    ) -> list[Any]:
        raise NotImplementedError

    decode: Callable[[bytes], list[Any]]

    async def spots(self, wanted: Sequence[tuple[InstrumentRef, date]]) -> dict[str, float]:
        """Last prices of index instruments (each with its nearest expiry), by broker id."""
        raise NotImplementedError

    async def option_chain(self, index: InstrumentRef, expiry: date) -> RestChain:
        raise NotImplementedError

    async def check_token(self) -> datetime | None:
        """Raise BrokerError when the broker refuses the account's token; return when the token
        expires if the broker says (DhanHQ's profile does), else None."""
        raise NotImplementedError

    async def renew_token(self) -> RenewedToken:
        """Ask the broker for a new token in place of the account's; the caller must store it.

        Only kinds whose registry entry says ``token.renewable`` implement it; raises
        BrokerError when the broker refuses, NotImplementedError for the others.
        """
        raise NotImplementedError(
            f"{self.kind} tokens are not renewed through the broker's API: an admin replaces "
            "them (see brokers.registry)."
        )

    async def daily_history(self, ask: HistoryAsk) -> tuple[dict[date, DayClose], str]:
        """The closes of ``ask.days`` the broker's historical API gives (days it has no data
        for are absent) and a sentence on what the broker's history lacks ("" if nothing).
        Raises BrokerError."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the REST client and the Redis client of the account's shared limits."""


def adapter_for(config: AccountConfig, *, redis: aioredis.Redis | None = None) -> FeedAdapter:
    """The adapter of the account's broker kind; UnknownBrokerKind for an unregistered kind.

    Its REST calls share the account's rate limits with every other adapter of the account
    (same ``config.name``) in every process, through ``redis`` (default: REDIS_URL, a client
    made on first use and closed by the adapter's ``aclose()``; an injected one is the
    caller's to close).
    """
    from .registry import get_spec  # the registry imports the adapters, which import this

    return get_spec(config.kind).adapter(config, redis=redis)


def account_status_for(exc: BrokerError) -> str | None:
    """The account status a broker refusal means, or None when it is not about the account.

    Looked up in the registry entry of ``exc.broker`` (``BrokerSpec.error_status``); raises
    UnknownBrokerKind for an error of a broker nobody registered.
    """
    from .registry import get_spec  # the registry imports the adapters, which import this

    return get_spec(exc.broker).error_status(exc)
