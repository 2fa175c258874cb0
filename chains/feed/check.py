"""``feedcheck``: walk one account's live pipeline stage by stage and say where it breaks.

Stages, in order (``STAGES``); the walk stops at the first failure, whose result says what to do:

1. credentials present — client id, secrets and an access token are stored;
2. token accepted — the broker's profile call accepts the token;
3. feed connected — the feed URL is authorized (Upstox) and a WebSocket opens. This is the
   check's own short-lived connection (DhanHQ allows 5 per user, Upstox 2 — the feed worker
   holds one);
4. subscribed — the tracked chain's index and a few legs near the money are subscribed;
5. frames received — a frame arrives within the timeout;
6. decoded — every frame of a short window decodes, and price ticks arrive;
7. applied to chains — the running feed worker (its status in Redis) is live, its chains
   are ready, and its tick count grows while the broker sends ticks;
8. published — every chain of the worker has a snapshot in Redis, without publish errors;
9. consumer receives — a subscriber of the chain's Channels group (the real channel layer)
   receives a delta from the worker within the timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.layers import InMemoryChannelLayer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from brokers.accounts import ADMIN, config_of, load_account
from brokers.adapters import AccountConfig, FeedAdapter, InstrumentRef, adapter_for
from brokers.exceptions import BrokerError, CodecError, FeedConfigError
from brokers.registry import get_spec
from brokers.ticks import Disconnect, Tick

from .. import store
from ..contracts import ChainDeltaEvent, parse_chain_delta
from ..plan import ChainPlan, plan_chains
from ..selectors import LIVE_STATES
from .status import ChainStatus, FeedStatus

CREDENTIALS = "credentials present"
TOKEN = "token accepted"  # noqa: S105 - a stage name, not a secret
CONNECTED = "feed connected"
SUBSCRIBED = "subscribed"
FRAMES = "frames received"
DECODED = "decoded"
APPLIED = "applied to chains"
PUBLISHED = "published"
CONSUMER = "consumer receives"
STAGES = (CREDENTIALS, TOKEN, CONNECTED, SUBSCRIBED, FRAMES, DECODED, APPLIED, PUBLISHED, CONSUMER)
SAMPLE_STRIKES = 3  # strikes each side of the middle the check subscribes
STATUS_WAIT = 1.6  # seconds between two reads of the worker's status (it refreshes every 1 s)


@dataclass(frozen=True)
class StageResult:
    """One stage's verdict: ``ok``, what was seen, and on failure what to do."""

    stage: str
    ok: bool
    detail: str
    fix: str = ""


class _Failed(Exception):
    """Ends the walk at a failed stage (internal)."""

    def __init__(self, stage: str, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.result = StageResult(stage, False, detail, fix)


class FeedCheck:
    """The walk for account ``name``. ``report`` is called with each stage's result as soon as
    it is known; ``run()`` returns them all (the last one failed unless all nine passed)."""

    def __init__(
        self,
        name: str,
        *,
        layer: Any,
        report: Callable[[StageResult], None],
        timeout: float = 10.0,
        window: float = 2.0,
    ) -> None:
        self.name = name
        self.layer = layer
        self.timeout = timeout
        self.window = window
        self._report = report
        self.results: list[StageResult] = []

    def run(self) -> list[StageResult]:
        """Walk the stages (synchronous: reads the database, then runs the async stages)."""
        try:
            config, plans = self._credentials()
            asyncio.run(self._walk(config, plans))
        except _Failed as failed:
            self._add(failed.result)
        return self.results

    @property
    def passed(self) -> bool:
        return len(self.results) == len(STAGES) and all(r.ok for r in self.results)

    def _add(self, result: StageResult) -> None:
        self.results.append(result)
        self._report(result)

    def _pass(self, stage: str, detail: str) -> None:
        self._add(StageResult(stage, True, detail))

    def _credentials(self) -> tuple[AccountConfig, list[ChainPlan] | FeedConfigError]:
        try:
            account = load_account(self.name)
        except FeedConfigError as exc:
            raise _Failed(CREDENTIALS, str(exc), "Add what is missing, then run again.") from None
        plans: list[ChainPlan] | FeedConfigError
        try:
            plans = plan_chains(account)
        except FeedConfigError as exc:  # reported at "subscribed", where chains are needed
            plans = exc
        what = ", ".join(get_spec(account.kind).credential_labels())
        self._pass(CREDENTIALS, f"{account.name} ({account.kind}): {what}, access token stored")
        return config_of(account), plans

    async def _walk(self, config: AccountConfig, plans: list[ChainPlan] | FeedConfigError) -> None:
        adapter = adapter_for(config)
        try:
            await self._token(adapter)
            frames = await self._own_connection(adapter, plans)
            ticks = self._decoded(adapter, frames)
        finally:
            await adapter.aclose()
        redis = store.async_client()
        try:
            status = await self._applied(redis, ticks)
            chain = await self._published(redis, status)
        finally:
            await redis.aclose()
        await self._consumer(chain, status)

    async def _token(self, adapter: FeedAdapter) -> None:
        try:
            validity = await adapter.check_token()
        except BrokerError as exc:
            fix = "" if exc.permanent else "The broker did not answer: check the network, retry."
            raise _Failed(TOKEN, str(exc), fix) from None
        until = f", valid until {validity:%d %b %H:%M %Z}" if validity else ""
        self._pass(TOKEN, f"the broker's profile call accepts the token{until}")

    async def _own_connection(
        self, adapter: FeedAdapter, plans: list[ChainPlan] | FeedConfigError
    ) -> list[bytes | str]:
        ws = await self._connect(adapter)
        try:
            if isinstance(plans, FeedConfigError):
                raise _Failed(SUBSCRIBED, str(plans))
            plan = plans[0]
            index, legs = _sample_refs(plan)
            try:
                for message in adapter.subscribe([index], legs):
                    await ws.send(message)
            except ConnectionClosed as exc:
                raise _Failed(
                    SUBSCRIBED,
                    f"the broker closed the connection on subscribe ({_closed(exc)})",
                    FIXES[SUBSCRIBED],
                ) from None
            where = f"{plan.underlying} {plan.expiry}"
            self._pass(SUBSCRIBED, f"{where}: the index and {len(legs)} legs near the money")
            return await self._frames(ws)
        finally:
            await ws.close()

    async def _connect(self, adapter: FeedAdapter) -> ClientConnection:
        try:
            url, safe_url = await adapter.feed_url()
        except BrokerError as exc:
            raise _Failed(CONNECTED, f"authorizing the feed failed: {exc}") from None
        try:
            ws = await connect(
                url, open_timeout=self.timeout, ping_interval=None, max_size=2**23, close_timeout=2
            )
        except InvalidURI:
            # Its message repeats the whole URL, which carries the DhanHQ token or a code.
            detail = f"cannot open {safe_url}: InvalidURI (the broker's feed address is malformed)"
            raise _Failed(CONNECTED, detail, FIXES[CONNECTED]) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            detail = f"cannot open {safe_url}: {type(exc).__name__}: {exc}"
            raise _Failed(CONNECTED, detail, FIXES[CONNECTED]) from None
        spec = get_spec(adapter.kind)
        limit = f"{spec.label} allows {spec.feed_connections}"
        self._pass(CONNECTED, f"{safe_url} (the check's own connection; {limit} per user)")
        return ws

    async def _frames(self, ws: ClientConnection) -> list[bytes | str]:
        started = time.monotonic()
        try:
            frames = [await asyncio.wait_for(ws.recv(), self.timeout)]
        except TimeoutError:
            detail = f"no frame within {self.timeout:g}s of subscribing"
            raise _Failed(FRAMES, detail, FIXES[FRAMES]) from None
        except ConnectionClosed as exc:
            detail = f"the broker closed the connection before a frame ({_closed(exc)})"
            raise _Failed(FRAMES, detail, FIXES["closed"]) from None
        first_after = time.monotonic() - started
        deadline = time.monotonic() + self.window
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames.append(await asyncio.wait_for(ws.recv(), left))
            except (TimeoutError, ConnectionClosed):
                break
        self._pass(
            FRAMES,
            f"first frame {first_after:.2f}s after subscribing; {len(frames)} in {self.window:g}s",
        )
        return frames

    def _decoded(self, adapter: FeedAdapter, frames: list[bytes | str]) -> int:
        ticks, errors, first_error = 0, 0, ""
        for frame in frames:
            if isinstance(frame, str):
                errors += 1
                first_error = first_error or f"a text frame of {len(frame)} chars"
                continue
            try:
                events = adapter.decode(frame)
            except CodecError as exc:
                errors += 1
                first_error = first_error or str(exc)
                events = exc.events
            for event in events:
                if type(event) is Tick:
                    ticks += 1
                elif isinstance(event, Disconnect):
                    detail = f"the broker closed the feed: {event.reason} ({event.reason_code})"
                    raise _Failed(DECODED, detail, FIXES["closed"])
        if errors:
            detail = f"{errors} of {len(frames)} frames could not be decoded (first: {first_error})"
            raise _Failed(DECODED, detail, FIXES[DECODED])
        if not ticks:
            raise _Failed(
                DECODED, f"{len(frames)} frames decoded, none with a price", FIXES["idle"]
            )
        self._pass(DECODED, f"{len(frames)} frames, {ticks} ticks, 0 errors")
        return ticks

    async def _applied(self, redis: Any, ticks_seen: int) -> FeedStatus:
        before = await store.aread_feed_status(redis, self.name)
        if before is None:
            detail = f"no feed worker is running for '{self.name}' (no status in Redis)"
            fix = f"Start it: python manage.py runfeed --account {self.name} (read its log)."
            raise _Failed(APPLIED, detail, fix)
        if before["state"] not in LIVE_STATES:
            detail = f"the feed worker is {before['state']}" + (
                f": {before['error']}" if before["error"] else ""
            )
            raise _Failed(APPLIED, detail, STATE_FIXES.get(before["state"], FIXES["log"]))
        await asyncio.sleep(STATUS_WAIT)
        after = await store.aread_feed_status(redis, self.name) or before
        grown, chains = after["ticks"] - before["ticks"], after["chains"]
        unready = [c for c in chains if not c["ready"]]
        if not chains or unready:
            why = "; ".join(f"{c['underlying']} {c['expiry']}: {c['reason']}" for c in unready)
            detail = f"{len(unready)} of {len(chains)} chains of the feed worker are not ready"
            raise _Failed(APPLIED, f"{detail} ({why or 'it follows none'})", FIXES["unready"])
        if grown <= 0 and after["state"] == "live" and ticks_seen:
            detail = (
                f"the broker sends ticks ({ticks_seen} in this check) but the feed worker "
                f"applied none in {STATUS_WAIT}s"
            )
            raise _Failed(APPLIED, detail, FIXES["log"])
        self._pass(
            APPLIED,
            f"feed worker {after['state']} (pid {after['pid']}), {len(chains)} "
            f"chains ready, +{grown} ticks in {STATUS_WAIT}s",
        )
        return after

    async def _published(self, redis: Any, status: FeedStatus) -> ChainStatus:
        if status["publish_errors"]:
            detail = f"the feed worker counted {status['publish_errors']} publish errors"
            raise _Failed(PUBLISHED, detail, FIXES[PUBLISHED])
        missing = []
        for chain in status["chains"]:
            snapshot = await store.aread_snapshot(redis, chain["underlying"], chain["expiry"])
            if snapshot is None or not snapshot["seq"]:
                missing.append(f"{chain['underlying']} {chain['expiry']}")
        if missing:
            detail = f"no snapshot in Redis for {', '.join(missing)} though the worker follows it"
            raise _Failed(PUBLISHED, detail, FIXES["redis"])
        first = status["chains"][0]
        where = f"{first['underlying']} {first['expiry']} at seq {first['seq']}"
        count = len(status["chains"])
        self._pass(PUBLISHED, f"{count} snapshots in Redis ({where}); {status['deltas']} deltas")
        return first

    async def _consumer(self, chain: ChainStatus, status: FeedStatus) -> None:
        if isinstance(self.layer, InMemoryChannelLayer):
            detail = "the channel layer is in memory: other processes cannot reach it"
            raise _Failed(CONSUMER, detail, "Set CHANNEL_LAYER=redis (the default).")
        group = store.group_name(chain["underlying"], chain["expiry"])
        channel = await self.layer.new_channel()
        await self.layer.group_add(group, channel)
        started = time.monotonic()
        try:
            message = await asyncio.wait_for(self._delta(channel), self.timeout)
        except TimeoutError:
            fix = FIXES["quiet"] if status["state"] == "quiet" else FIXES[CONSUMER]
            raise _Failed(CONSUMER, f"no delta on {group} in {self.timeout:g}s", fix) from None
        finally:
            await self.layer.group_discard(group, channel)
        waited = time.monotonic() - started
        self._pass(CONSUMER, f"delta seq {message['seq']} on {group} after {waited:.2f}s")

    async def _delta(self, channel: str) -> ChainDeltaEvent:
        """The next chain.delta message on ``channel``; ContractError when it lacks a key."""
        while True:
            message = await self.layer.receive(channel)
            if message["type"] == "chain.delta":  # every channel-layer message has a type
                return parse_chain_delta(message)


def _sample_refs(plan: ChainPlan) -> tuple[InstrumentRef, list[InstrumentRef]]:
    """The plan's index and the legs of ``SAMPLE_STRIKES`` strikes each side of the middle."""
    strikes = plan.strikes()
    middle = strikes[len(strikes) // 2]  # masters list strikes around the money
    near = set(sorted(strikes, key=lambda k: abs(k - middle))[: 2 * SAMPLE_STRIKES + 1])
    return plan.index, [leg.ref for leg in plan.legs if leg.strike in near]


def _closed(exc: ConnectionClosed) -> str:
    frame = exc.rcvd
    return f"code {frame.code}: {frame.reason or 'no reason'}" if frame else "no close frame"


FIXES = {
    CONNECTED: "Check the account's feed base URL in admin and that the broker (or simulator) "
    "is reachable from this machine.",
    SUBSCRIBED: "Check that the tracked chain's instruments exist (reload the master) and stay "
    "within the broker's instrument limits.",
    FRAMES: "The broker accepted the connection but sends nothing: check the account's data "
    "plan and the market status; a stalled broker feed shows here too (the feed worker "
    "rebuilds its connection after its liveness timeout).",
    "closed": "A dropped connection without a reason usually means a rejected token or no data "
    f"plan: check the token in {ADMIN} and the broker's data plan.",
    DECODED: "The broker sends frames our codec cannot read: the running feed worker skips and "
    "counts them (status page, decode errors). If it persists the broker's format may have "
    "changed: report it with the feed worker's log.",
    "idle": "The broker sends frames but no prices: check the market status and reload the "
    "instrument master (loadinstruments) so the subscribed ids are current; a stalled broker "
    "feed shows here too.",
    "unready": "Wait for prices to arrive; if it persists see /status/ and the feed worker's log.",
    "log": "Restart the feed worker (runfeed) and read its log.",
    PUBLISHED: "Redis refused the feed worker's writes: check that Redis is up and REDIS_URL; "
    "the worker's log names the error.",
    "redis": "Check that runfeed and this command use the same REDIS_URL.",
    "quiet": "The feed is quiet (no ticks): outside market hours there is nothing to publish; "
    "run feedcheck while the market is open.",
    CONSUMER: "Deltas do not reach the channel layer: runfeed and the web processes must use "
    "the same REDIS_URL with CHANNEL_LAYER=redis.",
}
STATE_FIXES = {
    "token_wait": f"The broker refused the token: enter a new one in {ADMIN} (the worker "
    "resumes by itself).",
    "backoff": "The worker is reconnecting after a failure: read the error and its log.",
    "connecting": "The worker is connecting: run feedcheck again in a few seconds.",
    "standby": "Another feed worker holds this account's lock: check the other runfeed process.",
    "starting": "The worker is starting: run feedcheck again in a few seconds.",
    "stopping": "The worker is stopping: start runfeed again.",
    "stopped": "The worker stopped: start runfeed again.",
}
