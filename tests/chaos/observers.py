"""What the chaos harness watches from outside the product, on one asyncio loop in a thread.

* ``WsClient`` — a browser stand-in: ``/ws/live-options/<UNDERLYING>?expiry=…`` rebuilt from
  snapshot + deltas (``bench._fanout_client.ChainReplica``), reconnecting a second after a
  close, every close recorded with its code.
* ``GroupWatcher`` — a subscriber of each chain's Channels group on the private Redis: every
  ``chain.delta`` any feed worker sends, with its writer ``run`` and ``seq``. This is where a
  second writer shows, even when consumers hide it behind a resync. It re-joins the groups
  every second (a restarted Redis forgets them).
* ``SurfaceSampler`` — polls the JSON API (``/api/v2/options/live``) for each chain and the
  status API (``/api/v2/status``) and notes every place that says "live".

``claims.dishonest`` then answers: during which seconds did a surface say "live" although no
tick had reached the chain for a while?
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from channels_redis.core import RedisChannelLayer
from redis.exceptions import RedisError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench._fanout_client import ChainReplica

from .claims import SAMPLE_EVERY, live_claims, says_market_closed, says_quiet, status_rows, words

T = TypeVar("T")

RECONNECT_AFTER = 1.0  # seconds a client waits before reconnecting, as the page does


@dataclass(frozen=True)
class Chain:
    """One tracked chain of the stack: its account, broker, underlying and expiry (ISO)."""

    account: str
    broker: str
    underlying: str
    expiry: str

    @property
    def name(self) -> str:
        return f"{self.underlying} {self.expiry}"

    @property
    def group(self) -> str:
        return f"chain.{self.underlying}.{self.expiry}"


# --- WebSocket clients ------------------------------------------------------------------------


@dataclass
class Close:
    at: float
    code: int | None
    reason: str


class WsClient:
    """One page's WebSocket: connect, rebuild, reconnect after any close (counted)."""

    def __init__(self, base: str, origin: str, chain: Chain, number: int) -> None:
        self.chain, self.number = chain, number
        self.url = f"{base}/ws/live-options/{chain.underlying}?expiry={chain.expiry}"
        self.origin = origin
        self.replica = ChainReplica()
        self.connects = 0
        self.closes: list[Close] = []
        self.errors: list[str] = []
        self.connected = False
        self.messages = 0

    @property
    def label(self) -> str:
        return f"client {self.number} ({self.chain.name})"

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    async def run(self) -> None:
        while True:
            try:
                async with connect(
                    self.url, origin=self.origin, max_size=None, open_timeout=20, ping_interval=None
                ) as ws:
                    self.connects += 1
                    self.connected = True
                    self.replica = ChainReplica()  # a page reload starts from the snapshot
                    try:
                        async for text in ws:
                            self.messages += 1
                            self.replica.apply(json.loads(text), time.time())
                    finally:
                        self.connected = False
                    self.closes.append(Close(time.time(), ws.close_code, ws.close_reason or ""))
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                self.closes.append(Close(time.time(), code, exc.rcvd.reason if exc.rcvd else ""))
            except (OSError, TimeoutError, InvalidHandshake) as exc:  # daphne unreachable
                self.errors.append(f"{time.time():.1f} {type(exc).__name__}: {exc}")
            await asyncio.sleep(RECONNECT_AFTER)

    def status_claims(self) -> list[tuple[float, list[str], dict[str, Any]]]:
        """(time, live claims, what it said) of every status message this client received."""
        return [(t, live_claims(m), words(m)) for t, m in self.replica.statuses]


# --- the chains' Channels groups -----------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    at: float
    run: str | None
    seq: int
    legs: int


class GroupWatcher:
    """Every ``chain.delta`` sent to the chains' groups, on the private Redis."""

    def __init__(self, redis_url: str, chains: list[Chain]) -> None:
        self.redis_url = redis_url
        self.chains = chains
        self.deltas: dict[str, list[Delta]] = {c.group: [] for c in chains}
        self.errors: list[str] = []

    async def run(self) -> None:
        # Reads wait longer than the layer's own 5 s blocking pop (as the product's do); the
        # layer is never flushed: that would delete every consumer's group membership too.
        host = {"address": self.redis_url, "socket_timeout": 15.0, "socket_connect_timeout": 2.0}
        layer = RedisChannelLayer(hosts=[host], capacity=10_000, expiry=30, group_expiry=300)
        channel = await layer.new_channel()
        joiner = asyncio.create_task(self._join(layer, channel))
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except (RedisError, OSError) as exc:  # Redis stopped: the joiner re-joins
                    self.errors.append(f"{time.time():.1f} {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.5)
                    continue
                if message.get("type") != "chain.delta":
                    continue
                group = f"chain.{message.get('underlying')}.{message.get('expiry')}"
                legs = sum(len(s) for s in (message.get("legs") or {}).values())
                self.deltas.setdefault(group, []).append(
                    Delta(time.time(), message.get("run"), message["seq"], legs)
                )
        finally:
            joiner.cancel()
            with contextlib.suppress(RedisError, OSError):
                await layer.close_pools()

    async def _join(self, layer: RedisChannelLayer, channel: str) -> None:
        while True:
            with contextlib.suppress(RedisError, OSError):  # retried in a second
                for chain in self.chains:
                    await layer.group_add(chain.group, channel)
            await asyncio.sleep(1.0)

    def since(self, chain: Chain, at: float) -> list[Delta]:
        return [d for d in list(self.deltas[chain.group]) if d.at > at]

    def last_before(self, chain: Chain, at: float) -> float | None:
        """When the chain's last delta carrying legs (a tick) arrived, at or before ``at``."""
        last = None
        for delta in list(self.deltas[chain.group]):
            if delta.at > at:
                break
            if delta.legs:
                last = delta.at
        return last

    def runs(self, chain: Chain, since: float = 0.0) -> list[str | None]:
        """The writer runs of the chain's deltas since ``since``, consecutive repeats collapsed."""
        out: list[str | None] = []
        for delta in self.since(chain, since):
            if not out or out[-1] != delta.run:
                out.append(delta.run)
        return out


# --- the HTTP surfaces ------------------------------------------------------------------------


@dataclass
class Sample:
    """One answer of a surface about one chain: HTTP status, live claims and what it said."""

    at: float
    surface: str  # "api" or "status"
    chain: Chain
    http: int | None
    claims: list[str]
    said: dict[str, Any]
    market_closed: bool = False
    quiet: bool = False
    version: tuple[Any, Any] | None = None  # the served data's (seq, as_of), a 200 answer's


class SurfaceSampler:
    def __init__(self, base: str, cookie: str, chains: list[Chain]) -> None:
        self.base, self.cookie, self.chains = base, cookie, chains
        self.samples: list[Sample] = []
        self.last_status: dict[str, Any] | None = None

    async def run(self) -> None:
        headers = {"Cookie": self.cookie}
        async with httpx.AsyncClient(base_url=self.base, headers=headers, timeout=10) as client:
            while True:
                started = time.monotonic()
                for chain in self.chains:
                    await self._api(client, chain)
                await self._status(client)
                await asyncio.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - started)))

    async def _get(self, client: httpx.AsyncClient, path: str) -> tuple[int | None, Any]:
        try:
            response = await client.get(path)
        except httpx.HTTPError as exc:
            return None, {"error": f"{type(exc).__name__}: {exc}"}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": response.text[:200]}

    async def _api(self, client: httpx.AsyncClient, chain: Chain) -> None:
        path = f"/api/v2/options/live?underlying={chain.underlying}&expiry={chain.expiry}"
        code, body = await self._get(client, path)
        said = words(body)
        data = body.get("data") if code == 200 and isinstance(body, dict) else None
        version = (data.get("seq"), data.get("as_of")) if isinstance(data, dict) else None
        closed, quiet = says_market_closed(body), says_quiet(said)
        sample = Sample(time.time(), "api", chain, code, live_claims(body), said, closed, quiet)
        sample.version = version
        self.samples.append(sample)

    async def _status(self, client: httpx.AsyncClient) -> None:
        code, body = await self._get(client, "/api/v2/status")
        at = time.time()
        data = body.get("data") if isinstance(body, dict) and code == 200 else None
        if data is not None:
            self.last_status = data
        for chain in self.chains:
            rows = status_rows(data, chain) if data is not None else {"answer": body}
            said = words(rows)
            self.samples.append(Sample(at, "status", chain, code, live_claims(rows), said,
                                       says_market_closed(rows), says_quiet(said)))  # fmt: skip

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.at <= end]

    def data_changes(self, chain: Chain) -> list[tuple[float, float]]:
        """When the API served newer data of ``chain`` than the answer before: (the sample
        before, the sample that showed it) — the flush that changed the chain happened in
        between. Tick evidence the group watcher may miss while it re-joins a restarted
        Redis."""
        changes: list[tuple[float, float]] = []
        last, last_at = None, None
        for sample in list(self.samples):
            if sample.surface != "api" or sample.chain != chain:
                continue
            if sample.version is not None:
                if last is not None and last_at is not None and sample.version != last:
                    changes.append((last_at, sample.at))
                last = sample.version
            last_at = sample.at
        return changes


# --- the loop in its thread -------------------------------------------------------------------


class Observers:
    """The clients, the group watcher and the sampler, running on one loop in a thread."""

    def __init__(
        self, *, web: str, cookie: str, redis_url: str, chains: list[Chain], clients: int
    ) -> None:
        self.chains = chains
        ws_base = "ws" + web[4:]
        self.clients = [WsClient(ws_base, web, chains[n % len(chains)], n) for n in range(clients)]
        self.watcher = GroupWatcher(redis_url, chains)
        self.sampler = SurfaceSampler(web, cookie, chains)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="chaos-observers", daemon=True
        )
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        self.thread.start()

        async def spawn() -> None:
            runners = [self.watcher.run(), self.sampler.run(), *(c.run() for c in self.clients)]
            self.tasks = [asyncio.create_task(r) for r in runners]

        self.call(spawn)

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``make()`` on the observers' loop and return its result (consistent reads)."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)  # type: ignore[arg-type]

    def replicas(self) -> list[tuple[WsClient, dict[str, Any]]]:
        """Each client and a copy of its rebuilt chain (seq, strikes, runs), taken on the loop."""

        async def copy() -> list[tuple[WsClient, dict[str, Any]]]:
            return [
                (
                    c,
                    {
                        "seq": c.replica.seq,
                        "connected": c.connected,
                        "runs": list(c.replica.runs),
                        "strikes": {k: dict(v) for k, v in c.replica.strikes.items()},
                    },
                )
                for c in self.clients
            ]

        return self.call(copy)

    def stop(self) -> None:
        async def cancel() -> None:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        with contextlib.suppress(TimeoutError, RuntimeError):
            self.call(cancel, timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


# --- analysis ---------------------------------------------------------------------------------
