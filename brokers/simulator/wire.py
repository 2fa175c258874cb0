"""Helpers the simulator's feeds share: raw WebSocket frames, feed connections, time values.

The feeds write server frames straight to the connection's transport: one ``write`` per flush
carries every frame of the interval (a Dhan packet is one frame), which is what lets one core
sustain tens of thousands of ticks per second. The WebSocket responses are created with
``compress=False``, so frames need no per-message deflate; aiohttp's own writes (pings,
close) are whole frames too, so nothing interleaves inside a frame.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

logger = logging.getLogger(__name__)

# Above this many unsent bytes a connection is congested: its frames wait (Dhan: the latest
# packet per instrument is kept) instead of growing the buffer without bound.
HIGH_WATER = 4 * 1024 * 1024
_ids = itertools.count(1)
_seconds: dict[int, datetime] = {}


def binary_frames(payloads: Iterable[bytes]) -> bytes:
    """Return unmasked binary WebSocket frames (server → client), one per payload."""
    parts: list[bytes] = []
    append = parts.append
    for payload in payloads:
        n = len(payload)
        if n < 126:
            append(bytes((0x82, n)))
        elif n < 65536:
            append(b"\x82\x7e" + n.to_bytes(2, "big"))
        else:
            append(b"\x82\x7f" + n.to_bytes(8, "big"))
        append(payload)
    return b"".join(parts)


def second(at: float) -> datetime:
    """The aware UTC datetime of epoch second ``int(at)`` (cached; Dhan LTT is whole seconds)."""
    key = int(at)
    value = _seconds.get(key)
    if value is None:
        if len(_seconds) > 4096:
            _seconds.clear()
        value = _seconds[key] = datetime.fromtimestamp(key, UTC)
    return value


def instant(at: float) -> datetime:
    """The aware UTC datetime of epoch seconds ``at`` (millisecond precision)."""
    return datetime.fromtimestamp(round(at, 3), UTC)


@dataclass(eq=False)
class FeedConnection:
    """One client WebSocket of either feed, with what the control API reports about it."""

    broker: str
    ws: web.WebSocketResponse
    request: web.Request
    token: str = field(repr=False)
    owner: str
    id: int = field(default_factory=lambda: next(_ids))
    opened_at: float = field(default_factory=time.time)
    frames_sent: int = 0
    bytes_sent: int = 0
    ignored_frames: int = 0
    unknown_instruments: int = 0
    events_sent: int = 0  # market events written: Dhan packets, Upstox feed entries
    congested: int = 0  # flushes that found the client over HIGH_WATER unread bytes
    closing: bool = False

    @property
    def peer(self) -> str:
        return str(self.request.remote)

    def writable(self) -> bool:
        transport = self.request.transport
        return (
            not self.closing
            and not self.ws.closed
            and transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() < HIGH_WATER
        )

    def write_frames(self, payloads: list[bytes]) -> None:
        """Send payloads as binary frames in one transport write (caller checked writable)."""
        transport = self.request.transport
        if self.ws.closed or transport is None or transport.is_closing():
            return
        data = binary_frames(payloads)
        transport.write(data)
        self.frames_sent += len(payloads)
        self.bytes_sent += len(data)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self.closing = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def close(self, code: int = 1000, message: str = "") -> None:
        """Close with a close frame (``message`` is cut to the 123 bytes a frame allows)."""
        self.closing = True
        reason = message.encode()[:123]
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason), timeout=2.0)
        except TimeoutError:
            logger.warning(
                "%s feed connection %d did not close in time: dropped", self.broker, self.id
            )
            self.abort()

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "broker": self.broker,
            "peer": self.peer,
            "owner": self.owner,
            "opened_at": self.opened_at,
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "ignored_frames": self.ignored_frames,
            "unknown_instruments": self.unknown_instruments,
            "events_sent": self.events_sent,
            "congested": self.congested,
        }
