"""What the chain page shows, computed from the API's ``data`` (``contracts.ApiData``). Pure
Python, no Django.

Formatting follows NSE's option chain: prices with two decimals, quantities with Indian digit
grouping (1,23,45,678), missing values as "–" (never 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .analytics import BUILDUP_LABELS, expiry_moment
from .contracts import ApiData, LegJSON

DASH = "–"
SIDE_FIELDS = (
    "oi",
    "oi_change",
    "volume",
    "iv",
    "ltp",
    "change",
    "bid_qty",
    "bid",
    "ask",
    "ask_qty",
    "delta",
    "gamma",
    "theta",
    "vega",
)
GREEKS = ("delta", "gamma", "theta", "vega")


def indian(value: float | int | None) -> str:
    """Integer with Indian grouping: 12345678 → 1,23,45,678; None → "–"."""
    if value is None:
        return DASH
    number = round(value)
    sign, digits = ("-" if number < 0 else ""), str(abs(number))
    if len(digits) <= 3:
        return sign + digits
    head, tail = digits[:-3], digits[-3:]
    groups: list[str] = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return sign + ",".join(groups) + "," + tail


def price(value: float | None) -> str:
    """Two decimals with Indian grouping: 123456.5 → 1,23,456.50."""
    if value is None:
        return DASH
    paise = round(abs(value) * 100)
    sign = "-" if value < 0 and paise else ""
    return f"{sign}{indian(paise // 100)}.{paise % 100:02d}"


def signed(value: float | None) -> str:
    if value is None:
        return DASH
    text = price(value)
    return text if text.startswith("-") else "+" + text


def signed_int(value: int | None) -> str:
    return DASH if value is None else ("+" if value > 0 else "") + indian(value)


def percent(fraction: float | None) -> str:
    return DASH if fraction is None else f"{fraction * 100:.2f}"


def greek(name: str, value: float | None) -> str:
    if value is None:
        return DASH
    digits = {"gamma": 5, "delta": 3}.get(name, 2)
    return f"{value:.{digits}f}"


def cell_text(name: str, value: Any) -> str:
    """One leg field as the page writes it (the JS module uses the same rules)."""
    if name in {"oi", "volume", "bid_qty", "ask_qty"}:
        return indian(value)
    if name == "oi_change":
        return signed_int(value)
    if name == "change":
        return signed(value)
    if name == "iv":
        return percent(value)
    if name in GREEKS:
        return greek(name, value)
    return price(value)


@dataclass
class Side:
    cells: dict[str, str]
    itm: bool
    oi_pct: float
    buildup: str
    change_class: str


@dataclass
class Row:
    strike: float
    key: str
    atm: bool
    ce: Side
    pe: Side


@dataclass
class ChainPage:
    rows: list[Row]
    totals: dict[str, dict[str, str]]
    header: dict[str, str]
    max_oi: int
    strikes: list[float] = field(default_factory=list)


def _side(leg: LegJSON | None, *, itm: bool, max_oi: int) -> Side:
    """A side of a row; ``leg`` None: the strike lists no contract of that side."""
    if leg is None:
        cells = dict.fromkeys(SIDE_FIELDS, DASH)
        return Side(cells=cells, itm=itm, oi_pct=0.0, buildup="", change_class="")
    cells = {name: cell_text(name, leg[name]) for name in SIDE_FIELDS}  # type: ignore[literal-required]
    oi = leg["oi"] or 0
    change = leg["change"]
    label = BUILDUP_LABELS.get(leg["buildup"] or "", "")
    return Side(
        cells=cells,
        itm=itm,
        oi_pct=round(100 * oi / max_oi, 1) if max_oi else 0.0,
        buildup=label,
        change_class="up" if change and change > 0 else "down" if change and change < 0 else "",
    )


def build(data: ApiData, *, window: int | None, now: datetime) -> ChainPage:
    """Rows (optionally ±``window`` strikes around ATM), totals and header figures."""
    strikes_map = data["strikes"]
    strikes = sorted(strikes_map, key=float)
    atm = data["atm_strike"]
    forward = data["forward"] or data["spot"]
    if window is not None and atm is not None:
        centre = min(range(len(strikes)), key=lambda i: abs(float(strikes[i]) - atm))
        strikes = strikes[max(0, centre - window) : centre + window + 1]
    ois = [
        leg["oi"] or 0
        for k in strikes
        for side in ("CE", "PE")
        if (leg := strikes_map[k].get(side)) is not None  # a side may be unlisted
    ]
    max_oi = max(ois, default=0)
    rows = []
    totals = {side: {"oi": 0, "oi_change": 0, "volume": 0} for side in ("CE", "PE")}
    for key in strikes:
        strike = float(key)
        legs = strikes_map[key]
        for side in ("CE", "PE"):
            leg = legs.get(side)  # a side may be unlisted
            if leg is not None:
                for name in ("oi", "oi_change", "volume"):
                    totals[side][name] += leg[name] or 0
        rows.append(
            Row(
                strike=strike,
                key=key,
                atm=atm is not None and strike == atm,
                ce=_side(legs.get("CE"), itm=bool(forward and strike < forward), max_oi=max_oi),
                pe=_side(legs.get("PE"), itm=bool(forward and strike > forward), max_oi=max_oi),
            )
        )
    atm_legs = strikes_map.get(_key(atm), {}) if atm is not None else {}
    ivs = [leg["iv"] for leg in atm_legs.values() if leg["iv"] is not None]
    header = {
        "spot": price(data["spot"]),
        "forward": price(data["forward"]),
        "atm_strike": _strike_text(atm),
        "atm_iv": percent(sum(ivs) / len(ivs)) if ivs else DASH,
        "pcr": DASH if data["pcr"] is None else f"{data['pcr']:.2f}",
        "max_pain": _strike_text(data["max_pain"]),
        "to_expiry": time_to_expiry(data["expiry"], now),
        "lot_size": str(data["lot_size"] or DASH),
    }
    return ChainPage(
        rows=rows,
        totals={
            side: {
                "oi": indian(t["oi"]),
                "oi_change": signed_int(t["oi_change"]),
                "volume": indian(t["volume"]),
            }
            for side, t in totals.items()
        },
        header=header,
        max_oi=max_oi,
        strikes=[float(k) for k in strikes],
    )


def _strike_text(strike: float | None) -> str:
    return DASH if strike is None else _key(strike)


def _key(strike: float) -> str:
    return str(int(strike)) if float(strike).is_integer() else f"{strike:g}"


def time_to_expiry(expiry: str | None, now: datetime) -> str:
    """ "3d 4h 12m" to 15:30 IST on the expiry day; "expired" after it."""
    if not expiry:
        return DASH
    left = (expiry_moment(date.fromisoformat(expiry)) - now).total_seconds()
    if left <= 0:
        return "expired"
    days, rest = divmod(int(left), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"
