"""The IV-consistency check of a chain snapshot: every priced leg's IV, recomputed with Black-76
on the snapshot's own forward, time to expiry (from its ``as_of``) and the product's rate,
matches the IV the snapshot shows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from chains import analytics, black76

TOLERANCE = 0.0005  # 0.05 volatility points (IV is a fraction: 0.12 = 12 %)
RATE = 0.0  # the rate every chain book uses (ChainBook's default; index options settle on F)


def iv_mismatches(snapshot: dict[str, Any], *, rate: float = RATE) -> list[tuple[str, ...]]:
    """(strike, side, premium, shown IV, recomputed IV) of every leg whose shown IV differs
    from the IV recomputed on the snapshot's forward by more than ``TOLERANCE``, or where one
    is None and the other is not. Raises ValueError for a snapshot without a forward or as-of
    time."""
    forward, as_of = snapshot["forward"], snapshot["as_of"]
    if forward is None or as_of is None:
        raise ValueError("the snapshot has no forward or as-of time: flush it first")
    years = analytics.years_to_expiry(
        date.fromisoformat(snapshot["expiry"]), datetime.fromisoformat(as_of)
    )
    bad = []
    for strike, sides in snapshot["strikes"].items():
        for side, leg in sides.items():
            if leg["ltp"] is None:
                continue
            expected = black76.implied_vol(
                call=side == "CE",
                premium=leg["ltp"],
                forward=forward,
                strike=float(strike),
                years=years,
                rate=rate,
                min_time_value=black76.HALF_PAISA,  # as the chain: prices are in paise
            )
            shown = leg["iv"]
            if (shown is None) != (expected is None) or (
                shown is not None and expected is not None and abs(shown - expected) > TOLERANCE
            ):
                bad.append((strike, side, str(leg["ltp"]), str(shown), str(expected)))
    return bad


def priced_legs(snapshot: dict[str, Any]) -> int:
    """How many legs of ``snapshot`` have a last traded price."""
    return sum(1 for sides in snapshot["strikes"].values() for leg in sides.values() if leg["ltp"])
