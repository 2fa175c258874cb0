"""WebSocket ``/ws/live-options/<UNDERLYING>?expiry=YYYY-MM-DD``: a chain, streamed.

On connect: ``{"type": "snapshot", "seq", "data"}`` (the API's data) and a ``status``; then
``{"type": "delta", "seq", ...}`` for every flush of the chain's group. The channel layer is
at-most-once and drops at capacity: when this consumer sees a gap in ``seq`` it counts it and
sends a fresh snapshot instead (the browser does the same check and can ask
``{"type": "resync"}``). ``{"type": "status", ...}`` is sent when the feed's state, the
chain's source or its failure code changes. Bad parameters close with a 44xx code and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import date
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from redis.exceptions import RedisError

from . import selectors, store
from .access import may_view_chains
from .api import api_data, parse_expiry

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_TRACKED = 4404
STATUS_POLL_SECONDS = 2.0


@database_sync_to_async
def _resolve(underlying: str, expiry: date | None) -> tuple[Any, date]:
    return selectors.resolve(underlying, expiry)


@database_sync_to_async
def _view(chain: Any, expiry: date, *, with_data: bool = True) -> selectors.ChainView:
    if not with_data:
        chain.account.refresh_from_db()  # the token or status may have changed meanwhile
    return selectors.chain_view(chain, expiry, with_data=with_data)


# (group, run, seq) → the delta's JSON text. Every consumer of a chain in this process receives
# the same group message: encoding it once instead of once per client is what lets one process
# serve hundreds of clients (a 160-leg delta is ~45 KB of JSON). A restarted feed worker counts
# seq from 1 again under a new run: the run keeps its deltas apart from the old ones.
_DELTA_TEXT: dict[tuple[str, str | None, int], str] = {}
_DELTA_TEXT_LIMIT = 512


def delta_text(group: str | None, event: dict[str, Any]) -> str:
    """The ``delta`` message of a ``chain.delta`` event as JSON, encoded once per process."""
    key = (group or "", event.get("run"), event["seq"])
    text = _DELTA_TEXT.get(key)
    if text is None:
        if len(_DELTA_TEXT) >= _DELTA_TEXT_LIMIT:
            _DELTA_TEXT.clear()
        text = _DELTA_TEXT[key] = json.dumps(
            {"type": "delta", "seq": event["seq"], "as_of": event.get("as_of"),
             "legs": event.get("legs", {}), "header": event.get("header")}
        )  # fmt: skip
    return text


class LiveOptionsConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    run: str | None = None
    seq: int | None = None
    status_key: tuple[Any, ...] | None = None
    poller: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.accept()
        if not may_view_chains(self.scope.get("user")):
            await self._refuse(CLOSE_UNAUTHENTICATED, "unauthenticated", "Log in first.")
            return
        underlying = str(self.scope["url_route"]["kwargs"]["underlying"]).upper()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            expiry = parse_expiry((query.get("expiry") or [""])[0])
            self.chain, self.expiry = await _resolve(underlying, expiry)
        except ValueError as exc:
            await self._refuse(CLOSE_BAD_REQUEST, "bad_request", str(exc))
            return
        except selectors.NotTracked as exc:
            await self._refuse(CLOSE_NOT_TRACKED, "not_tracked", str(exc), valid=exc.valid)
            return
        self.group = store.group_name(self.chain.underlying, self.expiry)
        self.redis = store.async_client()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_snapshot()
        self.poller = asyncio.create_task(self._poll_status())

    async def _refuse(self, code: int, name: str, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "code": name, "message": message, **extra})
        await self.close(code=code, reason=message[:120])

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.redis.aclose()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync" and self.group:
            await self.send_snapshot()
        else:
            await self.send_json({"type": "error", "code": "bad_request",
                                  "message": 'Only {"type": "resync"} is understood.'})  # fmt: skip

    async def send_snapshot(self) -> None:
        view = await _view(self.chain, self.expiry)
        data = api_data(view.data) if view.data is not None else None
        self.run = view.data.get("run") if view.data is not None else None
        self.seq = data["seq"] if data else None
        await self.send_json({"type": "snapshot", "seq": self.seq, "data": data})
        await self._send_status(view)

    async def chain_delta(self, event: dict[str, Any]) -> None:
        """A flush of the chain (group message ``chain.delta``)."""
        seq = event["seq"]
        if self.seq is None or event.get("run") != self.run:
            # No base to apply a delta to, or a restarted feed worker (its seq says nothing of
            # ours): the snapshot, written before this delta, is the way back.
            await self.send_snapshot()
            return
        if seq <= self.seq:
            return  # already in the snapshot this client has
        if seq != self.seq + 1:
            with contextlib.suppress(RedisError):  # the counter is diagnostics only
                await store.count_channel_gap(self.redis)
            await self.send_snapshot()
            return
        self.seq = seq
        await self.send(text_data=delta_text(self.group, event))

    async def _send_status(self, view: selectors.ChainView) -> None:
        key = (view.feed_state, view.source, view.code)
        if key == self.status_key:
            return
        self.status_key = key
        await self.send_json(
            {"type": "status", "feed_state": view.feed_state, "source": view.source,
             "code": view.code, "message": view.message}
        )  # fmt: skip

    async def _poll_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_POLL_SECONDS)
            view = await _view(self.chain, self.expiry, with_data=False)
            await self._send_status(view)
