"""A chain's minute bar: the chain-level figures and every leg's columns at one minute. Pure.

``bar_from_book`` takes a ``MinuteBar`` from a chain book's current state; ``pack_legs`` /
``unpack_legs`` turn its ``LegColumns`` into the compact bytes stored with the bar (one row per
chain per minute, never one row per leg).

Values are stored at the precision the API shows them (``chains.contracts.leg_json``): prices
in paise, IV to 1e-6, delta to 1e-4. ``bar_from_book`` rounds to that precision, so a bar
packed and unpacked is equal to itself.

Packed form (``FORMAT``): zlib of a header (format byte, strike count) followed by the strikes
(float64) and, per side (CE then PE) and column (``COLUMNS``), one int64 per strike: the value
in its unit (OI and volume as they are, prices ×100, IV ×1e6, delta ×1e4), ``MISSING`` for
None. Small numbers compress best, so bid and ask are stored as their difference from the LTP
(where both are known), and LTP, IV and delta as the difference from the previous strike's
(where both are known; they move smoothly along the strikes). The bytes are then stored
byte-plane by byte-plane (all low bytes, then the next ones …): the high bytes are nearly all
0 or 0xFF, which is what zlib compresses well.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from brokers.exchange import IST

from .. import analytics

if TYPE_CHECKING:
    from ..book import ChainBook

SIDES = ("CE", "PE")
INT_COLUMNS = ("oi", "volume")
FLOAT_COLUMNS = ("ltp", "bid", "ask", "iv", "delta")
COLUMNS = INT_COLUMNS + FLOAT_COLUMNS
# Fixed-point scale of each float column (the API's rounding, chains.contracts.leg_json).
SCALES = {"ltp": 100, "bid": 100, "ask": 100, "iv": 1_000_000, "delta": 10_000}
DIGITS = {"ltp": 2, "bid": 2, "ask": 2, "iv": 6, "delta": 4}
MISSING = -(2**63)
RELATIVE_TO_LTP = ("bid", "ask")  # stored as the difference from the LTP
ALONG_STRIKES = ("ltp", "iv", "delta")  # stored as the difference from the previous strike's
FORMAT = 1
_HEADER = struct.Struct("<BI")


@dataclass(frozen=True, slots=True)
class SideColumns:
    """One side (CE or PE) of a chain at one minute: one entry per strike of ``LegColumns``;
    None where the side is not listed at that strike or the value is not known."""

    oi: tuple[int | None, ...]
    volume: tuple[int | None, ...]
    ltp: tuple[float | None, ...]
    bid: tuple[float | None, ...]
    ask: tuple[float | None, ...]
    iv: tuple[float | None, ...]  # our Black-76 IV (fraction), as the API shows it
    delta: tuple[float | None, ...]

    @classmethod
    def empty(cls, n: int) -> SideColumns:
        none: tuple[None, ...] = (None,) * n
        return cls(none, none, none, none, none, none, none)


@dataclass(frozen=True, slots=True)
class LegColumns:
    """Every leg of a chain at one minute, column-wise: ``strikes`` ascending, and per side
    (``ce``, ``pe``; or ``side("CE")``) the columns in ``COLUMNS``, each as long as
    ``strikes``."""

    strikes: tuple[float, ...]
    ce: SideColumns
    pe: SideColumns

    def __post_init__(self) -> None:
        n = len(self.strikes)
        for side in (self.ce, self.pe):
            for name in COLUMNS:
                if len(getattr(side, name)) != n:
                    raise ValueError(
                        f"column {name} has {len(getattr(side, name))} entries for {n} strikes"
                    )

    def side(self, option_type: str) -> SideColumns:
        """The columns of "CE" or "PE" (KeyError for anything else)."""
        return {"CE": self.ce, "PE": self.pe}[option_type]


@dataclass(frozen=True, slots=True)
class MinuteBar:
    """One chain at one minute (``minute``: IST, second 0): chain-level figures and legs.
    None means not known at that minute, never 0."""

    underlying: str
    expiry: date
    minute: datetime
    spot: float | None
    forward: float | None
    atm_strike: float | None  # the strike nearest the spot
    atm_iv: float | None  # mean of CE and PE IV at the ATM strike (where known)
    straddle: float | None  # CE ltp + PE ltp at the ATM strike
    pcr: float | None
    max_pain: float | None
    ce_oi: int | None
    pe_oi: int | None
    ce_oi_change: int | None  # total OI change since the previous session, per side
    pe_oi_change: int | None
    legs: LegColumns

    @property
    def day(self) -> date:
        """The exchange (IST) day of the bar."""
        return self.minute.astimezone(IST).date()


def minute_of(moment: datetime) -> datetime:
    """``moment`` (tz-aware) as the IST minute it falls in (second and microsecond 0)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: minute bars are on exchange time (IST)")
    return moment.astimezone(IST).replace(second=0, microsecond=0)


def bar_from_book(book: ChainBook, minute: datetime) -> MinuteBar:
    """The bar of ``book`` as it stands now, labelled ``minute`` (rounded down to the IST
    minute). Uses the analytics of the book's last flush (forward, IV, delta, PCR, max pain);
    ATM is the strike nearest the spot. ValueError for a naive ``minute``."""
    minute = minute_of(minute)
    strikes = tuple(book.strikes)
    columns = {side: _side_columns(book, strikes, side) for side in SIDES}
    legs = LegColumns(strikes=strikes, ce=columns["CE"], pe=columns["PE"])
    atm = analytics.nearest_strike(book.strikes, book.spot)
    atm_iv = straddle = None
    if atm is not None:
        at = strikes.index(atm)
        ivs = [v for v in (legs.ce.iv[at], legs.pe.iv[at]) if v is not None]
        atm_iv = round(sum(ivs) / len(ivs), DIGITS["iv"]) if ivs else None
        call, put = legs.ce.ltp[at], legs.pe.ltp[at]
        straddle = None if call is None or put is None else round(call + put, 2)
    totals = {side: _oi_totals(book, side) for side in SIDES}
    return MinuteBar(
        underlying=book.underlying,
        expiry=book.expiry,
        minute=minute,
        spot=book.spot,
        forward=None if book.forward is None else round(book.forward, 2),
        atm_strike=atm,
        atm_iv=atm_iv,
        straddle=straddle,
        pcr=None if book.pcr is None else round(book.pcr, 4),
        max_pain=book.max_pain,
        ce_oi=totals["CE"][0],
        pe_oi=totals["PE"][0],
        ce_oi_change=totals["CE"][1],
        pe_oi_change=totals["PE"][1],
        legs=legs,
    )


def _side_columns(book: ChainBook, strikes: Sequence[float], side: str) -> SideColumns:
    legs = [book.by_strike[k].get(side) for k in strikes]
    return SideColumns(
        oi=tuple(None if leg is None else leg.oi for leg in legs),
        volume=tuple(None if leg is None else leg.volume for leg in legs),
        ltp=tuple(_round(None if leg is None else leg.ltp, "ltp") for leg in legs),
        bid=tuple(_round(None if leg is None else leg.bid_price, "bid") for leg in legs),
        ask=tuple(_round(None if leg is None else leg.ask_price, "ask") for leg in legs),
        iv=tuple(_round(None if leg is None else leg.our_iv, "iv") for leg in legs),
        delta=tuple(_round(None if leg is None else leg.our_delta, "delta") for leg in legs),
    )


def _oi_totals(book: ChainBook, side: str) -> tuple[int | None, int | None]:
    """(total OI, total OI change) of one side; None when no leg of the side knows it."""
    legs = [s[side] for s in book.by_strike.values() if side in s]
    ois = [leg.oi for leg in legs if leg.oi is not None]
    changes = [analytics.oi_change(leg.oi, leg.prev_oi) for leg in legs]
    known = [c for c in changes if c is not None]
    return (sum(ois) if ois else None, sum(known) if known else None)


def _round(value: float | None, column: str) -> float | None:
    """``value`` at the column's stored precision; None for None, NaN or infinity."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, DIGITS[column])


def pack_legs(legs: LegColumns) -> bytes:
    """The compact bytes of ``legs`` (see the module's docstring); ``unpack_legs`` reverses."""
    n = len(legs.strikes)
    values: list[int] = []
    for side in (legs.ce, legs.pe):
        fixed = {name: _fixed(getattr(side, name), SCALES.get(name)) for name in COLUMNS}
        for name in COLUMNS:
            column = fixed[name]
            if name in RELATIVE_TO_LTP:
                column = [_minus(v, ltp, v) for v, ltp in zip(column, fixed["ltp"], strict=True)]
            elif name in ALONG_STRIKES:
                column = [
                    _minus(v, prev, v) for v, prev in zip(column, [None, *column], strict=False)
                ]
            values.extend(MISSING if v is None else v for v in column)
    raw = struct.pack(f"<{len(values)}q", *values)
    planes = b"".join(raw[i::8] for i in range(8))
    body = _HEADER.pack(FORMAT, n) + struct.pack(f"<{n}d", *legs.strikes) + planes
    return zlib.compress(body, 6)


def _fixed(column: Sequence[float | int | None], scale: int | None) -> list[int | None]:
    if scale is None:
        return [None if v is None else int(v) for v in column]
    return [None if v is None else round(v * scale) for v in column]


def _minus(value: int | None, base: int | None, fallback: int | None) -> int | None:
    """``value - base`` when both are known, else ``fallback`` (the value itself)."""
    return fallback if value is None or base is None else value - base


def _plus(value: int | None, base: int | None) -> int | None:
    """Undoes ``_minus``: ``value + base`` when both are known, else ``value``."""
    return value if value is None or base is None else value + base


def unpack_legs(data: bytes) -> LegColumns:
    """The ``LegColumns`` packed in ``data``; ValueError for bytes that are not a packed
    chain (corrupt, truncated or of an unknown format)."""
    try:
        body = zlib.decompress(data)
    except zlib.error as exc:
        raise ValueError(f"packed legs are corrupt: {exc}") from None
    if len(body) < _HEADER.size:
        raise ValueError("packed legs are truncated")
    version, n = _HEADER.unpack_from(body)
    if version != FORMAT:
        raise ValueError(f"packed legs of format {version}: this version reads format {FORMAT}")
    count = n * len(SIDES) * len(COLUMNS)
    if len(body) != _HEADER.size + 8 * n + 8 * count:
        raise ValueError(f"packed legs have {len(body)} bytes, not what {n} strikes need")
    strikes = struct.unpack_from(f"<{n}d", body, _HEADER.size)
    planes = body[_HEADER.size + 8 * n :]
    raw = bytearray(8 * count)
    for i in range(8):
        raw[i::8] = planes[i * count : (i + 1) * count]
    values = struct.unpack(f"<{count}q", raw)
    sides = []
    for s in range(len(SIDES)):
        fixed: dict[str, list[int | None]] = {}
        columns: dict[str, tuple[int | float | None, ...]] = {}
        for c, name in enumerate(COLUMNS):
            start = (s * len(COLUMNS) + c) * n
            fixed[name] = [None if v == MISSING else v for v in values[start : start + n]]
        for name in ALONG_STRIKES:
            column = fixed[name]
            for i in range(1, n):
                column[i] = _plus(column[i], column[i - 1])
        for name in RELATIVE_TO_LTP:
            fixed[name] = [_plus(v, ltp) for v, ltp in zip(fixed[name], fixed["ltp"], strict=True)]
        for name, column in fixed.items():
            scale = SCALES.get(name)
            # a correctly rounded division: the double nearest the decimal, as round() gives
            columns[name] = tuple(
                column if scale is None else [None if v is None else v / scale for v in column]
            )
        sides.append(SideColumns(**columns))  # type: ignore[arg-type]
    return LegColumns(strikes=tuple(strikes), ce=sides[0], pe=sides[1])
