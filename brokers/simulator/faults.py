"""The simulator's faults: the state the REST handlers and feeds consult, and the actions of
``POST /sim/faults`` (see ``ACTIONS``) that change it — dropped connections, disconnect
packets, expired or revoked tokens, malformed frames, a stalled feed, REST errors, the market
status, the Dhan authentication-failure style.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from brokers.dhan.encode import encode_quote
from brokers.upstox import MarketDataFeedV3_pb2 as pb
from brokers.upstox.encode import encode_live_feed

from .universe import INDEX

if TYPE_CHECKING:
    from .app import Simulator

logger = logging.getLogger(__name__)

BROKERS = ("dhan", "upstox")
MARKET_STATUSES = tuple(pb.MarketStatus.keys())
MALFORMED_KINDS = ("truncated", "unknown_code", "garbage")


class Faults:
    """Fault state the REST handlers and feeds consult. Times are monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stall_until = 0.0
        self.rest_errors: dict[str, tuple[int, float]] = {}
        self.market_status = "NORMAL_OPEN"
        self.dhan_auth_style = "packet"

    def stalled(self) -> bool:
        return self.clock() < self.stall_until

    @property
    def market_open(self) -> bool:
        return self.market_status == "NORMAL_OPEN"

    def rest_error(self, broker: str) -> int | None:
        """The HTTP status the broker's REST API must answer now, or None."""
        entry = self.rest_errors.get(broker)
        if entry is None:
            return None
        if self.clock() >= entry[1]:
            del self.rest_errors[broker]
            return None
        return entry[0]

    def describe(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "stalled": self.stalled(),
            "stall_seconds_left": None if not self.stalled() else _left(self.stall_until, now),
            "rest_errors": {
                b: {"status": s, "seconds_left": _left(u, now)}
                for b, (s, u) in self.rest_errors.items()
                if u > now
            },
            "market_status": self.market_status,
            "dhan_auth_style": self.dhan_auth_style,
        }


def _left(until: float, now: float) -> float | None:
    return None if math.isinf(until) else round(until - now, 3)


class BadRequest(ValueError):
    """A control request that cannot be carried out; the message says what to send."""


def _brokers(body: dict[str, Any], *, default: str = "all") -> tuple[str, ...]:
    broker = body.get("broker", default)
    if broker == "all":
        return BROKERS
    if broker not in BROKERS:
        raise BadRequest(f"broker must be 'dhan', 'upstox' or 'all', got {broker!r}")
    return (broker,)


def _seconds(body: dict[str, Any], *, required: bool) -> float:
    seconds = body.get("seconds")
    if seconds is None and not required:
        return math.inf
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise BadRequest(f"seconds must be a positive number, got {seconds!r}")
    return float(seconds)


def malformed_frames(sim: Simulator, broker: str, kind: str, count: int) -> list[bytes]:
    """``count`` bad frames of ``kind`` for ``broker`` (each is a complete WebSocket frame)."""
    now = datetime.now(UTC)
    if broker == "dhan":
        if kind == "truncated":
            index = sim.universe.indices["NIFTY"]
            good = encode_quote(
                "IDX_I",
                index.security_id,
                ltp=index.ltp,
                ltq=0,
                ltt=now,
                avg_price=0.0,
                volume=0,
                total_sell_qty=0,
                total_buy_qty=0,
                open=index.open,
                close=index.prev_close,
                high=index.high,
                low=index.low,
            )
            frame = good[:30]
        elif kind == "unknown_code":
            frame = struct.pack("<BHBII", 99, 12, 2, 40000, 7)
        else:
            frame = b"\xff" * 5
    elif kind == "truncated":
        instrument = next(i for i in sim.universe.instruments if i.kind != INDEX)
        good = encode_live_feed(
            feeds={instrument.upstox_key: {"ltp": instrument.ltp, "ltq": instrument.ltq}},
            mode="ltpc",
            current_ts=now,
        )
        frame = good[: len(good) // 2]
    elif kind == "unknown_code":
        frame = pb.FeedResponse(
            type=7,  # type: ignore[arg-type]  # unknown on purpose; the stub admits known types
            currentTs=int(now.timestamp() * 1000),
        ).SerializeToString()
    else:
        frame = b"\x12\xff\xff\xff\xff\x0f\x08"  # field 2 claims more bytes than follow
    return [frame] * count


async def apply_fault(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    """Carry out one fault action; returns what it did. Raises BadRequest."""
    action = body.get("action")
    handler = ACTIONS.get(action)  # type: ignore[arg-type]
    if handler is None:
        raise BadRequest(f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}")
    result = await handler(sim, body)
    logger.warning("Simulator fault applied: %s → %s", action, result)
    return {"ok": True, "action": action, **result}


async def _drop(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    close_frame = body.get("close_frame", True)
    if not isinstance(close_frame, bool):
        raise BadRequest("close_frame must be true or false")
    affected = 0
    for broker in _brokers(body):
        conns = list(sim.feed(broker).connections)
        for conn in conns:
            if close_frame:
                await conn.close(1001, "simulator: connection dropped")
            else:
                conn.abort()
        affected += len(conns)
    return {"affected": affected}


async def _dhan_disconnect(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    reason = body.get("reason", 800)
    if isinstance(reason, bool) or not isinstance(reason, int) or not 0 <= reason < 65536:
        raise BadRequest(f"reason must be a Dhan disconnect code such as 805, got {reason!r}")
    return {"affected": await sim.dhan_feed.disconnect_all(reason)}


async def _token_fault(sim: Simulator, body: dict[str, Any], *, revoke: bool) -> dict[str, Any]:
    (broker,) = _brokers(body, default="")
    token = body.get("token")
    if token is not None and not isinstance(token, str):
        raise BadRequest("token must be a string (or absent for every active token)")
    try:
        hit = set((sim.auth.revoke if revoke else sim.auth.expire)(broker, token))
    except KeyError:
        raise BadRequest(f"the simulator never issued that {broker} token") from None
    if broker == "dhan":
        affected = await sim.dhan_feed.disconnect_all(809 if revoke else 807, tokens=hit)
    else:
        why = "access token revoked" if revoke else "access token expired"
        affected = await sim.upstox_feed.close_all(1008, why, tokens=hit)
    return {"tokens": len(hit), "affected": affected}


async def _expire(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    return await _token_fault(sim, body, revoke=False)


async def _revoke(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    return await _token_fault(sim, body, revoke=True)


async def _malformed(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("kind", "garbage")
    if kind not in MALFORMED_KINDS:
        raise BadRequest(f"kind must be one of {', '.join(MALFORMED_KINDS)}, got {kind!r}")
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        raise BadRequest("count must be an integer from 1 to 1000")
    affected = 0
    for broker in _brokers(body):
        affected += sim.feed(broker).send_raw(malformed_frames(sim, broker, kind, count))
    return {"affected": affected}


async def _stall(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.faults.stall_until = sim.faults.clock() + _seconds(body, required=False)
    return {}


async def _resume(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.faults.stall_until = 0.0
    sim.flush()
    return {}


async def _rest_error(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    status = body.get("status", 503)
    if status not in (429, 500, 502, 503, 504):
        raise BadRequest(f"status must be 429, 500, 502, 503 or 504, got {status!r}")
    until = sim.faults.clock() + _seconds(body, required=True)
    for broker in _brokers(body):
        sim.faults.rest_errors[broker] = (status, until)
    return {}


async def _market(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    requested: Any = body.get("status")  # any JSON value: checked below
    status = {"open": "NORMAL_OPEN", "closed": "NORMAL_CLOSE"}.get(requested, requested)
    if status not in MARKET_STATUSES:
        raise BadRequest(f"status must be 'open', 'closed' or one of {', '.join(MARKET_STATUSES)}")
    sim.faults.market_status = status
    sim.upstox_feed.broadcast_market_info()
    if body.get("dhan_status_packet", False):
        sim.dhan_feed.market_status()
    return {"market_status": status}


async def _auth_style(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    style = body.get("style")
    if style not in ("packet", "drop"):
        raise BadRequest("style must be 'packet' (disconnect packet) or 'drop' (no close frame)")
    sim.faults.dhan_auth_style = style
    return {}


async def _clear(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.faults.rest_errors.clear()
    sim.faults.stall_until = 0.0
    sim.faults.dhan_auth_style = "packet"
    # Back to what the simulated session says (closed on a --holiday, or outside the hours with
    # --exchange-hours), not to "open": clearing faults must not reopen a closed market.
    session_status = sim.session.upstox_status(sim.market_clock())
    if sim.faults.market_status != session_status:
        await _market(sim, {"status": session_status})
    return {}


ACTIONS: dict[str, Callable[[Simulator, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "drop": _drop,
    "dhan_disconnect": _dhan_disconnect,
    "expire_token": _expire,
    "revoke_token": _revoke,
    "malformed": _malformed,
    "stall": _stall,
    "resume": _resume,
    "rest_error": _rest_error,
    "market": _market,
    "dhan_auth_failure": _auth_style,
    "clear": _clear,
}
