"""The JSON API's answers: ``/api/v2/options/live`` and ``/api/v2/options/expiries``.

Answers: 200 ``{"status": "success", "freshness": …, "data": …}``; 400 bad parameters; 401 not
logged in; 404 an underlying or expiry that is not tracked (the body lists the valid ones); 503
with a ``code`` and a message saying what to do, the ``freshness`` (always stale) and the last
known ``data`` (labelled by ``source``) when there is some. ``freshness`` is
``chains.freshness.Freshness.to_json()``: live, quiet, closed or stale, in words, with the
data's as-of time. ``chains.api_http`` serves them over HTTP.

A live chain is the hot path (bench/api.py): its answer is decided from the snapshot's small
meta record, and the JSON of a live answer's ``data`` is built once per chain version
(``contracts.version``: ``(run, seq)``, the key deltas carry) per process (the small
``freshness`` object is encoded per request, as it changes with time), so
most requests read two small Redis keys and send cached bytes. The tracked chain an underlying
resolves to is reused for ``RESOLVE_SECONDS`` (and forgotten when a tracked chain, an account
or an instrument is saved in this process): an admin's change shows within that time.

The functions here are synchronous (the ORM, on a cache miss, and Redis): call them from async
code through ``database_sync_to_async``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models.signals import post_delete, post_save
from django.http import HttpResponse

from brokers.models import BrokerAccount, Instrument, TrackedChain

from . import selectors, store
from .contracts import ApiData, Snapshot, SnapshotMeta, Version, version

RESOLVE_SECONDS = 2.0
PREFIX = "api/v2/options/"  # the endpoints below are PREFIX + their name
LIVE_PATH = f"/{PREFIX}live"

DATA_KEYS = tuple(ApiData.__annotations__)  # the API's ``data`` (README, "Wire schema")


@dataclass(frozen=True)
class Answer:
    """An HTTP status and the JSON body to send with it."""

    status: int
    body: bytes


def as_json(status: int, payload: dict[str, Any]) -> Answer:
    return Answer(status, json.dumps(payload, cls=DjangoJSONEncoder).encode())


def error(status: int, code: str, message: str, **extra: Any) -> Answer:
    return as_json(status, {"status": "error", "code": code, "message": message, **extra})


def http_response(answer: Answer) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, content_type="application/json")


def api_data(snapshot: Snapshot, *, source: str | None) -> ApiData:
    """The API's ``data``: the snapshot's public keys (feed bookkeeping left out) and where
    its prices come from (``source``)."""
    return {
        "underlying": snapshot["underlying"],
        "expiry": snapshot["expiry"],
        "lot_size": snapshot["lot_size"],
        "strike_interval": snapshot["strike_interval"],
        "atm_strike": snapshot["atm_strike"],
        "spot": snapshot["spot"],
        "spot_prev_close": snapshot["spot_prev_close"],
        "forward": snapshot["forward"],
        "pcr": snapshot["pcr"],
        "max_pain": snapshot["max_pain"],
        "source": source,
        "as_of": snapshot["as_of"],
        "seq": snapshot["seq"],
        "strikes": snapshot["strikes"],
    }


def view_data(view: selectors.ChainView) -> ApiData | None:
    """The API's ``data`` of a view read with its data; None when it has none."""
    if view.data is None:
        return None
    assert "strikes" in view.data, "a view read without data has no API data"
    return api_data(view.data, source=view.source)


def denied() -> Answer:
    return error(401, "unauthenticated", "Log in at /accounts/login/ to use the API.")


def parse_expiry(raw: str | None) -> date | None:
    """None for a missing expiry; ValueError naming the expected form for a bad one."""
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"expiry {raw!r} is not a date: use YYYY-MM-DD") from None


# (underlying, expiry asked) → (monotonic time, tracked chain, expiry): one process's reuse of
# selectors.resolve, which costs two queries. Only successes are kept.
_resolved: dict[tuple[str, date | None], tuple[float, TrackedChain, date]] = {}
# (underlying, expiry) → (the chain version (run, seq), the JSON of the live answer's data at
# that version). seq alone restarts with the feed worker; run tells two workers' books apart.
_live_bodies: dict[tuple[str, date], tuple[Version, bytes]] = {}
_lock = threading.Lock()


def _forget(**kwargs: Any) -> None:
    """A tracked chain, account or instrument changed: resolve afresh."""
    with _lock:
        _resolved.clear()


for _model in (TrackedChain, BrokerAccount, Instrument):
    post_save.connect(_forget, sender=_model, dispatch_uid=f"chains.api.forget.{_model.__name__}")
    post_delete.connect(_forget, sender=_model, dispatch_uid=f"chains.api.del.{_model.__name__}")


# The clock of the reuse (monotonic seconds); a test sets its own instead of the process's.
clock: Callable[[], float] = time.monotonic


def resolve(underlying: str, expiry: date | None) -> tuple[TrackedChain, date]:
    """``selectors.resolve`` reused for ``RESOLVE_SECONDS``; raises what it raises."""
    key = (underlying, expiry)
    now = clock()
    hit = _resolved.get(key)
    if hit is not None and now - hit[0] < RESOLVE_SECONDS:
        return hit[1], hit[2]
    chain, resolved = selectors.resolve(underlying, expiry)
    with _lock:
        if len(_resolved) >= 256:
            _resolved.clear()
        _resolved[key] = (now, chain, resolved)
    return chain, resolved


def _live_data(underlying: str, expiry: date, at: Version) -> bytes | None:
    """The JSON of a live, ready chain's ``data`` at chain version ``at`` (run, seq), built
    once per version; None when the stored snapshot is gone or not ready meanwhile (the caller
    then takes the long way)."""
    key = (underlying, expiry)
    cached = _live_bodies.get(key)
    if cached is not None and cached[0] == at:
        return cached[1]
    snapshot = store.read_snapshot(underlying, expiry)
    if snapshot is None or not snapshot["ready"]:
        return None
    body = json.dumps(api_data(snapshot, source="live"), cls=DjangoJSONEncoder).encode()
    with _lock:  # a newer version than the meta said is fine: it is newer
        _live_bodies[key] = (version(snapshot), body)
    return body


def live(query: Mapping[str, str]) -> Answer:
    """``/api/v2/options/live?underlying=…[&expiry=YYYY-MM-DD]``; with ``&at=HH:MM`` the
    replay of that minute from history (``chains.history.api.replay``)."""
    if query.get("at"):
        from .history.api import replay  # builds on this module: imported on use

        return replay(query)
    underlying = (query.get("underlying") or "").strip().upper()
    if not underlying:
        return error(400, "bad_request", "underlying is required, e.g. ?underlying=NIFTY")
    try:
        expiry = parse_expiry(query.get("expiry"))
        chain, expiry = resolve(underlying, expiry)
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    except selectors.NotTracked as exc:
        return error(404, "not_tracked", str(exc), valid=exc.valid)
    # Decide from the meta record (a few hundred bytes); a live answer's data bytes are cached.
    decided = selectors.chain_view(chain, expiry, with_data=False)
    if decided.ok and decided.data is not None:
        meta: SnapshotMeta = decided.data  # read without data: the meta record
        data_json = _live_data(chain.underlying, expiry, version(meta))
        if data_json is not None:
            freshness = json.dumps(decided.freshness.to_json()).encode()
            prefix = b'{"status": "success", "freshness": ' + freshness + b', "data": '
            return Answer(200, prefix + data_json + b"}")
    view = selectors.chain_view(chain, expiry)
    data = view_data(view)
    freshness_json = view.freshness.to_json()
    if not view.ok:
        return error(
            503, view.code or "unavailable", view.message, freshness=freshness_json, data=data
        )
    return as_json(200, {"status": "success", "freshness": freshness_json, "data": data})


def expiries(query: Mapping[str, str]) -> Answer:
    """``/api/v2/options/expiries?underlying=…``."""
    underlying = (query.get("underlying") or "").strip().upper()
    if not underlying:
        return error(400, "bad_request", "underlying is required, e.g. ?underlying=NIFTY")
    try:
        chain = selectors.tracked_chain(underlying)
    except selectors.NotTracked as exc:
        return error(404, "not_tracked", str(exc), valid=exc.valid)
    listed = [e.isoformat() for e in selectors.expiries(chain)]
    return as_json(
        200, {"status": "success", "data": {"underlying": chain.underlying, "expiries": listed}}
    )


def _history(name: str) -> Callable[[Mapping[str, str]], Answer]:
    """The history endpoint ``name`` (``chains.history.api.ENDPOINTS``), imported on use: that
    module builds on this one."""

    def endpoint(query: Mapping[str, str]) -> Answer:
        from .history.api import ENDPOINTS as HISTORY

        return HISTORY[name](query)

    return endpoint


ENDPOINTS: dict[str, Callable[[Mapping[str, str]], Answer]] = {
    "live": live,
    "expiries": expiries,
    **{name: _history(name) for name in ("history", "oi-change", "strikes", "iv-rank")},
}
