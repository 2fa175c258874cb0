"""Upstox Market Data Feed V3 client requests: build them (client) and parse them (simulator).

A request is UTF-8 JSON sent as a **binary** WebSocket frame::

    {"guid": "<unique>", "method": "sub", "data": {"mode": "option_greeks",
     "instrumentKeys": ["NSE_FO|45450", ...]}}

``method`` is ``sub``, ``change_mode`` or ``unsub``; ``mode`` is ``ltpc``, ``option_greeks``,
``full`` or ``full_d30`` (``sub`` without a mode means ltpc; ``unsub`` needs none). The broker caps
the keys of one connection by mode (:data:`KEY_LIMITS`, or :data:`MIXED_KEY_LIMITS` when a
connection mixes modes): the builders refuse a request that alone exceeds its mode's cap, and the
connection layer checks its running total with :func:`check_key_limit`. Pure Python, no I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "KEY_LIMITS",
    "METHODS",
    "MIXED_KEY_LIMITS",
    "MODES",
    "ClientRequest",
    "change_mode",
    "check_key_limit",
    "key_limit",
    "parse_client_request",
    "sub",
    "unsub",
]

MODES = ("ltpc", "option_greeks", "full", "full_d30")
METHODS = ("sub", "change_mode", "unsub")
KEY_LIMITS = {"ltpc": 5000, "option_greeks": 3000, "full": 2000, "full_d30": 50}
MIXED_KEY_LIMITS = {"ltpc": 2000, "option_greeks": 2000, "full": 1500, "full_d30": 1500}
# Upstox documents no per-message cap; 1000 keys keep one request near 20 KB.
DEFAULT_BATCH_SIZE = 1000


class ClientRequest(NamedTuple):
    """One parsed client request. ``mode`` is None for an ``unsub`` that named none."""

    guid: str
    method: str
    mode: str | None
    instrument_keys: tuple[str, ...]


def _check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown Upstox feed mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def key_limit(mode: str, *, mixed_modes: bool = False) -> int:
    """Return how many keys one connection may hold in ``mode``; ValueError for an unknown mode.

    ``mixed_modes`` selects the lower caps that apply when the connection uses several modes.
    """
    _check_mode(mode)
    return (MIXED_KEY_LIMITS if mixed_modes else KEY_LIMITS)[mode]


def check_key_limit(mode: str, count: int, *, mixed_modes: bool = False) -> None:
    """Raise ValueError when ``count`` keys in ``mode`` exceed one connection's cap."""
    limit = key_limit(mode, mixed_modes=mixed_modes)
    if count > limit:
        kind = "a connection mixing modes" if mixed_modes else "one connection"
        raise ValueError(
            f"{count} instrument keys in Upstox {mode} mode exceed the {limit} allowed on {kind}: "
            "subscribe fewer keys, use a lighter mode or open another connection"
        )


def _unique_keys(keys: Iterable[str]) -> list[str]:
    """Return the keys without duplicates, in order; ValueError for a non-key or none at all."""
    if isinstance(keys, str):
        raise ValueError(f"instrument keys must be a list of keys, not the string {keys!r}")
    unique = list(dict.fromkeys(keys))
    if not unique:
        raise ValueError("no instrument keys given: an Upstox request needs at least one")
    for key in unique:
        if not isinstance(key, str) or "|" not in key:
            raise ValueError(f"{key!r} is not an Upstox instrument key 'SEGMENT|token'")
    return unique


def _requests(
    method: str, keys: Iterable[str], mode: str | None, limit_mode: str, batch_size: int
) -> list[bytes]:
    """Return the requests of ``method`` for ``keys``, ``batch_size`` keys per request."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    unique = _unique_keys(keys)
    check_key_limit(limit_mode, len(unique))
    requests = []
    for start in range(0, len(unique), batch_size):
        data: dict[str, object] = {"instrumentKeys": unique[start : start + batch_size]}
        if mode is not None:
            data["mode"] = mode
        body = {"guid": str(uuid.uuid4()), "method": method, "data": data}
        requests.append(json.dumps(body, separators=(",", ":")).encode())
    return requests


def sub(
    keys: Iterable[str], *, mode: str = "ltpc", batch_size: int = DEFAULT_BATCH_SIZE
) -> list[bytes]:
    """Return ``sub`` requests (binary-frame payloads) for ``keys`` in ``mode``.

    Duplicate keys are sent once; more than ``batch_size`` keys are split over several requests,
    each with its own guid. Raises ValueError for an unknown mode, no keys, a malformed key, or
    more keys than one connection may hold in ``mode``.
    """
    return _requests("sub", keys, _check_mode(mode), mode, batch_size)


def change_mode(
    keys: Iterable[str], *, mode: str, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[bytes]:
    """Return ``change_mode`` requests moving ``keys`` to ``mode``; same rules as :func:`sub`."""
    return _requests("change_mode", keys, _check_mode(mode), mode, batch_size)


def unsub(keys: Iterable[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> list[bytes]:
    """Return ``unsub`` requests for ``keys`` (no mode); ValueError for no or malformed keys.

    At most the largest per-connection cap (ltpc's) may be unsubscribed at once.
    """
    return _requests("unsub", keys, None, "ltpc", batch_size)


def parse_client_request(data: bytes) -> ClientRequest:
    """Parse one client request frame (the simulator's side).

    ``sub`` without a mode gets ``ltpc``; ``change_mode`` needs a mode; ``unsub`` may omit it.
    Raises ValueError saying what is wrong for bytes that are not UTF-8 JSON, a missing or
    non-string guid, an unknown method or mode, or missing / empty / non-string instrumentKeys.
    Key caps are per connection, so they are the caller's to check (:func:`check_key_limit`).
    """
    try:
        body = json.loads(bytes(data).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"Upstox client request is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"Upstox client request is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"Upstox client request must be a JSON object, got {type(body).__name__}")
    guid = body.get("guid")
    if not isinstance(guid, str) or not guid:
        raise ValueError(f"Upstox client request needs a non-empty string guid, got {guid!r}")
    method = body.get("method")
    if method not in METHODS:
        raise ValueError(f"unknown Upstox request method {method!r}; use one of {METHODS}")
    payload = body.get("data")
    if not isinstance(payload, dict):
        raise ValueError(f"Upstox {method} request needs a 'data' object, got {payload!r}")
    mode = payload.get("mode")
    if mode is None and method == "sub":
        mode = "ltpc"
    elif mode is None and method == "change_mode":
        raise ValueError("Upstox change_mode request needs data.mode")
    elif mode is not None:
        _check_mode(mode)
    keys = payload.get("instrumentKeys")
    if not isinstance(keys, list) or not keys:
        raise ValueError(
            f"Upstox {method} request needs data.instrumentKeys, a non-empty list, got {keys!r}"
        )
    for key in keys:
        if not isinstance(key, str) or "|" not in key:
            raise ValueError(
                f"Upstox {method} request has {key!r}, not an instrument key 'SEGMENT|token'"
            )
    return ClientRequest(guid=guid, method=method, mode=mode, instrument_keys=tuple(keys))
