"""The simulator's configuration: everything ``runsim`` can set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DEFAULT_TICKS_PER_SECOND = 1000


@dataclass(frozen=True)
class SimConfig:
    """Everything ``runsim`` can set. The credential defaults are clearly fake demo values."""

    host: str = "127.0.0.1"
    port: int = 8800
    seed: int = 1
    ticks_per_second: int = DEFAULT_TICKS_PER_SECOND
    strikes: int = 40
    weeklies: int = 4
    monthlies: int = 3
    interval: float = 0.05  # scheduler / flush period, seconds
    ping_interval: float = 10.0
    start: datetime | None = None  # the market clock's start; None = now
    speed: float = 1.0  # simulated seconds per real second
    catch_up_to: datetime | None = None  # run at ``speed`` until then, then at speed 1; None: never
    clock_waits_for_feed: bool = False  # the clock stands at ``start`` until a feed subscribes
    exchange_hours: bool = False  # trade 09:15–15:30 IST on weekdays only; False: all the time
    holiday: str = ""  # the name of a trading holiday on the start day (IST); "": none
    dhan_client_id: str = "1100000001"
    dhan_token: str = "SIM-DHAN-TOKEN-demo"  # noqa: S105 - a public demo value
    upstox_api_key: str = "sim-upstox-key"
    upstox_api_secret: str = "SIM-UPSTOX-SECRET-demo"  # noqa: S105 - a public demo value
    upstox_redirect_uri: str = "http://127.0.0.1:8000/brokers/upstox/callback"
    upstox_token: str = "SIM-UPSTOX-TOKEN-demo"  # noqa: S105 - a public demo value
    upstox_notifier_url: str = ""
    upstox_max_connections: int = 2
