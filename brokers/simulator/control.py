"""The simulator's control API: faults on command, state, reset, manual steps, token approvals.

``POST /sim/faults`` takes one JSON object with an ``action`` (see ``faults.ACTIONS`` and the README
section in the final report); ``GET /sim/state`` reports connections, subscriptions, faults
and every instrument's true price; ``POST /sim/reset`` restores a fresh simulator (same flags);
``POST /sim/step {"steps": N}`` generates N market steps now (use with --ticks-per-second 0);
``POST /sim/rate {"ticks_per_second": N}`` changes the market's rate while running;
``POST /sim/tape {"steps": N}`` pre-generates N steps and replays them in a loop from then on
(load tests; ``{"steps": 0}`` returns to the live model);
``POST /sim/tokens {"broker": ...}`` issues a fresh access token (what a person would get
from the broker's web site); ``GET /sim/token-requests`` lists pending Upstox v3 token
requests (HTML, or JSON with ``?format=json``)
and ``POST /sim/token-requests/{id}/approve`` approves one.
``GET /sim/truth?underlying=NIFTY&expiry=YYYY-MM-DD[&at=TIME]`` answers a chain as the
simulator holds it: now (with its simulated time), or as it stood at the simulated minute at or
before ``at`` (ISO with offset, or ``HH:MM[:SS]`` IST on the simulated day); only the nearest
expiries are kept (``truth``).
"""

from __future__ import annotations

import html
import logging
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from brokers.exchange import IST

from .faults import BROKERS, BadRequest, apply_fault

if TYPE_CHECKING:
    from .app import Simulator

logger = logging.getLogger(__name__)


# --- the notifier of approved Upstox token requests ------------------------------------------


async def notify(url: str, payload: dict[str, str]) -> tuple[bool, str]:
    """POST the token payload to the notifier ``url``; returns (delivered, what happened)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.post(url, json=payload) as response,
        ):
            return 200 <= response.status < 300, f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("Upstox notifier %s could not be reached: %s", url, type(exc).__name__)
        return False, f"{type(exc).__name__}: {exc}"


def token_requests_page(sim: Simulator) -> str:
    rows = "".join(
        f"<li>request {html.escape(r.id)} from app {html.escape(r.client_id)} "
        f'<form style="display:inline" method="post" action="/sim/token-requests/'
        f'{html.escape(r.id)}/approve?html=1"><button>Approve</button></form></li>'
        for r in sim.auth.pending_requests()
    )
    notifier = html.escape(sim.config.upstox_notifier_url or "(no --upstox-notifier-url)")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Token requests</title></head>"
        "<body style='font-family: sans-serif'><h1>Upstox token requests (simulator)</h1>"
        f"<p>Approved tokens are sent to {notifier}.</p>"
        f"<ul>{rows or '<li>none pending</li>'}</ul></body></html>"
    )


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    """The request's JSON body when it is an object, else None."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def parse_at(raw: str, *, today: date) -> float:
    """Epoch seconds of ``raw``: ISO with an offset, or ``HH:MM[:SS]`` IST on ``today``.

    Raises ValueError saying what is accepted.
    """
    try:
        if len(raw) <= 8:
            return datetime.combine(today, time.fromisoformat(raw), tzinfo=IST).timestamp()
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"at={raw!r}: give HH:MM[:SS] (IST) or an ISO time with its offset")
    return moment.timestamp()


def routes(sim: Simulator) -> list[web.RouteDef]:
    """The ``/sim`` control routes of ``sim``."""

    async def faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"error": "send a JSON object with an 'action'"}, status=400)
        try:
            return web.json_response(await apply_fault(sim, body))
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def state(request: web.Request) -> web.Response:
        with_instruments = request.query.get("instruments", "1") != "0"
        return web.json_response(sim.describe(instruments=with_instruments))

    async def truth(request: web.Request) -> web.Response:
        query = request.query
        symbol, raw_expiry, raw_at = (
            query.get("underlying", ""),
            query.get("expiry"),
            query.get("at"),
        )
        days = sim.universe.expiries.get(symbol)
        if days is None:
            known = ", ".join(sim.universe.expiries)
            return web.json_response({"error": f"underlying must be one of {known}"}, status=400)
        try:
            day = date.fromisoformat(raw_expiry) if raw_expiry else days[0]
        except ValueError:
            return web.json_response({"error": "expiry must be YYYY-MM-DD"}, status=400)
        at = None
        if raw_at:
            today = datetime.fromtimestamp(sim.market.now(), IST).date()
            try:
                at = parse_at(raw_at, today=today)
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        try:
            return web.json_response(sim.truth.chain(symbol, day, at))
        except KeyError:
            kept = sorted(d.isoformat() for s, d in sim.truth.chains if s == symbol)
            return web.json_response(
                {"error": f"{symbol} {day} is not kept: ask for one of {', '.join(kept)}"},
                status=404,
            )
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)

    async def reset(request: web.Request) -> web.Response:
        await sim.reset()
        return web.json_response({"ok": True})

    async def step(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        steps = body.get("steps") if isinstance(body, dict) else None
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1_000_000:
            return web.json_response({"error": 'send {"steps": N}, 1 ≤ N ≤ 1000000'}, status=400)
        sim.advance(steps)
        return web.json_response({"ok": True, "steps": steps, "total_steps": sim.market.steps})

    async def rate(request: web.Request) -> web.Response:
        body = await _json_object(request)
        value = body.get("ticks_per_second") if body is not None else None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000_000:
            return web.json_response(
                {"error": 'send {"ticks_per_second": N}, 0 ≤ N ≤ 10000000'}, status=400
            )
        sim.set_rate(value)
        return web.json_response({"ok": True, "ticks_per_second": value})

    async def tape(request: web.Request) -> web.Response:
        body = await _json_object(request)
        steps = body.get("steps") if body is not None else None
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 5_000_000:
            return web.json_response({"error": 'send {"steps": N}, 0 ≤ N ≤ 5000000'}, status=400)
        sim.load_tape(steps)
        return web.json_response({"ok": True, "steps": steps})

    async def token_requests(request: web.Request) -> web.Response:
        if request.query.get("format") == "json":
            pending = [{"id": r.id, "client_id": r.client_id} for r in sim.auth.pending_requests()]
            return web.json_response({"pending": pending})
        return web.Response(text=token_requests_page(sim), content_type="text/html")

    async def approve(request: web.Request) -> web.Response:
        try:
            result = await sim.approve_token_request(request.match_info["id"])
        except KeyError:
            return web.json_response(
                {"error": "no such pending token request (approved, expired or unknown)"},
                status=404,
            )
        if request.query.get("html"):
            raise web.HTTPFound("/sim/token-requests")
        return web.json_response(result)

    async def issue(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        broker = body.get("broker") if isinstance(body, dict) else None
        if broker not in BROKERS:
            return web.json_response({"error": 'send {"broker": "dhan"|"upstox"}'}, status=400)
        token = sim.auth.dhan_issue() if broker == "dhan" else sim.auth.upstox_issue()
        return web.json_response(
            {
                "ok": True,
                "broker": broker,
                "access_token": token.value,
                "expires_at": token.expires_at,
            }
        )

    return [
        web.post("/sim/tokens", issue),
        web.post("/sim/faults", faults),
        web.get("/sim/state", state),
        web.get("/sim/truth", truth),
        web.post("/sim/reset", reset),
        web.post("/sim/step", step),
        web.post("/sim/rate", rate),
        web.post("/sim/tape", tape),
        web.get("/sim/token-requests", token_requests),
        web.post("/sim/token-requests/{id}/approve", approve),
    ]
