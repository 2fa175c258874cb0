"""What a chain's writers hand its readers in other processes, each defined once. Pure Python.

The chain book (``chains.book``) writes every record here; the feed worker and the REST
repopulate task store and publish them; web processes read them back:

- ``Snapshot`` / ``StoredSnapshot`` — a whole chain (``ChainBook.snapshot``,
  ``book.stored_snapshot``), stored in Redis as ``optionsite:chain:<UNDERLYING>:<EXPIRY>`` and
  in the database (``ChainSnapshot.data``); read back with ``parse_snapshot``;
- ``SnapshotMeta`` — the small record stored beside it (``snapshot_meta``; ``parse_meta``);
- ``Delta`` — one flush of a chain (``ChainBook.flush``), sent to the chain's Channels group
  as a ``ChainDeltaEvent`` (``chain_delta_event``; ``parse_chain_delta``);
- ``LegJSON`` — one contract's leg inside both (``leg_json``; the way back into a book:
  ``leg_book_fields``);
- the WebSocket messages web processes send browsers (``SnapshotMessage``, ``DeltaMessage``,
  ``StatusMessage``, ``ErrorMessage``) and the API's ``ApiData``.

The JSON names and what they mean are listed once, in README.md ("Wire schema", under "Chains:
pages, JSON API, live WebSocket"); ``static/optionsite/chain.js`` reads those names.

Readers never ``.get()`` a required key: they parse. A parse function returns its argument,
typed, or raises ``ContractError`` naming the keys that are missing and, when some are, the
keys it did not expect (a renamed key shows as both). A key a reader does not know is allowed:
a writer may add fields before its readers use them.

A version of a chain is ``(run, seq)`` (``version``): ``seq`` counts a writer's flushes and
``run`` names the writer's book — a restarted feed worker counts from 1 again under a new run.
Deltas, the WebSocket's per-process delta text cache and the API's per-process answer cache
all key on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, final

from .exceptions import ContractError

if TYPE_CHECKING:
    from .freshness import FreshnessJSON
    from .leg import Leg

# --- the records ---------------------------------------------------------------------------------


class LegJSON(TypedDict):
    """One contract of a chain as the API shows it. Prices in rupees rounded to paise; every
    value is None (JSON null) when not known — never 0."""

    instrument_id: str  # the broker's instrument id
    ltp: float | None
    change: float | None  # ltp - prev_close
    bid: float | None
    ask: float | None
    bid_qty: int | None
    ask_qty: int | None
    volume: int | None
    oi: int | None
    oi_change: int | None  # oi - the previous day's oi
    prev_close: float | None
    iv: float | None  # Black-76 on the forward; IV and greeks are None together
    delta: float | None
    gamma: float | None
    theta: float | None
    vega: float | None
    buildup: str | None  # long_buildup, short_buildup, short_covering, long_unwinding
    exchange_time: str | None  # ISO time of the leg's last exchange update


# strike key ("26000", "26012.5") → "CE" / "PE" → leg (a side may be absent: not listed)
Strikes = dict[str, dict[str, LegJSON]]


class Header(TypedDict):
    """The chain-level figures, recomputed at each flush."""

    spot: float | None
    spot_prev_close: float | None  # the index's previous close (None until the feed sent it)
    forward: float | None  # put-call-parity forward (spot until parity is known)
    atm_strike: float | None
    pcr: float | None
    max_pain: float | None


class Snapshot(Header):
    """A whole chain (``ChainBook.snapshot``): the API's ``data`` without ``source``, plus
    ``run``."""

    underlying: str
    expiry: str  # YYYY-MM-DD
    lot_size: int
    strike_interval: float | None
    as_of: str | None  # ISO time of the last flush; None only for a book never flushed
    run: str
    seq: int
    strikes: Strikes


class StoredSnapshot(Snapshot):
    """A chain as Redis and the database store it (``book.stored_snapshot``): the snapshot
    and its writer's bookkeeping."""

    account: str  # the broker account whose feed wrote it
    broker: str  # the account's kind ("dhan", "upstox")
    ready: bool  # the spot is known and at least half the legs are priced
    reason: str  # why (not) ready, in words


@final  # nothing extends it: ``"strikes" in record`` tells a StoredSnapshot from it
class SnapshotMeta(TypedDict):
    """The small record stored beside a snapshot, for readers that need no prices."""

    underlying: str
    expiry: str
    run: str
    seq: int
    as_of: str | None
    ready: bool
    reason: str
    account: str
    broker: str


class Delta(TypedDict):
    """One flush of a chain (``ChainBook.flush``): the full state of every leg that changed
    since the previous flush, and the header when it changed (None when not)."""

    run: str
    seq: int  # the previous flush's + 1
    as_of: str  # ISO time of this flush
    legs: Strikes  # only the changed legs
    header: Header | None


class ChainDeltaEvent(Delta):
    """A delta as the chain's Channels group carries it (handled by ``chain_delta``)."""

    type: Literal["chain.delta"]
    underlying: str
    expiry: str


Version = tuple[str, int]  # (run, seq)


def version(record: Snapshot | SnapshotMeta | Delta) -> Version:
    """The chain version a snapshot, meta record or delta is of: ``(run, seq)``."""
    return (record["run"], record["seq"])


# --- what web processes send browsers -------------------------------------------------------------


class ApiData(Header):
    """The API's ``data`` and the WebSocket snapshot's: the snapshot's public keys and where
    the prices come from (``source``: ``live``, ``last_known``, ``closing``)."""

    underlying: str
    expiry: str
    lot_size: int
    strike_interval: float | None
    source: str | None
    as_of: str | None
    seq: int
    strikes: Strikes


class SnapshotMessage(TypedDict):
    type: Literal["snapshot"]
    seq: int | None  # None with no data
    data: ApiData | None


class DeltaMessage(TypedDict):
    type: Literal["delta"]
    seq: int
    as_of: str
    legs: Strikes
    header: Header | None


class StatusMessage(TypedDict):
    type: Literal["status"]
    feed_state: str  # live, quiet, down, or the worker's state (connecting, backoff, …)
    source: str | None
    code: str | None  # why the chain is not served as current (None: it is)
    message: str
    freshness: FreshnessJSON


class ErrorMessage(TypedDict):
    """A refusal (then a close with a 44xx code) or a bad client frame. A refusal of an
    untracked underlying or expiry also carries ``valid``: the tracked ones."""

    type: Literal["error"]
    code: str
    message: str


def delta_message(delta: Delta) -> DeltaMessage:
    """The WebSocket ``delta`` message of ``delta``."""
    return {
        "type": "delta",
        "seq": delta["seq"],
        "as_of": delta["as_of"],
        "legs": delta["legs"],
        "header": delta["header"],
    }


# --- writing ------------------------------------------------------------------------------------

META_KEYS: tuple[str, ...] = tuple(SnapshotMeta.__annotations__)


def snapshot_meta(snapshot: StoredSnapshot) -> SnapshotMeta:
    """The meta record of ``snapshot``."""
    return {key: snapshot[key] for key in META_KEYS}  # type: ignore[literal-required,return-value]


def chain_delta_event(*, underlying: str, expiry: str, delta: Delta) -> ChainDeltaEvent:
    """The group message that carries ``delta`` of the chain (underlying, expiry)."""
    return {"type": "chain.delta", "underlying": underlying, "expiry": expiry, **delta}


def leg_json(leg: Leg) -> LegJSON:
    """A leg as the API shows it (prices rounded to paise; None stays None)."""
    ltp, prev_close, oi, prev_oi = leg.ltp, leg.prev_close, leg.oi, leg.prev_oi
    iv, delta, gamma = leg.our_iv, leg.our_delta, leg.our_gamma
    theta, vega = leg.our_theta, leg.our_vega
    exchange_time = leg.exchange_time
    if exchange_time is None:
        stamp = None
    else:
        stamp = _ISO.get(exchange_time)
        if stamp is None:
            if len(_ISO) >= 4096:
                _ISO.clear()
            stamp = _ISO[exchange_time] = exchange_time.isoformat()
    return {
        "instrument_id": leg.instrument,
        "ltp": _paise(ltp),
        "change": None if ltp is None or prev_close is None else _paise(ltp - prev_close),
        "bid": _paise(leg.bid_price),
        "ask": _paise(leg.ask_price),
        "bid_qty": leg.bid_qty,
        "ask_qty": leg.ask_qty,
        "volume": leg.volume,
        "oi": oi,
        "oi_change": None if oi is None or prev_oi is None else oi - prev_oi,
        "prev_close": _paise(prev_close),
        # IV and greeks are None together, finite floats otherwise (black76)
        "iv": None if iv is None else _fast_round(iv, 1e6, 6),
        "delta": None if delta is None else _fast_round(delta, 1e4, 4),
        "gamma": None if gamma is None else _fast_round(gamma, 1e6, 6),
        "theta": None if theta is None else _fast_round(theta, 1e4, 4),
        "vega": None if vega is None else _fast_round(vega, 1e4, 4),
        "buildup": leg.buildup,
        "exchange_time": stamp,
    }


# LegJSON keys that carry a chain-book market field as it is (``leg_book_fields``).
_BOOK_FIELDS = {
    "ltp": "ltp",
    "bid": "bid_price",
    "ask": "ask_price",
    "bid_qty": "bid_qty",
    "ask_qty": "ask_qty",
    "volume": "volume",
    "oi": "oi",
    "prev_close": "prev_close",
}


def leg_book_fields(leg: LegJSON) -> tuple[dict[str, object], datetime | None]:
    """The way back from ``leg_json``: (the chain-book market fields the leg shows, for
    ``ChainBook.apply_fields``; its exchange time). ``prev_oi`` is ``oi - oi_change`` when
    both are known; analytics are not market fields (the book computes them again)."""
    fields: dict[str, object] = {name: leg[key] for key, name in _BOOK_FIELDS.items()}  # type: ignore[literal-required]
    if leg["oi"] is not None and leg["oi_change"] is not None:
        fields["prev_oi"] = leg["oi"] - leg["oi_change"]
    stamp = leg["exchange_time"]
    return fields, datetime.fromisoformat(stamp) if stamp else None


_ISO: dict[datetime, str] = {}  # exchange times repeat across legs (whole seconds at Dhan)


def round_finite(value: float | None, digits: int) -> float | None:
    """``round(value, digits)``; None for None, NaN or infinity."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(value, digits)


def _paise(value: float | None) -> float | None:
    """``round_finite(value, 2)``: a price in paise; None for None, NaN or infinity."""
    if value is None:
        return None
    scaled = value * 100.0
    if -1e8 < scaled < 1e8:  # False for NaN and infinities
        whole = round(scaled)
        if -0.4999999 < scaled - whole < 0.4999999:
            return whole / 100.0
    return round_finite(value, 2)


def _fast_round(value: float, scale: float, digits: int) -> float:
    """``round(value, digits)`` (the same double; ``scale`` = 10**digits), 2-3× faster.

    Below 1e8 ``value·scale`` is exact to 1e-8, so away from a tie it rounds to the same
    integer as the exact decimal, and ``whole / scale`` is the double nearest that decimal,
    which is what ``round`` returns. Near a tie, or for huge values, ``round`` decides.
    """
    scaled = value * scale
    if -1e8 < scaled < 1e8:
        whole = round(scaled)
        if -0.4999999 < scaled - whole < 0.4999999:
            return whole / scale
    return round(value, digits)


# --- reading ------------------------------------------------------------------------------------

LEG_KEYS = frozenset(LegJSON.__annotations__)
SNAPSHOT_KEYS = frozenset(StoredSnapshot.__annotations__)
META_KEY_SET = frozenset(SnapshotMeta.__annotations__)
CHAIN_DELTA_KEYS = frozenset(ChainDeltaEvent.__annotations__)

_FIX = (
    "its writer and this reader run different code: restart the feed workers, Celery and the "
    "web processes from one release"
)


def require_keys(what: str, raw: object, keys: frozenset[str]) -> Mapping[str, Any]:
    """``raw`` when it is a JSON object with every key of ``keys``; else ContractError naming
    ``what``, the missing keys and the unexpected ones (a renamed key shows as both)."""
    if not isinstance(raw, Mapping):
        raise ContractError(f"{what} is not a JSON object but {type(raw).__name__}: {_FIX}.")
    missing = keys - raw.keys()
    if missing:
        unexpected = sorted(raw.keys() - keys)
        renamed = f" and has {_names(unexpected)} instead (renamed?)" if unexpected else ""
        raise ContractError(f"{what} lacks {_names(sorted(missing))}{renamed}: {_FIX}.")
    return raw


def parse_snapshot(raw: object) -> StoredSnapshot:
    """A stored chain snapshot (decoded JSON) as a StoredSnapshot, every leg checked.
    Raises ContractError naming the missing (or renamed) key."""
    snapshot = require_keys("A chain snapshot", raw, SNAPSHOT_KEYS)
    what = f"The chain snapshot of {snapshot['underlying']} {snapshot['expiry']}"
    _check_strikes(what, snapshot["strikes"])
    return snapshot  # type: ignore[return-value]


def parse_meta(raw: object) -> SnapshotMeta:
    """A snapshot's meta record (decoded JSON) as a SnapshotMeta; ContractError as above."""
    return require_keys("A chain snapshot's meta record", raw, META_KEY_SET)  # type: ignore[return-value]


def parse_chain_delta(raw: object) -> ChainDeltaEvent:
    """A ``chain.delta`` group message as a ChainDeltaEvent; ContractError as above.

    Only the delta's own keys are checked here (this is every client's hot path, and Python
    readers read no leg field of a delta): its legs are the same ``leg_json`` records every
    snapshot carries, which ``parse_snapshot`` checks."""
    event = require_keys("A chain.delta message", raw, CHAIN_DELTA_KEYS)
    if not isinstance(event["legs"], Mapping):
        what = f"The chain.delta message of {event['underlying']} {event['expiry']}"
        raise ContractError(f"{what} has legs that are not a JSON object: {_FIX}.")
    return event  # type: ignore[return-value]


def _check_strikes(what: str, strikes: object) -> None:
    if not isinstance(strikes, Mapping):
        raise ContractError(f"{what} has strikes that are not a JSON object: {_FIX}.")
    for key, sides in strikes.items():
        if not isinstance(sides, Mapping):
            raise ContractError(f"{what} has strike {key} that is not a JSON object: {_FIX}.")
        for side, leg in sides.items():
            if side not in ("CE", "PE"):
                raise ContractError(f"{what} has a side {side!r} at strike {key}: {_FIX}.")
            require_keys(f"{what}, leg {key} {side},", leg, LEG_KEYS)


def _names(keys: list[str]) -> str:
    return ", ".join(repr(k) for k in keys)
