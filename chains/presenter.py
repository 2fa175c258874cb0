"""What the chain page shows, computed from the API's ``data`` (``contracts.ApiData``). Pure
Python, no Django.

Formatting follows NSE's option chain: prices with two decimals, quantities with Indian digit
grouping (1,23,45,678), missing values as "–" (never 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .analytics import BUILDUP_LABELS, expiry_moment, nearest_strike
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


SPOT_CHANGE_UNKNOWN = (
    "The change since the previous close needs the index's previous close, which the chain's "
    "feed has not sent yet"
)


def spot_change(spot: float | None, prev_close: float | None) -> tuple[str, str, str]:
    """The spot's change since the index's previous close as (text, colour class, title):
    ("+123.45 (+0.47%)", "up", …), "down" for a fall, "" for none. Unknown — no spot, or no
    previous close (None or not above 0) — is ("–", "", why): never an invented 0."""
    if spot is None or prev_close is None or not prev_close > 0:
        return DASH, "", SPOT_CHANGE_UNKNOWN
    change = round(spot - prev_close, 2)
    pct = round(change / prev_close * 100, 2) + 0.0  # + 0.0: no "-0.00"
    css = "up" if change > 0 else "down" if change < 0 else ""
    title = f"Since the previous close, {price(prev_close)}"
    return f"{signed(change)} ({pct:+.2f}%)", css, title


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


# The table's columns, calls side from the outside in (the puts side mirrors it): NSE's ten,
# and the greeks (the page shows Δ by default; the column chooser in chain.js shows others).
CALL_ORDER = (
    "delta",
    "gamma",
    "theta",
    "vega",
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
)
QUOTE_FIELDS = ("bid_qty", "bid", "ask", "ask_qty")


def put_order(call_order: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The puts side's columns for a calls side's: mirrored around the strike, except that the
    quote fields (Bid Qty, Bid, Ask, Ask Qty) read left to right in the calls' order, as on NSE."""
    mirrored = list(reversed(call_order))
    quotes = iter([f for f in call_order if f in QUOTE_FIELDS])
    return tuple(next(quotes) if f in QUOTE_FIELDS else f for f in mirrored)


PUT_ORDER = put_order(CALL_ORDER)
DEFAULT_HIDDEN = frozenset({"gamma", "theta", "vega"})
LABELS = {
    "oi": "OI",
    "oi_change": "Chng in OI",
    "volume": "Volume",
    "iv": "IV",
    "ltp": "LTP",
    "change": "Chng",
    "bid_qty": "Bid Qty",
    "bid": "Bid",
    "ask": "Ask",
    "ask_qty": "Ask Qty",
    "delta": "Δ",
    "gamma": "Γ",
    "theta": "Θ",
    "vega": "Vega",
}
ATM_BASES = ("spot", "forward")  # spot: NSE's convention, the default


@dataclass
class Side:
    """One side of a row: the cells' texts, whether it is in the money (against the spot),
    the OI bar's width in percent of the window's largest OI, the OI build-up as its key
    (``long_buildup``, …; "" when unknown) and label, and the change's colour class."""

    cells: dict[str, str]
    itm: bool
    oi_pct: float
    buildup: str
    change_class: str
    buildup_key: str = ""


@dataclass
class Cell:
    """One table cell: the field (``oi``, …), its text and its CSS classes (the same classes
    ``static/optionsite/chain.js`` gives the cells it draws)."""

    name: str
    text: str
    css: str


def cell_css(name: str, side: str, *, itm: bool, change_class: str = "") -> str:
    """A cell's classes: the side (``c``/``p``), ``f-<field>``, ``g`` for greeks, ``off`` for
    a column hidden by default (shown by the column chooser), ``oi``/``ltp``, the change's
    colour and ``itm``."""
    classes = ["c" if side == "CE" else "p", "f-" + name]
    if name in GREEKS:
        classes.append("g")
    if name in DEFAULT_HIDDEN:
        classes.append("off")
    if name in ("oi", "ltp"):
        classes.append(name)
    if name == "change" and change_class:
        classes.append(change_class)
    if itm:
        classes.append("itm")
    return " ".join(classes)


def head_cells(side: str) -> list[Cell]:
    """The column headings of one side, in the table's order."""
    order = CALL_ORDER if side == "CE" else PUT_ORDER
    return [Cell(name, LABELS[name], cell_css(name, side, itm=False)) for name in order]


@dataclass
class Row:
    strike: float
    key: str
    atm: bool
    ce: Side
    pe: Side

    def cells(self, side: str) -> list[Cell]:
        """The cells of ``side`` ("CE" or "PE") in the table's order."""
        s, order = (self.ce, CALL_ORDER) if side == "CE" else (self.pe, PUT_ORDER)
        return [
            Cell(name, s.cells[name], cell_css(name, side, itm=s.itm, change_class=s.change_class))
            for name in order
        ]

    @property
    def ce_cells(self) -> list[Cell]:
        return self.cells("CE")

    @property
    def pe_cells(self) -> list[Cell]:
        return self.cells("PE")


@dataclass
class ChainPage:
    """The table's rows (the window's strikes), the totals of those rows (``totals``) and of
    every strike (``all_totals``), the header figures, and which ATM (``atm_basis``, one of
    ATM_BASES) centres the window and marks the ATM row (``atm``: None when unknown)."""

    rows: list[Row]
    totals: dict[str, dict[str, str]]
    header: dict[str, str]
    max_oi: int
    strikes: list[float] = field(default_factory=list)
    all_totals: dict[str, dict[str, str]] = field(default_factory=dict)
    atm_basis: str = "spot"
    atm: float | None = None
    shown: int = 0
    listed: int = 0


def _side(leg: LegJSON | None, *, itm: bool, max_oi: int) -> Side:
    """A side of a row; ``leg`` None: the strike lists no contract of that side."""
    if leg is None:
        cells = dict.fromkeys(SIDE_FIELDS, DASH)
        return Side(cells=cells, itm=itm, oi_pct=0.0, buildup="", change_class="")
    key = leg["buildup"] or ""
    cells = {name: cell_text(name, leg[name]) for name in SIDE_FIELDS}  # type: ignore[literal-required]
    oi = leg["oi"] or 0
    change = leg["change"]
    label = BUILDUP_LABELS.get(key, "")  # "" when not known yet
    return Side(
        cells=cells,
        itm=itm,
        oi_pct=round(100 * oi / max_oi, 1) if max_oi else 0.0,
        buildup=label,
        change_class="up" if change and change > 0 else "down" if change and change < 0 else "",
        buildup_key=key if label else "",
    )


def chain_atm(data: ApiData, basis: str) -> float | None:
    """The ATM strike on ``basis``: "spot" — the listed strike nearest the spot (NSE's
    convention); "forward" — the chain's own, nearest the put–call-parity forward. None when
    the price it needs is not known. Raises ValueError for another basis."""
    if basis == "forward":
        return data["atm_strike"]
    if basis != "spot":
        raise ValueError(f"ATM basis {basis!r}: use one of {', '.join(ATM_BASES)}")
    return nearest_strike([float(k) for k in data["strikes"]], data["spot"])


def build(
    data: ApiData, *, window: int | None, now: datetime, atm_basis: str = "spot"
) -> ChainPage:
    """Rows (optionally ±``window`` strikes around the ATM on ``atm_basis``), the totals of
    the rows shown and of every strike, and the header figures. In-the-money shading follows
    the spot (the forward until the spot is known)."""
    strikes_map = data["strikes"]
    strikes = sorted(strikes_map, key=float)
    listed = len(strikes)
    atm = chain_atm(data, atm_basis)
    spot = data["spot"] or data["forward"]
    all_totals = _totals(strikes_map, strikes)
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
    for key in strikes:
        strike = float(key)
        legs = strikes_map[key]
        rows.append(
            Row(
                strike=strike,
                key=key,
                atm=atm is not None and strike == atm,
                ce=_side(legs.get("CE"), itm=bool(spot and strike < spot), max_oi=max_oi),
                pe=_side(legs.get("PE"), itm=bool(spot and strike > spot), max_oi=max_oi),
            )
        )
    atm_legs = strikes_map.get(_key(atm), {}) if atm is not None else {}
    ivs = [leg["iv"] for leg in atm_legs.values() if leg["iv"] is not None]
    change_text, change_class, change_title = spot_change(data["spot"], data["spot_prev_close"])
    header = {
        "spot": price(data["spot"]),
        "spot_change": change_text,
        "spot_change_class": change_class,
        "spot_change_title": change_title,
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
        totals=_totals(strikes_map, strikes),
        header=header,
        max_oi=max_oi,
        strikes=[float(k) for k in strikes],
        all_totals=all_totals,
        atm_basis=atm_basis,
        atm=atm,
        shown=len(strikes),
        listed=listed,
    )


def _totals(strikes_map: Any, keys: list[str]) -> dict[str, dict[str, str]]:
    """OI, change in OI and volume summed per side over ``keys`` (unknown values count 0)."""
    sums = {side: {"oi": 0, "oi_change": 0, "volume": 0} for side in ("CE", "PE")}
    for key in keys:
        for side, leg in strikes_map[key].items():
            for name in ("oi", "oi_change", "volume"):
                sums[side][name] += leg[name] or 0
    return {
        side: {
            "oi": indian(t["oi"]),
            "oi_change": signed_int(t["oi_change"]),
            "volume": indian(t["volume"]),
        }
        for side, t in sums.items()
    }


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
