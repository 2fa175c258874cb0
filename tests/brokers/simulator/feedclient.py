"""Small feed clients for the simulator tests: real sockets, decoded with our codecs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from brokers.dhan.codec import decode_frame as dhan_decode
from brokers.dhan.messages import subscribe_messages
from brokers.ticks import Disconnect, Tick
from brokers.upstox.codec import Frame
from brokers.upstox.codec import decode_frame as upstox_decode
from brokers.upstox.messages import sub
from tests.sim_process import DEMO, RunningSimulator

TIMEOUT = 5.0


def feed_connect(url: str) -> connect:
    """Connect without client-side flow control: a test that stops reading must still be able
    to close promptly (with a bounded queue websockets stops reading and misses the close)."""
    return connect(url, max_queue=None, max_size=None)


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> bytes | str:
    return await asyncio.wait_for(ws.recv(), timeout)


async def dhan_events(ws: ClientConnection, until: Callable[[list[Any]], bool]) -> list[Any]:
    """Decode frames into events until ``until(events)`` holds (TimeoutError otherwise)."""
    events: list[Any] = []

    async def run() -> list[Any]:
        while not until(events):
            frame = await ws.recv()
            assert isinstance(frame, bytes), "Dhan server frames are binary"
            events.extend(dhan_decode(frame))
        return events

    return await asyncio.wait_for(run(), TIMEOUT)


async def dhan_subscribe(
    ws: ClientConnection, mode: str, instruments: list[tuple[str, int | str]]
) -> None:
    for message in subscribe_messages(mode, instruments):  # type: ignore[arg-type]
        await ws.send(message)


async def closed_with(
    ws: ClientConnection, *, broker: str = "dhan"
) -> tuple[list[Any], ConnectionClosed]:
    """Read until the server closes; returns (the frames' events, the close exception): Dhan
    events, or for ``broker="upstox"`` the decoded Upstox frames — each socket read with its
    own broker's codec (frames still buffered when the close comes are read too)."""
    events: list[Any] = []
    try:
        while True:
            frame = await recv(ws)
            if not isinstance(frame, bytes):
                continue
            if broker == "upstox":
                events.append(upstox_decode(frame))
            else:
                events.extend(dhan_decode(frame))
    except ConnectionClosed as closed:
        return events, closed


def disconnect_codes(events: list[Any]) -> list[int]:
    return [e.reason_code for e in events if isinstance(e, Disconnect)]


def ticks(events: list[Any]) -> list[Tick]:
    return [e for e in events if isinstance(e, Tick)]


async def upstox_uri(sim: RunningSimulator, token: str = DEMO.upstox_token) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{sim.url}/upstox/v3/feed/market-data-feed/authorize",
            headers={"Authorization": f"Bearer {token}"},
        )
    response.raise_for_status()
    return str(response.json()["data"]["authorized_redirect_uri"])


async def upstox_connect(sim: RunningSimulator) -> ClientConnection:
    return await feed_connect(await upstox_uri(sim))


async def upstox_frame(ws: ClientConnection) -> Frame:
    data = await recv(ws)
    assert isinstance(data, bytes)
    return upstox_decode(data)


async def upstox_sub(ws: ClientConnection, keys: list[str], mode: str) -> None:
    for request in sub(keys, mode=mode):
        await ws.send(request)


def option_keys(sim_state: dict[str, Any], underlying: str, expiry_rank: int = 0) -> list[dict]:
    """The state rows of one underlying's options of its ``expiry_rank``-th expiry."""
    rows = [r for r in sim_state["instruments"] if r["underlying"] == underlying and r["expiry"]]
    expiry = sorted({r["expiry"] for r in rows})[expiry_rank]
    return [r for r in rows if r["expiry"] == expiry]


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body)
