"""The DhanHQ feed adapter: an account's settings → feed URL, subscribe messages, REST calls.

Registered for kind ``"dhan"`` in ``brokers.registry``; built by ``brokers.adapters.adapter_for``.
No Django here: the worker passes an ``AccountConfig`` read from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..adapters import AccountConfig, DayClose, FeedAdapter, HistoryAsk, InstrumentRef, RestChain
from ..exceptions import BrokerError
from ..ratelimit import DhanLimiters, shared_dhan_limiters
from . import codec as dhan_codec
from . import messages as dhan_messages
from .answers import DhanToken
from .codec import DISCONNECT_REASONS
from .historical import fetch_day_closes
from .rest import DhanRestClient

if TYPE_CHECKING:
    import redis.asyncio as aioredis


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

    async def renew_token(self) -> DhanToken:
        """DhanHQ's RenewToken (see ``DhanRestClient.renew_token``): store the returned token."""
        return await self.rest.renew_token()

    async def daily_history(self, ask: HistoryAsk) -> tuple[dict[date, DayClose], str]:
        return await fetch_day_closes(self.rest, ask), ""

    async def aclose(self) -> None:
        try:
            await self.rest.aclose()
        finally:
            await self.book.aclose()

    @staticmethod
    def disconnect_text(reason_code: int) -> str:
        return DISCONNECT_REASONS.get(reason_code, f"reason {reason_code}")


def _pairs(refs: Sequence[InstrumentRef]) -> list[tuple[str, str]]:
    return [(r.segment, r.broker_id) for r in refs]
