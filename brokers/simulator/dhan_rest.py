"""The simulated DhanHQ v2 REST API (under ``/dhan``) and its instrument masters.

Wire facts: shared/docs/protocols/dhan.md §2–3. Every API call needs the headers
``access-token`` and ``client-id`` (RenewToken: ``access-token`` and ``dhanClientId``); a
missing, unknown, expired or revoked token, or a token of another client, gets HTTP 401
``DH-901``. Unknown JSON keys are ignored. Bad input gets HTTP 400 ``DH-905``; an expiry the
underlying does not list gets HTTP 400 ``{"status": "failed", "data": {"811": ...}}``. Rate
limits (``limits.py``) answer HTTP 429 ``DH-904``. IV is a percent, as Dhan sends it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from brokers.dhan.segments import SEGMENT_NUMBERS

from . import masters
from .auth import Check
from .events import SimTick
from .market import Market
from .universe import INDEX, IST, Instrument

if TYPE_CHECKING:
    from .app import Simulator

logger = logging.getLogger(__name__)

MAX_QUOTE_IDS = 1000
_ERROR_TYPES = {
    "DH-901": "Invalid_Authentication",
    "DH-904": "Rate_Limit",
    "DH-905": "Input_Exception",
    "DH-908": "Internal_Server_Error",
}


def dhan_error(status: int, code: str, message: str) -> web.Response:
    """A Dhan error answer ``{"errorType", "errorCode", "errorMessage"}``."""
    body = {
        "errorType": _ERROR_TYPES.get(code, "Other"),
        "errorCode": code,
        "errorMessage": message,
    }
    return web.json_response(body, status=status)


def _auth_error() -> web.Response:
    return dhan_error(
        401, "DH-901", "Client ID or user generated access token is invalid or expired."
    )


def _limited() -> web.Response:
    return dhan_error(
        429, "DH-904", "Too many requests on server from single user breaching rate limits."
    )


class DhanRest:
    """Request handlers of the Dhan REST API and masters."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/dhan/v2/optionchain", self.option_chain),
            web.post("/dhan/v2/optionchain/expirylist", self.expiry_list),
            web.post("/dhan/v2/marketfeed/{kind:ltp|ohlc|quote}", self.market_quote),
            web.get("/dhan/v2/profile", self.profile),
            web.get("/dhan/v2/RenewToken", self.renew_token),
            web.post("/dhan/v2/RenewToken", self.renew_token_post),
            web.get("/dhan/api-data/api-scrip-master.csv", self.compact_master),
            web.get("/dhan/api-data/api-scrip-master-detailed.csv", self.detailed_master),
        ]

    # --- plumbing ----------------------------------------------------------------------------

    def _client(self, request: web.Request, client_header: str = "client-id") -> str | None:
        """The client id when the request's credentials are good, else None."""
        token = request.headers.get("access-token")
        client_id = request.headers.get(client_header)
        if self.sim.auth.dhan_check(token, client_id) is Check.OK:
            return client_id
        logger.info("Dhan REST %s refused: bad credentials", request.path)
        return None

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _underlying(self, body: dict[str, Any]) -> Instrument | web.Response:
        scrip, segment = body.get("UnderlyingScrip"), body.get("UnderlyingSeg")
        if isinstance(scrip, str) and scrip.isdigit():
            scrip = int(scrip)
        if isinstance(scrip, bool) or not isinstance(scrip, int) or not isinstance(segment, str):
            return dhan_error(400, "DH-905", "Missing or invalid UnderlyingScrip / UnderlyingSeg")
        index = self.sim.universe.by_dhan.get((segment, scrip))
        if index is None or index.kind != INDEX:
            return dhan_error(400, "DH-905", f"No option chain for {segment} {scrip}")
        return index

    # --- option chain ------------------------------------------------------------------------

    async def _chain_request(
        self, request: web.Request
    ) -> tuple[str, dict[str, Any], Instrument] | web.Response:
        """(client id, body, index) of an option-chain request, or the error to answer."""
        client = self._client(request)
        if client is None:
            return _auth_error()
        body = await self._body(request)
        if body is None:
            return dhan_error(400, "DH-905", "Request body must be a JSON object")
        index = self._underlying(body)
        if isinstance(index, web.Response):
            return index
        return client, body, index

    async def expiry_list(self, request: web.Request) -> web.Response:
        asked = await self._chain_request(request)
        if isinstance(asked, web.Response):
            return asked
        client, _, index = asked
        unique = ("expirylist", index.security_id)
        if not self.sim.limits.allow_dhan(client, "chain", unique):
            return _limited()
        days = self.sim.universe.expiries[index.spec.symbol]
        return web.json_response({"data": [d.isoformat() for d in days], "status": "success"})

    async def option_chain(self, request: web.Request) -> web.Response:
        asked = await self._chain_request(request)
        if isinstance(asked, web.Response):
            return asked
        client, body, index = asked
        raw = body.get("Expiry")
        try:
            expiry = date.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            return web.json_response(
                {"status": "failed", "data": {"812": "Invalid Date Format"}}, status=400
            )
        if expiry is None:
            return dhan_error(400, "DH-905", "Missing required field Expiry")
        chain = self.sim.universe.chains.get((index.spec.symbol, expiry))
        if chain is None:
            return web.json_response(
                {"status": "failed", "data": {"811": "Invalid Expiry Date"}}, status=400
            )
        unique = ("optionchain", index.security_id, expiry)
        if not self.sim.limits.allow_dhan(client, "chain", unique):
            return _limited()
        market = self.sim.market
        oc = {
            f"{strike:.6f}": {side.lower(): self._leg(market, leg) for side, leg in legs.items()}
            for strike, legs in sorted(chain.items())
        }
        data = {"last_price": index.ltp, "oc": oc}
        return web.json_response({"data": data, "status": "success"})

    @staticmethod
    def _leg(market: Market, instrument: Instrument) -> dict[str, Any]:
        tick = market.snapshot(instrument)
        greeks = Market.greeks(tick)
        assert greeks is not None and tick.iv is not None
        return {
            "average_price": tick.avg_price,
            "greeks": {
                "delta": round(greeks.delta, 5),
                "theta": round(greeks.theta, 5),
                "gamma": round(greeks.gamma, 5),
                "vega": round(greeks.vega, 5),
            },
            "implied_volatility": round(tick.iv * 100.0, 2),
            "last_price": tick.ltp,
            "oi": tick.oi,
            "previous_close_price": instrument.prev_close,
            "previous_oi": instrument.prev_oi,
            "previous_volume": instrument.prev_volume,
            "security_id": instrument.security_id,
            "top_ask_price": tick.ask,
            "top_ask_quantity": tick.ask_qty,
            "top_bid_price": tick.bid,
            "top_bid_quantity": tick.bid_qty,
            "volume": tick.volume,
        }

    # --- market quotes -----------------------------------------------------------------------

    async def market_quote(self, request: web.Request) -> web.Response:
        client = self._client(request)
        if client is None:
            return _auth_error()
        body = await self._body(request)
        if body is None:
            return dhan_error(400, "DH-905", "Request body must be a JSON object of segment → ids")
        wanted: list[tuple[str, int]] = []
        for segment, ids in body.items():
            if segment not in SEGMENT_NUMBERS:
                continue  # unknown keys (the SDK adds dhanClientId) are ignored
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids
            ):
                return dhan_error(400, "DH-905", f"{segment} must be a list of security ids")
            wanted.extend((segment, i) for i in ids)
        if not wanted or len(wanted) > MAX_QUOTE_IDS:
            return dhan_error(400, "DH-905", f"Give 1 to {MAX_QUOTE_IDS} security ids")
        if not self.sim.limits.allow_dhan(client, "quote"):
            return _limited()
        kind = request.match_info["kind"]
        data: dict[str, dict[str, Any]] = {}
        universe, market = self.sim.universe, self.sim.market
        for segment, security_id in wanted:
            instrument = universe.by_dhan.get((segment, security_id))
            if instrument is not None:
                tick = market.snapshot(instrument)
                data.setdefault(segment, {})[str(security_id)] = _quote(kind, tick)
        return web.json_response({"data": data, "status": "success"})

    # --- account -----------------------------------------------------------------------------

    async def profile(self, request: web.Request) -> web.Response:
        client = self._client(request)
        if client is None:
            return _auth_error()
        if not self.sim.limits.allow_dhan(client, "non_trading"):
            return _limited()
        token = request.headers["access-token"]
        validity = datetime.fromtimestamp(self.sim.auth.dhan_validity(token), IST)
        return web.json_response(
            {
                "dhanClientId": client,
                "tokenValidity": validity.strftime("%d/%m/%Y %H:%M"),
                "activeSegment": "Equity, Derivative, Currency, Commodity",
                "ddpi": "Deactive",
                "mtf": "Deactive",
                "dataPlan": "Active",
                "dataValidity": "2099-12-31 23:59:59.0",
            }
        )

    async def renew_token(self, request: web.Request) -> web.Response:
        client = self._client(request, client_header="dhanClientId")
        if client is None:
            return _auth_error()
        if not self.sim.limits.allow_dhan(client, "non_trading"):
            return _limited()
        new = self.sim.auth.dhan_renew(request.headers["access-token"])
        logger.info("Dhan token renewed for client %s (the old token no longer works)", client)
        assert new.expires_at is not None
        expiry = datetime.fromtimestamp(new.expires_at, IST).replace(tzinfo=None)
        return web.json_response(
            {
                "dhanClientId": client,
                "dhanClientName": "SIMULATOR DEMO",
                "accessToken": new.value,
                "expiryTime": expiry.isoformat(timespec="seconds"),
            }
        )

    async def renew_token_post(self, request: web.Request) -> web.Response:
        return dhan_error(400, "DH-905", "RenewToken is a GET request")

    # --- masters -----------------------------------------------------------------------------

    async def compact_master(self, request: web.Request) -> web.Response:
        body = self.sim.cached("dhan-compact", lambda: masters.dhan_compact(self.sim.universe))
        return web.Response(body=body, content_type="text/csv")

    async def detailed_master(self, request: web.Request) -> web.Response:
        body = self.sim.cached("dhan-detailed", lambda: masters.dhan_detailed(self.sim.universe))
        return web.Response(body=body, content_type="text/csv")


def _quote(kind: str, tick: SimTick) -> dict[str, Any]:
    """One instrument's row of a market-quote answer (``ltp`` / ``ohlc`` / ``quote``)."""
    i = tick.instrument
    row: dict[str, Any] = {"last_price": tick.ltp}
    if kind == "ltp":
        return row
    row["ohlc"] = {"open": tick.open, "close": i.prev_close, "high": tick.high, "low": tick.low}
    if kind == "ohlc":
        return row
    levels = Market.depth(tick)
    traded = datetime.fromtimestamp(tick.at, UTC).astimezone(IST)
    row.update(
        average_price=tick.avg_price,
        buy_quantity=tick.total_buy_qty,
        sell_quantity=tick.total_sell_qty,
        depth={
            "buy": [{"quantity": q, "orders": o, "price": p} for q, _, o, _, p, _ in levels],
            "sell": [{"quantity": q, "orders": o, "price": p} for _, q, _, o, _, p in levels],
        },
        last_quantity=tick.ltq,
        last_trade_time=traded.strftime("%d/%m/%Y %H:%M:%S"),
        lower_circuit_limit=round(max(i.prev_close * 0.2, 0.05), 2),
        upper_circuit_limit=round(i.prev_close * 3.0 + 10, 2),
        net_change=round(tick.ltp - i.prev_close, 2),
        oi=tick.oi,
        oi_day_high=tick.oi_day_high,
        oi_day_low=tick.oi_day_low,
        volume=tick.volume,
    )
    return row
