"""The simulated Upstox REST API (under ``/upstox``), login, feed authorisation and master.

Wire facts: shared/docs/protocols/upstox.md. Authenticated calls need ``Authorization:
Bearer <token>``; a missing, unknown, expired, revoked or logged-out token gets HTTP 401
``UDAPI100050``. Errors use the documented envelope with snake_case and camelCase keys. Rate
limits (``limits.py``, per token) answer HTTP 429 ``UDAPI10005``. IV is a percent here.
"""

from __future__ import annotations

import html
import logging
import math
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from chains import black76

from . import masters
from .auth import AuthRefused, Check
from .market import Market
from .universe import Instrument

if TYPE_CHECKING:
    from .app import Simulator

logger = logging.getLogger(__name__)

FEED_PATH = "/upstox/market-data-feeder/v3/upstox-developer-api/feeds"
_PROFILE = {
    "email": "demo@simulator.invalid",
    "exchanges": ["NSE", "NFO", "BSE", "BFO"],
    "products": ["D", "I"],
    "broker": "UPSTOX",
    "user_id": "SIM0001",
    "user_name": "Simulator Demo User",
    "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
    "user_type": "individual",
    "poa": False,
    "is_active": True,
}


def upstox_error(status: int, code: str, message: str) -> web.Response:
    """An Upstox error answer in the documented envelope (both key spellings)."""
    error = {
        "error_code": code,
        "message": message,
        "property_path": None,
        "invalid_value": None,
        "errorCode": code,
        "propertyPath": None,
        "invalidValue": None,
    }
    return web.json_response({"status": "error", "errors": [error]}, status=status)


def _success(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def _invalid_token() -> web.Response:
    return upstox_error(401, "UDAPI100050", "Invalid token used to access API")


_DIALOG_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Upstox login (simulator)</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>Upstox login — exchange simulator</h1>
<p>The app <b>{client_id}</b> asks to read market data for user <b>SIM0001</b>.</p>
<form method="post" action="/upstox/v2/login/authorization/dialog/{dialog_id}">
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button>
</form></body></html>
"""


class UpstoxRest:
    """Request handlers of the Upstox REST API, login flow and master."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/upstox/v2/option/chain", self.option_chain),
            web.get("/upstox/v2/option/contract", self.option_contracts),
            web.get("/upstox/v2/user/profile", self.profile),
            web.delete("/upstox/v2/logout", self.logout),
            web.get("/upstox/v2/login/authorization/dialog", self.dialog),
            web.post("/upstox/v2/login/authorization/dialog/{dialog_id}", self.decide),
            web.post("/upstox/v2/login/authorization/token", self.exchange_code),
            web.post("/upstox/v3/login/auth/token/request/{client_id}", self.token_request),
            web.get("/upstox/v3/feed/market-data-feed/authorize", self.authorize_feed),
            web.get("/upstox/v3/feed/market-data-feed", self.direct_feed),
            web.get(FEED_PATH, self.feed),
            web.get("/upstox/market-quote/instruments/exchange/{name}.json.gz", self.master),
        ]

    # --- plumbing ----------------------------------------------------------------------------

    def _token(self, request: web.Request) -> str | web.Response:
        """The request's good bearer token, or the 401 / 429 answer to give instead."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or self.sim.auth.upstox_check(token.strip()) is not Check.OK:
            logger.info("Upstox REST %s refused: bad token", request.path)
            return _invalid_token()
        token = token.strip()
        if not self.sim.limits.allow_upstox(token):
            return upstox_error(429, "UDAPI10005", "Too Many Request Sent")
        return token

    def _underlying(self, request: web.Request) -> Instrument | web.Response:
        key = request.query.get("instrument_key", "")
        spec = self.sim.universe.spec_by_upstox_key(key)
        if spec is None:
            return upstox_error(400, "UDAPI1087", f"Invalid instrument_key {key[:60]!r}")
        return self.sim.universe.indices[spec.symbol]

    @staticmethod
    def _expiry(request: web.Request) -> date | web.Response | None:
        raw = request.query.get("expiry_date")
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            return upstox_error(400, "UDAPI1088", "Invalid date format: use YYYY-MM-DD")

    # --- market data -------------------------------------------------------------------------

    async def option_chain(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if isinstance(token, web.Response):
            return token
        index = self._underlying(request)
        if isinstance(index, web.Response):
            return index
        expiry = self._expiry(request)
        if isinstance(expiry, web.Response):
            return expiry
        if expiry is None:
            return upstox_error(400, "UDAPI1088", "expiry_date is required")
        chain = self.sim.universe.chains.get((index.spec.symbol, expiry), {})
        market = self.sim.market
        rows = []
        for strike, legs in sorted(chain.items()):
            call, put = legs["CE"], legs["PE"]
            rows.append(
                {
                    "expiry": expiry.isoformat(),
                    "pcr": round(put.oi / call.oi, 4) if call.oi else 0,
                    "strike_price": float(strike),
                    "underlying_key": index.upstox_key,
                    "underlying_spot_price": index.ltp,
                    "call_options": _leg(market, call),
                    "put_options": _leg(market, put),
                }
            )
        return _success(rows)  # an expiry the underlying does not list gives [] like Upstox

    async def option_contracts(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if isinstance(token, web.Response):
            return token
        index = self._underlying(request)
        if isinstance(index, web.Response):
            return index
        expiry = self._expiry(request)
        if isinstance(expiry, web.Response):
            return expiry
        rows = []
        for record in masters.upstox_records(self.sim.universe):
            instrument = self.sim.universe.by_upstox[str(record["instrument_key"])]
            if instrument.spec is not index.spec or instrument.expiry is None:
                continue
            if expiry is not None and instrument.expiry != expiry:
                continue
            rows.append({**record, "expiry": instrument.expiry.isoformat()})
        return _success(rows)

    # --- account and login -------------------------------------------------------------------

    async def profile(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if isinstance(token, web.Response):
            return token
        return _success(_PROFILE)

    async def logout(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if isinstance(token, web.Response):
            return token
        self.sim.auth.upstox_logout(token)
        await self.sim.upstox_feed.close_all(1008, "logged out", tokens={token})
        return _success(True)

    async def dialog(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("response_type") != "code":
            return upstox_error(400, "UDAPI100068", "response_type must be 'code'")
        try:
            dialog_id = self.sim.auth.open_dialog(
                client_id=query.get("client_id", ""),
                redirect_uri=query.get("redirect_uri", ""),
                state=query.get("state"),
            )
        except AuthRefused as exc:
            return upstox_error(exc.status, exc.code, exc.message)
        page = _DIALOG_PAGE.format(
            client_id=html.escape(query["client_id"]), dialog_id=html.escape(dialog_id)
        )
        return web.Response(text=page, content_type="text/html")

    async def decide(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            location = self.sim.auth.decide(
                request.match_info["dialog_id"], approve=form.get("decision") == "approve"
            )
        except KeyError:
            return web.Response(
                status=404, text="This login dialog is unknown or already answered: log in again."
            )
        raise web.HTTPFound(location)

    async def exchange_code(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            token = self.sim.auth.exchange_code(
                code=str(form.get("code", "")),
                client_id=str(form.get("client_id", "")),
                client_secret=str(form.get("client_secret", "")),
                redirect_uri=str(form.get("redirect_uri", "")),
                grant_type=str(form.get("grant_type", "")),
            )
        except AuthRefused as exc:
            logger.info("Upstox code exchange refused: %s", exc.code)
            return upstox_error(exc.status, exc.code, exc.message)
        body = {k: v for k, v in _PROFILE.items() if k != "is_active"}
        body.update(is_active=True, access_token=token.value, extended_token=None)
        return web.json_response(body)

    async def token_request(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        secret = body.get("client_secret") if isinstance(body, dict) else None
        try:
            pending = self.sim.auth.request_token(
                client_id=request.match_info["client_id"], client_secret=str(secret or "")
            )
        except AuthRefused as exc:
            return upstox_error(exc.status, exc.code, exc.message)
        logger.info(
            "Upstox token request %s is waiting for approval at /sim/token-requests", pending.id
        )
        return _success(
            {
                "authorization_expiry": str(int(pending.expires_at * 1000)),
                "notifier_url": self.sim.config.upstox_notifier_url,
            }
        )

    # --- feed --------------------------------------------------------------------------------

    def _feed_uri(self, request: web.Request, token: str) -> str:
        request_id, code = self.sim.auth.authorize_feed(token)
        scheme = "wss" if request.secure else "ws"
        query = urlencode({"requestId": request_id, "code": code})
        return f"{scheme}://{request.host}{FEED_PATH}?{query}"

    async def authorize_feed(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if isinstance(token, web.Response):
            return token
        uri = self._feed_uri(request, token)
        return _success({"authorized_redirect_uri": uri, "authorizedRedirectUri": uri})

    async def direct_feed(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if isinstance(token, web.Response):
            return token
        raise web.HTTPTemporaryRedirect(self._feed_uri(request, token))

    async def feed(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        token = sim.auth.redeem_feed(
            request.query.get("requestId", ""), request.query.get("code", "")
        )
        if token is None or sim.auth.upstox_check(token) is not Check.OK:
            logger.info("Upstox feed upgrade refused: unknown, used or stale code")
            return upstox_error(
                401, "UDAPI100050", "Invalid or used feed authorization: authorize again"
            )
        owner = sim.auth.upstox[token].owner
        if sim.upstox_feed.open_count(owner) >= sim.config.upstox_max_connections:
            return upstox_error(
                429,
                "UDAPI10005",
                f"Too many feed connections: {sim.config.upstox_max_connections} allowed",
            )
        return await sim.upstox_feed.serve(request, token, owner)

    async def master(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        exchange = {"complete": None, "NSE": "NSE", "BSE": "BSE"}
        if name not in exchange:
            raise web.HTTPNotFound()
        body = self.sim.cached(
            f"upstox-{name}",
            lambda: masters.upstox_json_gz(self.sim.universe, exchange=exchange[name]),
        )
        return web.Response(body=body, content_type="application/gzip")


def _leg(market: Market, instrument: Instrument) -> dict[str, Any]:
    tick = market.snapshot(instrument)
    greeks = Market.greeks(tick)
    assert greeks is not None and tick.iv is not None and instrument.strike is not None
    sd = tick.iv * tick.years**0.5
    d2 = (math.log(tick.forward / instrument.strike) - 0.5 * sd * sd) / sd
    pop = black76.norm_cdf(d2 if instrument.is_call else -d2)
    return {
        "instrument_key": instrument.upstox_key,
        "market_data": {
            "ltp": tick.ltp,
            "volume": tick.volume,
            "oi": tick.oi,
            "close_price": instrument.prev_close,
            "bid_price": tick.bid,
            "bid_qty": tick.bid_qty,
            "ask_price": tick.ask,
            "ask_qty": tick.ask_qty,
            "prev_oi": instrument.prev_oi,
        },
        "option_greeks": {
            "vega": round(greeks.vega, 4),
            "theta": round(greeks.theta, 4),
            "gamma": round(greeks.gamma, 4),
            "delta": round(greeks.delta, 4),
            "iv": round(tick.iv * 100.0, 2),
            "pop": round(pop * 100.0, 2),
        },
    }
