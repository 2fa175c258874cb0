"""The Upstox feed adapter: an account's settings → feed URL, subscribe messages, REST calls.

Registered for kind ``"upstox"`` in ``brokers.registry``; built by
``brokers.adapters.adapter_for``. No Django here: the worker passes an ``AccountConfig`` read
from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..adapters import AccountConfig, DayClose, FeedAdapter, HistoryAsk, InstrumentRef, RestChain
from ..endpoints import AUTHORIZED_FEED_URI
from ..ratelimit import RateLimiter, shared_upstox_limiter
from . import codec as upstox_codec
from . import messages as upstox_messages
from .historical import NO_IV, fetch_day_closes
from .rest import UpstoxRestClient

if TYPE_CHECKING:
    import redis.asyncio as aioredis


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
        """Raises EndpointRefused when the authorize answer points the feed at a host outside
        BROKER_HOST_ALLOWLIST (or at ws:// outside DEBUG): a forged answer steers nothing."""
        # Feed URIs are single-use: authorize again before every connection.
        url = await self.rest.authorize_feed()
        self.config.endpoints.check(url, field=AUTHORIZED_FEED_URI, broker=self.kind)
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

    async def daily_history(self, ask: HistoryAsk) -> tuple[dict[date, DayClose], str]:
        return await fetch_day_closes(self.rest, ask), NO_IV

    async def aclose(self) -> None:
        try:
            await self.rest.aclose()
        finally:
            await self.book.aclose()
