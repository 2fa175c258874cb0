"""The simulated DhanHQ v2 live market feed (``ws://HOST:PORT/dhan/feed?version=2&token=…``).

Wire behaviour (shared/docs/protocols/dhan.md §1): auth only in the query; binary server
frames, one packet per frame; JSON text client messages (``brokers.dhan.messages``); binary
client frames are tolerated (parsed if they hold a request, else ignored and counted).
Per subscribed mode an instrument gets Ticker, Quote + OI (derivatives), or Full packets (an
index in Full mode gets Quote packets: it has no book or OI); a subscription first gets the
instrument's Prev close packet and its current packet(s). Limits: ≤ 100 instruments per
message (else disconnect 804 for too many, 814 for a malformed message), ≤ 5000 per connection
(804), ≤ 5 connections per client id (a 6th drops the oldest with 805). A refused login gets
disconnect 807 (expired), 808 (token of another client), 809 (invalid token), 810 (unknown
client id), 814 (not version=2/authType=2) — or, when the fault says so, a dropped socket.
WebSocket pings every ``ping_interval`` seconds (aiohttp heartbeat).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from brokers.dhan.codec import (
    CODE_FULL,
    CODE_OI,
    CODE_QUOTE,
    CODE_TICKER,
    FULL,
    IST_OFFSET_SECONDS,
    OI,
    QUOTE,
    TICKER,
)
from brokers.dhan.encode import (
    encode_disconnect,
    encode_full,
    encode_market_status,
    encode_oi,
    encode_prev_close,
    encode_quote,
    encode_ticker,
)
from brokers.dhan.messages import MAX_INSTRUMENTS_PER_MESSAGE, RequestCode, parse_client_message
from brokers.dhan.messages import redact_feed_url as redact
from brokers.dhan.segments import segment_number
from brokers.ticks import DepthLevel

from .auth import Check
from .events import SimTick
from .market import Market
from .universe import INDEX, Instrument
from .wire import FeedConnection, second

if TYPE_CHECKING:
    from .app import Simulator

logger = logging.getLogger(__name__)

MAX_PER_CONNECTION = 5000
MAX_CONNECTIONS = 5
MAX_QUEUED_PACKETS = 200_000  # a congested connection keeps at most this many, newest
_REFUSALS = {Check.EXPIRED: 807, Check.WRONG_CLIENT: 808, Check.INVALID: 809}
_REFUSALS[Check.UNKNOWN_CLIENT] = 810


@dataclass(eq=False)
class DhanConnection(FeedConnection):
    subs: dict[Instrument, str] = field(default_factory=dict)
    out: list[bytes] = field(default_factory=list)
    dropped_packets: int = 0

    def describe(self) -> dict[str, object]:
        modes: dict[str, int] = {}
        for mode in self.subs.values():
            modes[mode] = modes.get(mode, 0) + 1
        return {
            **super().describe(),
            "subscriptions": len(self.subs),
            "modes": modes,
            "dropped_packets": self.dropped_packets,
            "queued": len(self.out),
        }


def packets(tick: SimTick, mode: str) -> list[bytes]:
    """The packets of one event for a subscriber in ``mode`` (ticker / quote / full).

    Packed straight from the event with the codec's structs: this is the simulator's hot
    path, and the checked encoders of ``brokers.dhan.encode`` cost 18 µs a Full packet here
    against 7 µs. Byte for byte what those encoders give (tests/brokers/simulator/
    test_load.py); a value a field cannot carry goes through the checked encoders, which
    raise naming it.
    """
    try:
        return _packed(tick, mode)
    except struct.error:
        return _encoded(tick, mode)


def _packed(tick: SimTick, mode: str) -> list[bytes]:
    i = tick.instrument
    seg, sid = _SEGMENTS.get(i.dhan_segment) or _segment(i.dhan_segment), i.security_id
    ltt = int(tick.at) + IST_OFFSET_SECONDS  # what encode.* make of second(tick.at)
    if mode == "ticker":
        return [TICKER.pack(CODE_TICKER, TICKER.size, seg, sid, tick.ltp, ltt)]
    if mode == "full" and i.kind != INDEX:
        return [
            FULL.pack(
                CODE_FULL,
                FULL.size,
                seg,
                sid,
                tick.ltp,
                tick.ltq,
                ltt,
                tick.avg_price,
                tick.volume,
                tick.total_sell_qty,
                tick.total_buy_qty,
                tick.oi,
                tick.oi_day_high,
                tick.oi_day_low,
                tick.open,
                i.prev_close,
                tick.high,
                tick.low,
                *[value for level in Market.depth(tick) for value in level],
            )
        ]
    quote = QUOTE.pack(
        CODE_QUOTE,
        QUOTE.size,
        seg,
        sid,
        tick.ltp,
        tick.ltq,
        ltt,
        tick.avg_price,
        tick.volume,
        tick.total_sell_qty,
        tick.total_buy_qty,
        tick.open,
        i.prev_close,
        tick.high,
        tick.low,
    )
    if i.kind == INDEX:
        return [quote]
    return [quote, OI.pack(CODE_OI, OI.size, seg, sid, tick.oi)]


_SEGMENTS: dict[str, int] = {}


def _segment(name: str) -> int:
    number = _SEGMENTS[name] = segment_number(name)
    return number


def _encoded(tick: SimTick, mode: str) -> list[bytes]:
    """``packets`` through the checked encoders (ValueError/TypeError name a bad value)."""
    i = tick.instrument
    segment, sid, ltt = i.dhan_segment, i.security_id, second(tick.at)
    if mode == "ticker":
        return [encode_ticker(segment, sid, ltp=tick.ltp, ltt=ltt)]
    if mode == "full" and i.kind != INDEX:
        depth = [DepthLevel(*level) for level in Market.depth(tick)]
        return [
            encode_full(
                segment,
                sid,
                ltp=tick.ltp,
                ltq=tick.ltq,
                ltt=ltt,
                avg_price=tick.avg_price,
                volume=tick.volume,
                total_sell_qty=tick.total_sell_qty,
                total_buy_qty=tick.total_buy_qty,
                oi=tick.oi,
                oi_day_high=tick.oi_day_high,
                oi_day_low=tick.oi_day_low,
                open=tick.open,
                close=i.prev_close,
                high=tick.high,
                low=tick.low,
                depth=depth,
            )
        ]
    quote = encode_quote(
        segment,
        sid,
        ltp=tick.ltp,
        ltq=tick.ltq,
        ltt=ltt,
        avg_price=tick.avg_price,
        volume=tick.volume,
        total_sell_qty=tick.total_sell_qty,
        total_buy_qty=tick.total_buy_qty,
        open=tick.open,
        close=i.prev_close,
        high=tick.high,
        low=tick.low,
    )
    if i.kind == INDEX:
        return [quote]
    return [quote, encode_oi(segment, sid, oi=tick.oi)]


def prev_close_packet(instrument: Instrument) -> bytes:
    return encode_prev_close(
        instrument.dhan_segment,
        instrument.security_id,
        prev_close=instrument.prev_close,
        prev_oi=instrument.prev_oi,
    )


class DhanFeed:
    """Every Dhan feed connection, its subscriptions, and the delivery of market events."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.connections: list[DhanConnection] = []
        self.subscribers: dict[int, dict[DhanConnection, str]] = {}

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The feed endpoint: upgrade, check the query's credentials, then serve requests."""
        sim = self.sim
        query = request.query
        ws = web.WebSocketResponse(
            heartbeat=sim.config.ping_interval, compress=False, max_msg_size=4 * 1024 * 1024
        )
        await ws.prepare(request)
        logger.info("Dhan feed connection from %s: %s", request.remote, redact(str(request.url)))
        token, client_id = query.get("token", ""), query.get("clientId", "")
        if query.get("version") != "2" or query.get("authType") != "2":
            reason: int | None = 814
        else:
            reason = _REFUSALS.get(sim.auth.dhan_check(token, client_id))
        if reason is not None:
            await self._refuse(ws, request, reason)
            return ws
        conn = DhanConnection("dhan", ws, request, token, client_id)
        self._register(conn)
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._on_request(
                        conn, message.data, binary=message.type is WSMsgType.BINARY
                    )
        finally:
            self._unregister(conn)
        return ws

    async def _refuse(self, ws: web.WebSocketResponse, request: web.Request, reason: int) -> None:
        logger.info("Dhan feed login refused (%d) for %s", reason, request.remote)
        if self.sim.faults.dhan_auth_style == "drop":
            if request.transport is not None:
                request.transport.abort()
            return
        await ws.send_bytes(encode_disconnect(reason_code=reason))
        await ws.close()

    def _register(self, conn: DhanConnection) -> None:
        mine = [c for c in self.connections if c.owner == conn.owner and not c.closing]
        self.connections.append(conn)
        if len(mine) >= MAX_CONNECTIONS:
            oldest = mine[0]
            logger.info(
                "Dhan client has %d feed connections: dropping the oldest (805)", len(mine) + 1
            )
            self.sim.spawn(self.disconnect(oldest, 805))

    def _unregister(self, conn: DhanConnection) -> None:
        conn.closing = True
        if conn in self.connections:
            self.connections.remove(conn)
        for instrument in conn.subs:
            subscribers = self.subscribers.get(instrument.index)
            if subscribers is not None:
                subscribers.pop(conn, None)
        conn.subs.clear()

    async def _on_request(self, conn: DhanConnection, data: str | bytes, *, binary: bool) -> None:
        try:
            request = parse_client_message(data)
        except ValueError as exc:
            if binary:  # the official SDK follows its disconnect with a binary frame: tolerated
                conn.ignored_frames += 1
                return
            reason = 804 if _over_message_limit(data) else 814
            logger.info(
                "Dhan feed connection %d sent a bad request (%s): disconnect %d",
                conn.id,
                exc,
                reason,
            )
            await self.disconnect(conn, reason)
            return
        if request.code == RequestCode.DISCONNECT:
            await conn.close(1000, "disconnect requested")
            return
        if request.mode == "depth20":  # served by a separate endpoint at Dhan
            conn.ignored_frames += 1
            return
        instruments = []
        for segment, security_id in request.instruments:
            instrument = self.sim.universe.by_dhan.get((segment, int(security_id)))
            if instrument is None:
                conn.unknown_instruments += 1
            else:
                instruments.append(instrument)
        mode = request.mode
        assert mode is not None
        if request.subscribe:
            self._subscribe(conn, instruments, mode)
            if len(conn.subs) > MAX_PER_CONNECTION:
                await self.disconnect(conn, 804)
        else:
            for instrument in instruments:
                conn.subs.pop(instrument, None)
                self.subscribers.get(instrument.index, {}).pop(conn, None)

    def _subscribe(self, conn: DhanConnection, instruments: list[Instrument], mode: str) -> None:
        market = self.sim.market
        for instrument in instruments:
            conn.subs[instrument] = mode
            self.subscribers.setdefault(instrument.index, {})[conn] = mode
        if len(conn.subs) > MAX_PER_CONNECTION:
            return
        for instrument in instruments:
            conn.out.append(prev_close_packet(instrument))
            conn.out.extend(packets(market.snapshot(instrument), mode))
        self.flush_connection(conn)

    # --- delivery ----------------------------------------------------------------------------

    def publish(self, ticks: list[SimTick]) -> None:
        """Queue the packets of ``ticks`` for their subscribers (nothing while stalled)."""
        if self.sim.faults.stalled():
            return
        subscribers = self.subscribers
        for tick in ticks:
            conns = subscribers.get(tick.instrument.index)
            if not conns:
                continue
            encoded: dict[str, list[bytes]] = {}
            for conn, mode in conns.items():
                frames = encoded.get(mode)
                if frames is None:
                    frames = encoded[mode] = packets(tick, mode)
                conn.out.extend(frames)

    def flush(self) -> None:
        """Write every connection's queued packets (one transport write each)."""
        if self.sim.faults.stalled():
            return
        for conn in self.connections:
            if conn.out:
                self.flush_connection(conn)

    def flush_connection(self, conn: DhanConnection) -> None:
        if self.sim.faults.stalled():
            return
        if conn.writable():
            out, conn.out = conn.out, []
            conn.write_frames(out)
            conn.events_sent += len(out)
            return
        conn.congested += 1
        if len(conn.out) > MAX_QUEUED_PACKETS:
            excess = len(conn.out) - MAX_QUEUED_PACKETS
            conn.dropped_packets += excess
            del conn.out[:excess]

    # --- faults ------------------------------------------------------------------------------

    async def disconnect(self, conn: DhanConnection, reason: int) -> None:
        """Send a disconnect packet with ``reason``, then close the connection."""
        if conn.closing:
            return
        conn.write_frames([encode_disconnect(reason_code=reason)])
        await conn.close(1000, f"disconnect {reason}")

    async def disconnect_all(self, reason: int, *, tokens: set[str] | None = None) -> int:
        """Disconnect every connection (or those using ``tokens``); returns how many."""
        hit = [c for c in self.connections if tokens is None or c.token in tokens]
        await asyncio.gather(*(self.disconnect(c, reason) for c in hit))
        return len(hit)

    def send_raw(self, payloads: list[bytes]) -> int:
        """Send ``payloads`` as frames on every connection (malformed-frame faults)."""
        for conn in self.connections:
            conn.write_frames(payloads)
        return len(self.connections)

    def market_status(self) -> None:
        """Send a market-status packet (code 7) per subscribed segment to every connection."""
        for conn in self.connections:
            segments = sorted({i.dhan_segment for i in conn.subs})
            conn.write_frames([encode_market_status(s) for s in segments])

    def describe(self) -> list[dict[str, object]]:
        return [c.describe() for c in self.connections]


def _over_message_limit(data: str | bytes) -> bool:
    """True when ``data`` is a request listing more instruments than one message may carry."""
    try:
        message = json.loads(data)
    except (ValueError, TypeError):
        return False
    items = message.get("InstrumentList") if isinstance(message, dict) else None
    return isinstance(items, list) and len(items) > MAX_INSTRUMENTS_PER_MESSAGE
