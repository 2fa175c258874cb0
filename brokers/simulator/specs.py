"""The indices the simulator lists options on, with today's real contract specifications.

Pure data, no Django. Sources of the specifications (checked December 2026):

* expiry days — under SEBI's 2025 framework each exchange keeps one expiry weekday: from
  1 September 2025 NSE's equity derivatives expire on Tuesdays and BSE's on Thursdays. SEBI's
  measures of 1 October 2024 left each exchange one weekly index expiry from 20 November 2024
  (NSE: NIFTY; BSE: SENSEX), so BANKNIFTY, FINNIFTY, MIDCPNIFTY, BANKEX and SENSEX50 expire
  monthly only, on the last such weekday of the month. An expiry on a trading holiday moves to
  the previous trading day (``brokers.simulator.expiries``).
* NSE lot sizes — NSE's revision effective 28 October 2025 (contract values of September 2025):
  NIFTY 75 → 65, BANKNIFTY 35 → 30, FINNIFTY 65 → 60, MIDCPNIFTY 140 → 120, for weekly and
  monthly contracts from the January 2026 expiry (reported e.g. by NDTV Profit, "NSE Revises
  Market Lots For Key Index Derivatives From Oct 28").
* BSE lot sizes — BSE's revision of 20 November 2024: SENSEX 20, BANKEX 30, SENSEX 50 60
  (Zerodha support, "Lot size for index derivatives").

The instrument masters the simulator serves carry these lot sizes and expiries; the product
reads them from the masters, never from here.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    UnderlyingSpec(
        symbol="MIDCPNIFTY",
        exchange="NSE",
        dhan_id=442,
        dhan_option_segment="NSE_FNO",
        upstox_key="NSE_INDEX|NIFTY MID SELECT",
        upstox_option_segment="NSE_FO",
        index_name="NIFTY MID SELECT",
        index_exchange_id="26074",
        spot=13600.0,
        strike_step=25,
        lot_size=120,
        freeze_qty=2800,
        weekly_weekday=None,
        monthly_weekday=TUESDAY,
        vol=0.15,
        first_security_id=70000,
    ),
    UnderlyingSpec(
        symbol="BANKEX",
        exchange="BSE",
        dhan_id=69,
        dhan_option_segment="BSE_FNO",
        upstox_key="BSE_INDEX|BANKEX",
        upstox_option_segment="BSE_FO",
        index_name="BANKEX",
        index_exchange_id="12",
        spot=65000.0,
        strike_step=100,
        lot_size=30,
        freeze_qty=900,
        weekly_weekday=None,
        monthly_weekday=THURSDAY,
        vol=0.13,
        first_security_id=880000,
    ),
    UnderlyingSpec(
        symbol="SENSEX50",
        exchange="BSE",
        dhan_id=83,
        dhan_option_segment="BSE_FNO",
        upstox_key="BSE_INDEX|SNSX50",
        upstox_option_segment="BSE_FO",
        index_name="SENSEX 50",
        index_exchange_id="47",
        spot=26800.0,
        strike_step=100,
        lot_size=60,
        freeze_qty=1800,
        weekly_weekday=None,
        monthly_weekday=THURSDAY,
        vol=0.12,
        first_security_id=890000,
    ),
)
UNDERLYINGS_BY_SYMBOL = {spec.symbol: spec for spec in UNDERLYINGS}
