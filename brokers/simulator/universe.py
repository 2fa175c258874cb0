"""The simulator's tradable universe: underlyings, expiries, strikes and instrument ids.

Pure Python, no Django, no I/O. One ``Universe`` is built from a trading date and the current
IST time; every identifier it hands out is the one the masters, the REST answers and both
feeds use (a Dhan security id ``N`` is also the Upstox key ``NSE_FO|N`` / ``BSE_FO|N``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from brokers.exchange import IST

EXPIRY_TIME = time(15, 30)  # options expire at the close, 15:30 IST
INDEX = "index"
OPTION = "option"
TUESDAY, THURSDAY = 1, 3


@dataclass(frozen=True, slots=True)
class UnderlyingSpec:
    """Static facts of one index and its options (current real-world contract specs)."""

    symbol: str  # the product's symbol: NIFTY
    exchange: str  # NSE / BSE
    dhan_id: int  # IDX_I security id
    dhan_option_segment: str  # NSE_FNO / BSE_FNO
    upstox_key: str  # NSE_INDEX|Nifty 50
    upstox_option_segment: str  # NSE_FO / BSE_FO
    index_name: str  # "Nifty 50" (Upstox name, Dhan custom symbol)
    index_exchange_id: (
        str  # exchange token of the index (Upstox; Dhan detailed UNDERLYING_SECURITY_ID)
    )
    spot: float  # realistic level the random walk starts near
    strike_step: int
    lot_size: int
    freeze_qty: int
    weekly_weekday: int | None  # None: monthly expiries only
    monthly_weekday: int  # the monthly expiry is the last such weekday of the month
    vol: float  # at-the-money annual volatility (fraction)
    first_security_id: int  # option ids are allocated upwards from here

    @property
    def upstox_index_segment(self) -> str:
        return self.upstox_key.split("|", 1)[0]


UNDERLYINGS: tuple[UnderlyingSpec, ...] = (
    UnderlyingSpec(
        symbol="NIFTY",
        exchange="NSE",
        dhan_id=13,
        dhan_option_segment="NSE_FNO",
        upstox_key="NSE_INDEX|Nifty 50",
        upstox_option_segment="NSE_FO",
        index_name="Nifty 50",
        index_exchange_id="26000",
        spot=25850.0,
        strike_step=50,
        lot_size=65,
        freeze_qty=1800,
        weekly_weekday=TUESDAY,
        monthly_weekday=TUESDAY,
        vol=0.115,
        first_security_id=40000,
    ),
    UnderlyingSpec(
        symbol="BANKNIFTY",
        exchange="NSE",
        dhan_id=25,
        dhan_option_segment="NSE_FNO",
        upstox_key="NSE_INDEX|Nifty Bank",
        upstox_option_segment="NSE_FO",
        index_name="Nifty Bank",
        index_exchange_id="26009",
        spot=58400.0,
        strike_step=100,
        lot_size=30,
        freeze_qty=900,
        weekly_weekday=None,
        monthly_weekday=TUESDAY,
        vol=0.125,
        first_security_id=50000,
    ),
    UnderlyingSpec(
        symbol="FINNIFTY",
        exchange="NSE",
        dhan_id=27,
        dhan_option_segment="NSE_FNO",
        upstox_key="NSE_INDEX|Nifty Fin Service",
        upstox_option_segment="NSE_FO",
        index_name="Nifty Fin Service",
        index_exchange_id="26037",
        spot=27350.0,
        strike_step=50,
        lot_size=60,
        freeze_qty=1800,
        weekly_weekday=None,
        monthly_weekday=TUESDAY,
        vol=0.12,
        first_security_id=60000,
    ),
    UnderlyingSpec(
        symbol="SENSEX",
        exchange="BSE",
        dhan_id=51,
        dhan_option_segment="BSE_FNO",
        upstox_key="BSE_INDEX|SENSEX",
        upstox_option_segment="BSE_FO",
        index_name="SENSEX",
        index_exchange_id="1",
        spot=84500.0,
        strike_step=100,
        lot_size=20,
        freeze_qty=1000,
        weekly_weekday=THURSDAY,
        monthly_weekday=THURSDAY,
        vol=0.12,
        first_security_id=870000,
    ),
)
UNDERLYINGS_BY_SYMBOL = {spec.symbol: spec for spec in UNDERLYINGS}


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


def last_weekday_of_month(year: int, month: int, weekday: int) -> date:
    """Return the last ``weekday`` (Monday = 0) of the month."""
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def expiry_close(day: date) -> datetime:
    """Return the aware datetime at which an option of expiry ``day`` stops trading."""
    return datetime.combine(day, EXPIRY_TIME, tzinfo=IST)


def expiries_for(
    spec: UnderlyingSpec, now: datetime, *, weeklies: int = 4, monthlies: int = 3
) -> list[tuple[date, bool]]:
    """Return (expiry, weekly?) pairs, ascending, of contracts still trading at ``now``.

    Weekly underlyings list the next ``weeklies`` weekly expiries plus the next ``monthlies``
    monthly ones (a weekly date that is also the monthly is listed once, as monthly). An
    expiry today is listed until 15:30 IST. Exchange holidays are not modelled.
    """
    local = now.astimezone(IST)
    alive = [local.date()] if local.time() < EXPIRY_TIME else []
    first = local.date() if alive else local.date() + timedelta(days=1)
    monthly: list[date] = []
    year, month = first.year, first.month
    while len(monthly) < monthlies:
        day = last_weekday_of_month(year, month, spec.monthly_weekday)
        if day >= first:
            monthly.append(day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    chosen = {day: False for day in monthly}
    if spec.weekly_weekday is not None:
        day = first + timedelta(days=(spec.weekly_weekday - first.weekday()) % 7)
        for _ in range(weeklies):
            chosen.setdefault(day, True)
            day += timedelta(days=7)
    return sorted(chosen.items())


class Universe:
    """Every instrument the simulator trades, with lookups by each broker's identifier.

    ``strikes`` strikes are listed on each side of the at-the-money strike of ``spots``
    (per symbol; default: each spec's level). Ids are allocated deterministically from the
    expiries, so two universes built for the same day and spots are identical.
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
            self._add_underlying(spec, now, spot, strikes, weeklies, monthlies)

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
    ) -> None:
        self.indices[spec.symbol] = self._add(
            Instrument(0, spec, INDEX, spec.dhan_id, "IDX_I", spec.upstox_key)
        )
        atm = round(spot / spec.strike_step) * spec.strike_step
        ladder = [atm + k * spec.strike_step for k in range(-strikes, strikes + 1)]
        security_id = spec.first_security_id
        expiries = expiries_for(spec, now, weeklies=weeklies, monthlies=monthlies)
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
