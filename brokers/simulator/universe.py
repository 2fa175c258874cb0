"""The simulator's tradable universe: underlyings, expiries, strikes and instrument ids.

Pure Python, no Django, no I/O. One ``Universe`` is built from a trading date and the current
IST time; every identifier it hands out is the one the masters, the REST answers and both
feeds use (a Dhan security id ``N`` is also the Upstox key ``NSE_FO|N`` / ``BSE_FO|N``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from brokers.exchange import IST, Holidays

from .expiries import (
    EXPIRY_TIME,
    NO_HOLIDAYS,
    expiries_for,
    expiry_close,
    last_weekday_of_month,
)
from .specs import THURSDAY, TUESDAY, UNDERLYINGS, UNDERLYINGS_BY_SYMBOL, UnderlyingSpec

__all__ = [
    "EXPIRY_TIME",
    "INDEX",
    "IST",
    "OPTION",
    "THURSDAY",
    "TUESDAY",
    "UNDERLYINGS",
    "UNDERLYINGS_BY_SYMBOL",
    "Instrument",
    "UnderlyingSpec",
    "Universe",
    "expiries_for",
    "expiry_close",
    "last_weekday_of_month",
]

INDEX = "index"
OPTION = "option"


@dataclass(slots=True, eq=False)
class Instrument:
    """One index or option, with its identifiers and its live state (mutated by the market).

    ``index`` is the instrument's position in ``Universe.instruments``. Prices are rupees on
    the 0.05 grid; ``ltt`` is epoch seconds (float, true UTC instant) of the last trade.
    """

    index: int
    spec: UnderlyingSpec
    kind: str  # INDEX or OPTION
    security_id: int
    dhan_segment: str  # IDX_I / NSE_FNO / BSE_FNO
    upstox_key: str
    expiry: date | None = None
    strike: int | None = None
    option_type: str = ""  # CE / PE / "" for an index
    weekly: bool = False
    expires_at: float = 0.0  # epoch seconds of the expiry close (options)
    tick: float = 0.05
    weight: float = 0.0  # relative tick frequency
    # --- live state -------------------------------------------------------------------------
    ltp: float = 0.0
    ltq: int = 0
    ltt: float = 0.0
    volume: int = 0
    turnover: float = 0.0
    oi: int = 0
    oi_day_high: int = 0
    oi_day_low: int = 0
    prev_close: float = 0.0
    prev_oi: int = 0
    prev_volume: int = 0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    bid: float = 0.0
    bid_qty: int = 0
    ask: float = 0.0
    ask_qty: int = 0
    total_buy_qty: int = 0
    total_sell_qty: int = 0
    iv: float | None = None  # fraction; None for an index
    forward: float = 0.0  # forward and years used for the last price (greeks are derived)
    years: float = 0.0

    @property
    def is_call(self) -> bool:
        return self.option_type == "CE"

    @property
    def avg_price(self) -> float:
        return round(self.turnover / self.volume, 2) if self.volume else self.ltp

    def trading_symbol(self) -> str:
        """Dhan compact trading symbol: ``NIFTY-Jan2026-25000-CE`` (index: ``NIFTY``)."""
        if self.kind == INDEX:
            return self.spec.symbol
        assert self.expiry is not None
        return f"{self.spec.symbol}-{self.expiry:%b%Y}-{self.strike}-{self.option_type}"

    def display_name(self) -> str:
        """``NIFTY 27 JAN 25000 CALL`` (index: its name)."""
        if self.kind == INDEX:
            return self.spec.index_name
        assert self.expiry is not None
        side = "CALL" if self.is_call else "PUT"
        return f"{self.spec.symbol} {self.expiry:%d %b}".upper() + f" {self.strike} {side}"

    def upstox_symbol(self) -> str:
        """Upstox trading symbol: ``NIFTY 25000 CE 27 JAN 26``."""
        if self.kind == INDEX:
            return self.spec.symbol
        assert self.expiry is not None
        return f"{self.spec.symbol} {self.strike} {self.option_type} {self.expiry:%d %b %y}".upper()


class Universe:
    """Every instrument the simulator trades, with lookups by each broker's identifier.

    ``strikes`` strikes are listed on each side of the at-the-money strike of ``spots``
    (per symbol; default: each spec's level). The expiries follow ``expiries_for``, with the
    trading ``holidays`` of each exchange (exchange name → day → name) moving an expiry that
    falls on one to the day before. Ids are allocated deterministically from the expiries, so
    two universes built for the same day, spots and holidays are identical.
    """

    def __init__(
        self,
        now: datetime,
        *,
        spots: dict[str, float] | None = None,
        strikes: int = 40,
        weeklies: int = 4,
        monthlies: int = 3,
        specs: tuple[UnderlyingSpec, ...] = UNDERLYINGS,
        holidays: Mapping[str, Holidays] | None = None,
    ) -> None:
        if strikes < 1:
            raise ValueError(f"strikes must be at least 1 per side, got {strikes}")
        self.specs = specs
        self.strikes_per_side = strikes
        self.instruments: list[Instrument] = []
        self.by_dhan: dict[tuple[str, int], Instrument] = {}
        self.by_upstox: dict[str, Instrument] = {}
        self.indices: dict[str, Instrument] = {}
        self.expiries: dict[str, list[date]] = {}
        # (symbol, expiry) → strike → {"CE": instrument, "PE": instrument}
        self.chains: dict[tuple[str, date], dict[int, dict[str, Instrument]]] = {}
        for spec in specs:
            spot = (spots or {}).get(spec.symbol, spec.spot)
            closed = (holidays or {}).get(spec.exchange, NO_HOLIDAYS)  # none given: none modelled
            self._add_underlying(spec, now, spot, strikes, weeklies, monthlies, closed)

    def _add(self, instrument: Instrument) -> Instrument:
        instrument.index = len(self.instruments)
        self.instruments.append(instrument)
        key = (instrument.dhan_segment, instrument.security_id)
        if key in self.by_dhan or instrument.upstox_key in self.by_upstox:
            raise ValueError(f"duplicate instrument id {key} / {instrument.upstox_key}")
        self.by_dhan[key] = instrument
        self.by_upstox[instrument.upstox_key] = instrument
        return instrument

    def _add_underlying(
        self,
        spec: UnderlyingSpec,
        now: datetime,
        spot: float,
        strikes: int,
        weeklies: int,
        monthlies: int,
        holidays: Holidays,
    ) -> None:
        self.indices[spec.symbol] = self._add(
            Instrument(0, spec, INDEX, spec.dhan_id, "IDX_I", spec.upstox_key)
        )
        atm = round(spot / spec.strike_step) * spec.strike_step
        ladder = [atm + k * spec.strike_step for k in range(-strikes, strikes + 1)]
        security_id = spec.first_security_id
        expiries = expiries_for(
            spec, now, weeklies=weeklies, monthlies=monthlies, holidays=holidays
        )
        self.expiries[spec.symbol] = [day for day, _ in expiries]
        for day, weekly in expiries:
            chain: dict[int, dict[str, Instrument]] = {}
            closes = expiry_close(day).timestamp()
            for strike in ladder:
                legs = chain[strike] = {}
                for option_type in ("CE", "PE"):
                    legs[option_type] = self._add(
                        Instrument(
                            0,
                            spec,
                            OPTION,
                            security_id,
                            spec.dhan_option_segment,
                            f"{spec.upstox_option_segment}|{security_id}",
                            expiry=day,
                            strike=strike,
                            option_type=option_type,
                            weekly=weekly,
                            expires_at=closes,
                        )
                    )
                    security_id += 1
            self.chains[(spec.symbol, day)] = chain

    def spec_by_dhan_id(self, security_id: int) -> UnderlyingSpec | None:
        """The underlying whose IDX_I id is ``security_id``, or None."""
        return next((s for s in self.specs if s.dhan_id == security_id), None)

    def spec_by_upstox_key(self, key: str) -> UnderlyingSpec | None:
        """The underlying whose index key is ``key`` (``NSE_INDEX|Nifty 50``), or None."""
        return next((s for s in self.specs if s.upstox_key == key), None)
