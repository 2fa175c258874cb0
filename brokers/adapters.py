"""Broker feed adapters: one small class per broker, looked up by kind.

An adapter turns an account's settings into a feed URL, subscribe messages, decoded events and
REST calls (spot prices, option chains normalised to chain-book fields, a token check). No
Django here: the worker passes an ``AccountConfig`` read from the database.

An adapter's REST calls are paced by the account's limits shared through Redis
(``brokers.ratelimit``, keyed by account name): every adapter of one account, in any process,
spends one budget. Close an adapter with ``aclose()`` in the event loop that used it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from .dhan import codec as dhan_codec
from .dhan import messages as dhan_messages
from .dhan.codec import DISCONNECT_REASONS
from .dhan.rest import DhanRestClient
from .exceptions import BrokerError, UnknownBrokerKind
from .ratelimit import (
    DhanLimiters,
    RateLimiter,
    SlotBook,
    shared_dhan_limiters,
    shared_upstox_limiter,
)
from .secret import Secret
from .upstox import codec as upstox_codec
from .upstox import messages as upstox_messages
from .upstox.rest import UpstoxRestClient

if TYPE_CHECKING:
    import redis.asyncio as aioredis

# Dhan disconnect reasons that no retry can fix, and the account status each one means.
DHAN_PERMANENT_REASONS = {
    806: "error",  # data APIs not subscribed
    807: "token_expired",
    808: "auth_failed",
    809: "auth_failed",
    810: "auth_failed",
    804: "error",  # instruments over the limit: fix the tracked chains
}


# Broker error codes that say what is wrong with the account (not with one request).
_NO_DATA_PLAN = {"DH-902", "806"}
_TOKEN_EXPIRED = {"DH-901", "UDAPI100050", "807"}
_AUTH_FAILED = {"DH-906", "808", "809", "810", "UDAPI100016", "no-token"}


def account_status_for(exc: BrokerError) -> str | None:
    """The account status a broker refusal means, or None when it is not about the account."""
    code = exc.code or ""
    if code in _NO_DATA_PLAN:
        return "error"
    if exc.http_status == 401 or code in _TOKEN_EXPIRED:
        return "token_expired"
    if code in _AUTH_FAILED:
        return "auth_failed"
    return None


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


@dataclass(frozen=True)
class RestChain:
    """An option chain from REST: the spot and chain-book fields per instrument id."""

    spot: float | None
    rows: dict[str, dict[str, Any]]


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

    async def aclose(self) -> None:
        """Close the REST client and the Redis client of the account's shared limits."""


class DhanAdapter(FeedAdapter):
    kind = "dhan"
    binary_requests = False
    decode = staticmethod(dhan_codec.decode_frame)

    def __init__(
        self,
        config: AccountConfig,
        *,
        limiters: DhanLimiters | None = None,
        redis: aioredis.Redis | None = None,
    ) -> None:
        """``limiters`` default: the account's, shared through Redis (see FeedAdapter)."""
        super().__init__(config, redis=redis)
        self.rest = DhanRestClient(
            config.rest_base_url,
            config.client_id,
            config.access_token,
            limiters=limiters if limiters is not None else shared_dhan_limiters(self.book),
        )

    async def feed_url(self) -> tuple[str, str]:
        url = dhan_messages.feed_url(
            self.config.feed_base_url,
            token=self.config.access_token.reveal(),
            client_id=self.config.client_id,
        )
        return url, dhan_messages.redact_feed_url(url)

    # Indices in Ticker mode (no depth); options in Full mode: price, depth, OI in one packet.
    def subscribe(self, index: Sequence[InstrumentRef], legs: Sequence[InstrumentRef]) -> list[Any]:
        return [
            *dhan_messages.subscribe_messages("ticker", _pairs(index)),
            *dhan_messages.subscribe_messages("full", _pairs(legs)),
        ]

    def unsubscribe(
        self, index: Sequence[InstrumentRef], legs: Sequence[InstrumentRef]
    ) -> list[Any]:
        return [
            *dhan_messages.unsubscribe_messages("ticker", _pairs(index)),
            *dhan_messages.unsubscribe_messages("full", _pairs(legs)),
        ]

    async def spots(self, wanted: Sequence[tuple[InstrumentRef, date]]) -> dict[str, float]:
        by_segment: dict[str, list[int]] = {}
        for ref, _expiry in wanted:
            by_segment.setdefault(ref.segment, []).append(int(ref.broker_id))
        quotes = await self.rest.market_quote("ltp", by_segment)
        return {
            str(security_id): quote.last_price
            for (_segment, security_id), quote in quotes.items()
            if quote.last_price
        }

    async def option_chain(self, index: InstrumentRef, expiry: date) -> RestChain:
        chain = await self.rest.option_chain(int(index.broker_id), index.segment, expiry)
        rows: dict[str, dict[str, Any]] = {}
        for strike in chain.strikes:
            for leg in (strike.ce, strike.pe):
                if leg is None:
                    continue
                rows[str(leg.security_id)] = {
                    "ltp": leg.last_price,
                    "oi": leg.oi,
                    "prev_close": leg.previous_close_price,
                    "prev_oi": leg.previous_oi,
                    "volume": leg.volume,
                    "bid_price": leg.top_bid_price,
                    "bid_qty": leg.top_bid_quantity,
                    "ask_price": leg.top_ask_price,
                    "ask_qty": leg.top_ask_quantity,
                    "avg_price": leg.average_price,
                    "iv": leg.implied_volatility,
                    "delta": leg.delta,
                    "gamma": leg.gamma,
                    "theta": leg.theta,
                    "vega": leg.vega,
                }
        return RestChain(chain.underlying_last_price, rows)

    async def check_token(self) -> datetime | None:
        profile = await self.rest.profile()
        if not profile.has_data_plan:
            raise BrokerError(
                f"DhanHQ account {self.config.name!r} has no active Data API plan: subscribe to "
                "it at DhanHQ, then the feed resumes.",
                broker="dhan",
                permanent=True,
                code="DH-902",
            )
        return profile.token_validity

    async def aclose(self) -> None:
        try:
            await self.rest.aclose()
        finally:
            await self.book.aclose()

    @staticmethod
    def disconnect_status(reason_code: int) -> str | None:
        """The account status a Dhan disconnect reason means, or None when it is transient."""
        return DHAN_PERMANENT_REASONS.get(reason_code)

    @staticmethod
    def disconnect_text(reason_code: int) -> str:
        return DISCONNECT_REASONS.get(reason_code, f"reason {reason_code}")


def _pairs(refs: Sequence[InstrumentRef]) -> list[tuple[str, str]]:
    return [(r.segment, r.broker_id) for r in refs]


class UpstoxAdapter(FeedAdapter):
    kind = "upstox"
    binary_requests = True
    decode = staticmethod(upstox_codec.decode_frame)

    def __init__(
        self,
        config: AccountConfig,
        *,
        limiter: RateLimiter | None = None,
        redis: aioredis.Redis | None = None,
    ) -> None:
        """``limiter`` default: the account's, shared through Redis (see FeedAdapter)."""
        super().__init__(config, redis=redis)
        self.rest = UpstoxRestClient(
            config.rest_base_url,
            access_token=config.access_token,
            limiter=limiter if limiter is not None else shared_upstox_limiter(self.book),
        )

    async def feed_url(self) -> tuple[str, str]:
        # Feed URIs are single-use: authorize again before every connection.
        url = await self.rest.authorize_feed()
        return url, url.split("?", 1)[0] + "?…"

    def subscribe(self, index: Sequence[InstrumentRef], legs: Sequence[InstrumentRef]) -> list[Any]:
        return [
            *upstox_messages.sub([r.broker_id for r in index], mode="ltpc"),
            *upstox_messages.sub([r.broker_id for r in legs], mode="option_greeks"),
        ]

    def unsubscribe(
        self, index: Sequence[InstrumentRef], legs: Sequence[InstrumentRef]
    ) -> list[Any]:
        return upstox_messages.unsub([r.broker_id for r in (*index, *legs)])

    async def spots(self, wanted: Sequence[tuple[InstrumentRef, date]]) -> dict[str, float]:
        # Upstox has no index quote in our client: the option chain carries the spot.
        out: dict[str, float] = {}
        for ref, expiry in wanted:
            chain = await self.option_chain(ref, expiry)
            if chain.spot:
                out[ref.broker_id] = chain.spot
        return out

    async def option_chain(self, index: InstrumentRef, expiry: date) -> RestChain:
        chain = await self.rest.option_chain(index.broker_id, expiry)
        rows: dict[str, dict[str, Any]] = {}
        for strike in chain.strikes:
            for leg in (strike.call, strike.put):
                if leg is None:
                    continue
                rows[leg.instrument_key] = {
                    "ltp": leg.ltp,
                    "oi": leg.oi,
                    "prev_close": leg.close_price,
                    "prev_oi": leg.prev_oi,
                    "volume": leg.volume,
                    "bid_price": leg.bid_price,
                    "bid_qty": leg.bid_qty,
                    "ask_price": leg.ask_price,
                    "ask_qty": leg.ask_qty,
                    "iv": leg.iv,
                    "delta": leg.delta,
                    "gamma": leg.gamma,
                    "theta": leg.theta,
                    "vega": leg.vega,
                }
        return RestChain(chain.underlying_spot_price, rows)

    async def check_token(self) -> datetime | None:
        await self.rest.profile()
        return None  # the profile does not say; tokens expire at 03:30 IST

    async def aclose(self) -> None:
        try:
            await self.rest.aclose()
        finally:
            await self.book.aclose()


ADAPTERS: dict[str, type[FeedAdapter]] = {"dhan": DhanAdapter, "upstox": UpstoxAdapter}


def adapter_for(config: AccountConfig, *, redis: aioredis.Redis | None = None) -> FeedAdapter:
    """The adapter of the account's broker kind; UnknownBrokerKind for an unregistered kind.

    Its REST calls share the account's rate limits with every other adapter of the account
    (same ``config.name``) in every process, through ``redis`` (default: REDIS_URL, a client
    made on first use and closed by the adapter's ``aclose()``; an injected one is the
    caller's to close).
    """
    try:
        cls = ADAPTERS[config.kind]
    except KeyError:
        raise UnknownBrokerKind(f"No feed adapter for broker kind {config.kind!r}.") from None
    return cls(config, redis=redis)
