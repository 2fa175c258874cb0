"""The simulated Upstox Market Data Feed V3 (protobuf over WebSocket).

Wire behaviour (shared/docs/protocols/upstox.md §2): the client connects to the single-use URI
that ``/v3/feed/market-data-feed/authorize`` returned (or to ``/v3/feed/market-data-feed`` with
a Bearer header, answered by a 307 redirect to such a URI). The first frame is ``market_info``;
each ``sub``/``change_mode`` gets a snapshot frame (type absent) of its keys; then one
incremental ``live_feed`` frame per interval carries the keys that changed, each with the wire
sub-messages in which something changed, whole (an ``ltpc`` always has ltp, ltt, ltq and cp).
Requests are JSON in **binary** frames (text frames are ignored and counted). Unknown keys are
ignored and counted. A request that would exceed the per-connection key limits
(``brokers.upstox.messages.KEY_LIMITS``/``MIXED_KEY_LIMITS``) closes the connection with code
1008 and the reason; so does an expired or revoked token. IV in the feed is a fraction.
An index subscribed in option_greeks mode gets ltpc payloads (it has no greeks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from brokers.ticks import DepthLevel
from brokers.upstox.encode import (
    encode_live_feed,
    encode_market_info,
    encode_snapshot,
    sub_message_fields,
)
from brokers.upstox.messages import check_key_limit, parse_client_request

from .events import SimTick
from .market import Market
from .universe import INDEX, Instrument
from .wire import FeedConnection, instant

if TYPE_CHECKING:
    from .app import Simulator

logger = logging.getLogger(__name__)

SEGMENTS = ("NSE_EQ", "NSE_FO", "NSE_INDEX", "BSE_EQ", "BSE_FO", "BSE_INDEX", "MCX_FO")


@dataclass(eq=False)
class UpstoxConnection(FeedConnection):
    subs: dict[Instrument, str] = field(default_factory=dict)
    pending: dict[Instrument, SimTick] = field(default_factory=dict)
    sent: dict[Instrument, dict[str, object]] = field(default_factory=dict)
    ignored_text_frames: int = 0

    def describe(self) -> dict[str, object]:
        modes: dict[str, int] = {}
        for mode in self.subs.values():
            modes[mode] = modes.get(mode, 0) + 1
        return {
            **super().describe(),
            "subscriptions": len(self.subs),
            "modes": modes,
            "ignored_text_frames": self.ignored_text_frames,
            "queued": len(self.pending),
        }


def encode_mode(instrument: Instrument, mode: str) -> str:
    """The codec mode a subscription mode is written in (indices have no greeks or depth)."""
    if mode == "full_d30":
        mode = "full"
    if instrument.kind == INDEX and mode == "option_greeks":
        return "ltpc"
    return mode


def fields(tick: SimTick, mode: str) -> dict[str, object]:
    """Every field (Tick vocabulary) an event carries in codec mode ``mode``."""
    i = tick.instrument
    values: dict[str, object] = {
        "exchange_time": instant(tick.at),
        "ltp": tick.ltp,
        "prev_close": i.prev_close,
    }
    if i.kind != INDEX:
        values["ltq"] = tick.ltq
    if mode == "ltpc":
        return values
    if i.kind == INDEX:  # full mode of an index: ltpc + the day's bar
        values.update(open=tick.open, high=tick.high, low=tick.low, close=tick.ltp)
        return values
    greeks = Market.greeks(tick)
    assert greeks is not None
    values.update(
        volume=tick.volume,
        oi=tick.oi,
        iv=round(tick.iv or 0.0, 4),
        delta=round(greeks.delta, 4),
        theta=round(greeks.theta, 4),
        gamma=round(greeks.gamma, 6),
        vega=round(greeks.vega, 4),
    )
    if mode == "option_greeks":
        values.update(
            bid_price=tick.bid, bid_qty=tick.bid_qty, ask_price=tick.ask, ask_qty=tick.ask_qty
        )
        return values
    values.update(
        depth=tuple(
            DepthLevel(bq, aq, None, None, bp, ap) for bq, aq, _, _, bp, ap in Market.depth(tick)
        ),
        open=tick.open,
        high=tick.high,
        low=tick.low,
        close=tick.ltp,
        avg_price=tick.avg_price,
        total_buy_qty=tick.total_buy_qty,
        total_sell_qty=tick.total_sell_qty,
    )
    return values


def live_frame(
    pending: Mapping[Instrument, SimTick],
    *,
    subs: Mapping[Instrument, str],
    sent: dict[Instrument, dict[str, object]],
    now: datetime,
) -> tuple[bytes | None, int]:
    """Return (the live_feed frame of ``pending``, its number of feed entries); (None, 0) when
    nothing changed.

    ``pending`` is the latest event per instrument, ``subs`` the connection's subscription mode
    per instrument (every pending instrument must be in it), ``sent`` what the connection was
    last sent per instrument (Tick vocabulary); ``sent`` is updated to the new values. An entry
    carries the wire sub-messages in which something changed, each whole (see
    :func:`changed_fields`).
    """
    feeds: dict[str, dict[str, object]] = {}
    modes: dict[str, str] = {}
    for instrument, tick in pending.items():
        mode = encode_mode(instrument, subs[instrument])
        values = fields(tick, mode)
        last = sent.get(instrument)
        key = instrument.upstox_key
        changed = values if last is None else changed_fields(values, last, mode=mode, key=key)
        sent[instrument] = values
        if changed:
            feeds[key] = changed
            modes[key] = mode
    if not feeds:
        return None, 0
    # The entries in key order, not in time order: Upstox's ``feeds`` is a protobuf map, whose
    # order says nothing (a reader must not take the first entry past a minute for the last).
    feeds = dict(sorted(feeds.items()))
    return encode_live_feed(feeds=feeds, mode=modes, current_ts=now), len(feeds)


def changed_fields(
    values: Mapping[str, object], last: Mapping[str, object], *, mode: str, key: str
) -> dict[str, object]:
    """Return the fields of ``values`` a live_feed entry carries after ``last`` was sent: every
    field of each wire sub-message in which a field changed (Upstox sends a present sub-message
    whole: an unchanged ltp still travels with a new ltt), and the changed scalars of the
    payload itself. Empty when nothing changed. ``mode`` is the codec mode, ``key`` the
    instrument key; ValueError for an unknown mode or a malformed key.
    """
    whole = sub_message_fields(mode, key)
    changed: dict[str, object] = {}
    for name, value in values.items():
        if name in changed or last.get(name) == value:
            continue
        # A field the mode cannot carry stands alone here; the encoder then refuses it.
        for field_name in whole.get(name, (name,)):
            if field_name in values:
                changed[field_name] = values[field_name]
    return changed


class UpstoxFeed:
    """Every Upstox feed connection, its subscriptions, and the delivery of market events."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.connections: list[UpstoxConnection] = []
        self.subscribers: dict[int, set[UpstoxConnection]] = {}

    def open_count(self, owner: str) -> int:
        return sum(1 for c in self.connections if c.owner == owner and not c.closing)

    async def serve(self, request: web.Request, token: str, owner: str) -> web.WebSocketResponse:
        """Serve an authorised feed connection until it closes."""
        ws = web.WebSocketResponse(
            heartbeat=self.sim.config.ping_interval, compress=False, max_msg_size=4 * 1024 * 1024
        )
        await ws.prepare(request)
        conn = UpstoxConnection("upstox", ws, request, token, owner)
        self.connections.append(conn)
        logger.info("Upstox feed connection %d from %s", conn.id, request.remote)
        conn.write_frames([self.market_info()])
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    await self._on_request(conn, message.data)
                elif message.type is WSMsgType.TEXT:
                    conn.ignored_text_frames += 1  # Upstox reads requests from binary frames only
        finally:
            self._unregister(conn)
        return ws

    def market_info(self) -> bytes:
        status = self.sim.faults.market_status
        return encode_market_info(
            statuses=dict.fromkeys(SEGMENTS, status), current_ts=self.sim.clock.utc()
        )

    def _unregister(self, conn: UpstoxConnection) -> None:
        conn.closing = True
        if conn in self.connections:
            self.connections.remove(conn)
        for instrument in conn.subs:
            self.subscribers.get(instrument.index, set()).discard(conn)
        conn.subs.clear()

    async def _on_request(self, conn: UpstoxConnection, data: bytes) -> None:
        try:
            request = parse_client_request(data)
        except ValueError as exc:
            logger.info("Upstox feed connection %d sent a bad request: %s", conn.id, exc)
            conn.ignored_frames += 1
            return
        instruments = []
        for key in request.instrument_keys:
            instrument = self.sim.universe.by_upstox.get(key)
            if instrument is None:
                conn.unknown_instruments += 1
            else:
                instruments.append(instrument)
        if request.method == "unsub":
            for instrument in instruments:
                conn.subs.pop(instrument, None)
                conn.pending.pop(instrument, None)
                conn.sent.pop(instrument, None)
                self.subscribers.get(instrument.index, set()).discard(conn)
            return
        if request.method == "change_mode":
            instruments = [i for i in instruments if i in conn.subs]
        assert request.mode is not None
        proposed = dict(conn.subs)
        proposed.update(dict.fromkeys(instruments, request.mode))
        problem = _limit_problem(proposed)
        if problem is not None:
            logger.info("Upstox feed connection %d: %s", conn.id, problem)
            await conn.close(1008, problem)
            return
        for instrument in instruments:
            conn.subs[instrument] = request.mode
            conn.pending.pop(instrument, None)
            self.subscribers.setdefault(instrument.index, set()).add(conn)
        if instruments:
            self._snapshot(conn, instruments)

    def _snapshot(self, conn: UpstoxConnection, instruments: list[Instrument]) -> None:
        market = self.sim.market
        feeds, modes = {}, {}
        for instrument in instruments:
            mode = encode_mode(instrument, conn.subs[instrument])
            values = fields(market.snapshot(instrument), mode)
            conn.sent[instrument] = values
            feeds[instrument.upstox_key] = values
            modes[instrument.upstox_key] = mode
        frame = encode_snapshot(feeds=feeds, mode=modes, current_ts=self.sim.clock.utc())
        if not self.sim.faults.stalled():
            conn.write_frames([frame])
            conn.events_sent += len(feeds)

    # --- delivery ----------------------------------------------------------------------------

    def publish(self, ticks: list[SimTick]) -> None:
        """Remember the latest event per subscribed instrument and connection. An event of an
        instrument whose pending one is of an earlier simulated minute sends what is pending
        first: a frame may hold events from both sides of a minute boundary, in no order (as
        Upstox's do), but an instrument's last value before a boundary is never overwritten
        unsent (what a history recorder takes at M:00, what ``/sim/truth`` holds)."""
        subscribers = self.subscribers
        for tick in ticks:
            conns = subscribers.get(tick.instrument.index)
            if conns:
                for conn in conns:
                    held = conn.pending.get(tick.instrument)
                    if held is not None and held.at // 60.0 < tick.at // 60.0:
                        self._send(conn)
                    conn.pending[tick.instrument] = tick

    def flush(self) -> None:
        """Send each connection one live_feed frame with what changed (not while stalled)."""
        for conn in self.connections:
            self._send(conn)

    def _send(self, conn: UpstoxConnection) -> None:
        """Send ``conn`` a live_feed frame of what is pending, unless stalled or congested."""
        if not conn.pending or self.sim.faults.stalled():
            return
        if not conn.writable():
            conn.congested += 1  # the latest event per key waits for the next flush
            return
        frame, count = self._live_frame(conn, self.sim.clock.utc())
        if frame is not None:
            conn.write_frames([frame])
            conn.events_sent += count

    def _live_frame(self, conn: UpstoxConnection, now: datetime) -> tuple[bytes | None, int]:
        """(the live_feed frame of what changed, its number of feed entries); (None, 0) when
        nothing did."""
        pending, conn.pending = conn.pending, {}
        return live_frame(pending, subs=conn.subs, sent=conn.sent, now=now)

    # --- faults ------------------------------------------------------------------------------

    async def close_all(self, code: int, message: str, *, tokens: set[str] | None = None) -> int:
        """Close every connection (or those using ``tokens``) with a close frame."""
        hit = [c for c in self.connections if tokens is None or c.token in tokens]
        for conn in hit:
            await conn.close(code, message)
        return len(hit)

    def send_raw(self, payloads: list[bytes]) -> int:
        for conn in self.connections:
            conn.write_frames(payloads)
        return len(self.connections)

    def broadcast_market_info(self) -> None:
        frame = self.market_info()
        for conn in self.connections:
            conn.write_frames([frame])

    def describe(self) -> list[dict[str, object]]:
        return [c.describe() for c in self.connections]


def _limit_problem(subs: dict[Instrument, str]) -> str | None:
    """Why ``subs`` would break the per-connection key limits, or None."""
    counts: dict[str, int] = {}
    for mode in subs.values():
        counts[mode] = counts.get(mode, 0) + 1
    mixed = len(counts) > 1
    for mode, count in counts.items():
        try:
            check_key_limit(mode, count, mixed_modes=mixed)
        except ValueError:
            kind = "mixed-mode " if mixed else ""
            limit_note = f"{count} {mode} keys exceed the {kind}limit"
            return f"key limit: {limit_note}"
    return None
