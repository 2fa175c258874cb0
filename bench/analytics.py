"""Chain analytics: IV + greeks of a 400-leg NIFTY chain, ours against two baselines.

    python bench/analytics.py [--strikes 200] [--days 3] [--repeat 200] [--json]

The chain: 200 strikes × CE/PE, 50 apart around a forward of ~26,000, ``--days`` to expiry,
premiums from the simulator's volatility smile (ATM 11.5 %, put skew) on the 0.05 tick grid
(deep in-the-money legs often trade at intrinsic: they have no IV, as in the market).

Timed, per whole chain (median and best of ``--repeat`` runs, process pinned to one core):

* ``ours cold``  — ``black76.implied_vol_and_greeks`` for every leg, no starting guess;
* ``ours warm``  — the same after the forward moved 0.1 %, each leg starting from its
  previous IV (what a flush does when the forward moves);
* ``ours iv+greeks`` — ``implied_vol`` then ``greeks`` (two calls), as ``ChainBook`` calls them;
* ``vollib``     — baseline: vollib's ``implied_volatility`` (Jäckel's Let's Be Rational, the
  reference of tests/chains/test_black76.py) + its analytical delta/gamma/theta/vega;
* ``bisection``  — baseline: plain bisection on [1e-4, 20] to 1e-10 + our ``greeks``;
* ``ChainBook.flush`` — the real flush path with all 400 legs dirty and the forward moved
  (analytics, OI statistics, the delta's leg dicts), and where it spends its time;
* ``flush, 20 legs ticked`` — the common live flush: only the 20 legs nearest the money
  ticked, moving the parity forward by a few points (0.01 %, one or more ticks); every priced
  leg's IV is redone on the new forward, and the legs whose IV changed are in the delta.

Accuracy: the largest |our IV − vollib's IV| over the chain. Goal: under 2 ms per 400-leg
chain, both for the recompute (cold and warm) and for the flush path.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from py_lets_be_rational.exceptions import VolatilityValueException
from vollib.black.greeks.analytical import delta as vl_delta
from vollib.black.greeks.analytical import gamma as vl_gamma
from vollib.black.greeks.analytical import theta as vl_theta
from vollib.black.greeks.analytical import vega as vl_vega
from vollib.black.implied_volatility import implied_volatility as vl_iv
from vollib.helpers.exceptions import PriceIsAboveMaximum, PriceIsBelowIntrinsic

from brokers.simulator.pricing import grid, smile_vol
from brokers.ticks import Tick
from chains import analytics, black76
from chains.book import ChainBook
from chains.leg import LegSpec

GOAL_MS = 2.0
NOW = datetime(2026, 1, 5, 5, 0, tzinfo=UTC)  # Monday 10:30 IST
SPOT = 25_990.0
STEP = 50.0
ATM_VOL = 0.115
CARRY = 0.06
MOVE = 0.001  # forward move between the two price sets of the full flush
SMALL_MOVE = 0.0001  # forward move between the two price sets of the partial flush
TICKED = 20  # legs ticked per partial flush (the 10 strikes nearest the money)
VOLLIB_ERRORS = (PriceIsBelowIntrinsic, PriceIsAboveMaximum, VolatilityValueException)

Leg = tuple[bool, float, float]  # (call, strike, premium)


def make_chain(strikes: int, spot: float, years: float) -> tuple[float, list[Leg]]:
    """(forward, legs) of a NIFTY-like chain priced off the smile, on the 0.05 grid."""
    forward = spot * math.exp(CARRY * years)
    first = round(26_000.0 / STEP) * STEP - STEP * (strikes // 2)
    legs = []
    for n in range(strikes):
        strike = first + STEP * n
        vol = smile_vol(ATM_VOL, forward, strike, years)
        for call in (True, False):
            value = black76.price(call=call, forward=forward, strike=strike, years=years, vol=vol)
            legs.append((call, strike, max(grid(value), 0.05)))
    return forward, legs


def timed(run: Callable[[], object], repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        runs.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(runs) * 1e3, "best_ms": min(runs) * 1e3}


# --- the recompute, five ways ---------------------------------------------------------------


def ours(legs: list[Leg], forward: float, years: float, guesses: list[float | None] | None):
    solve = black76.implied_vol_and_greeks
    out = []
    for n, (call, strike, premium) in enumerate(legs):
        solved = solve(call=call, premium=premium, forward=forward, strike=strike, years=years,
                       guess=guesses[n] if guesses else None)  # fmt: skip
        out.append(None if solved is None else solved[0])
    return out


def ours_two_calls(legs: list[Leg], forward: float, years: float, guesses):
    out = []
    for n, (call, strike, premium) in enumerate(legs):
        iv = black76.implied_vol(call=call, premium=premium, forward=forward, strike=strike,
                                 years=years, guess=guesses[n] if guesses else None)  # fmt: skip
        if iv is not None:
            black76.greeks(call=call, forward=forward, strike=strike, years=years, vol=iv)
        out.append(iv)
    return out


def vollib(legs: list[Leg], forward: float, years: float, guesses=None):
    out = []
    for call, strike, premium in legs:
        flag = "c" if call else "p"
        try:
            iv = vl_iv(premium, forward, strike, 0.0, years, flag)
        except VOLLIB_ERRORS:
            out.append(None)
            continue
        if not 1e-4 <= iv <= 20.0:  # ours answers None outside [1e-4, 20]
            out.append(None)
            continue
        vl_delta(flag, forward, strike, years, 0.0, iv)
        vl_gamma(flag, forward, strike, years, 0.0, iv)
        vl_theta(flag, forward, strike, years, 0.0, iv)
        vl_vega(flag, forward, strike, years, 0.0, iv)
        out.append(iv)
    return out


def bisection_iv(call: bool, premium: float, forward: float, strike: float, years: float):
    intrinsic = max(forward - strike if call else strike - forward, 0.0)
    if premium <= intrinsic or premium >= (forward if call else strike):
        return None
    lo, hi = black76.MIN_VOL, black76.MAX_VOL
    price = black76.price
    if price(call=call, forward=forward, strike=strike, years=years, vol=hi) < premium:
        return None
    while hi - lo > 1e-10:
        mid = 0.5 * (lo + hi)
        if price(call=call, forward=forward, strike=strike, years=years, vol=mid) > premium:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def bisection(legs: list[Leg], forward: float, years: float, guesses=None):
    out = []
    for call, strike, premium in legs:
        iv = bisection_iv(call, premium, forward, strike, years)
        if iv is not None:
            black76.greeks(call=call, forward=forward, strike=strike, years=years, vol=iv)
        out.append(iv)
    return out


# --- the flush path -------------------------------------------------------------------------


def leg_ticks(specs: list[LegSpec], legs: list[Leg], version: int) -> list[Tick]:
    ticks = []
    for spec, (_, _, premium) in zip(specs, legs, strict=True):
        ticks.append(Tick(
            "dhan", "NSE_FNO", spec.instrument, NOW, ltp=premium, ltq=65, volume=6500 * version,
            oi=65 * (1000 + version + int(spec.strike) % 97), prev_close=round(premium * 1.1, 2),
            prev_oi=65 * 1000, bid_price=max(round(premium - 0.05, 2), 0.05), bid_qty=650,
            ask_price=round(premium + 0.05, 2), ask_qty=650,
        ))  # fmt: skip
    return ticks


def flush_path(strikes: int, expiry: date, repeat: int) -> dict[str, Any]:
    """Time ``ChainBook.flush`` with every leg dirty and the forward moved each time."""
    years = analytics.years_to_expiry(expiry, NOW)
    sets = []
    for n, spot in enumerate((SPOT, SPOT * (1 + MOVE))):
        _, legs = make_chain(strikes, spot, years)
        sets.append((spot, legs, n))
    specs = [LegSpec(f"{int(k)}{'CE' if c else 'PE'}", k, "CE" if c else "PE")
             for c, k, _ in sets[0][1]]  # fmt: skip
    chain = ChainBook(underlying="NIFTY", expiry=expiry, index_instrument="13", legs=specs,
                      lot_size=65)  # fmt: skip
    prepared = [(Tick("dhan", "IDX_I", "13", NOW, ltp=grid(spot)), leg_ticks(specs, legs, n))
                for spot, legs, n in sets]  # fmt: skip
    observed = [1.0]

    def apply(which: int) -> None:
        index_tick, ticks = prepared[which]
        observed[0] += 1.0
        chain.apply_spot(index_tick, observed[0])
        for tick in ticks:
            chain.apply_tick(chain.legs[tick.instrument], tick, observed[0])

    apply(0)
    chain.flush(NOW)  # cold: every IV from scratch
    runs, changed = [], 0
    for n in range(repeat):
        apply((n + 1) % 2)
        started = time.perf_counter()
        delta = chain.flush(NOW)
        runs.append(time.perf_counter() - started)
        assert delta is not None
        changed = sum(len(sides) for sides in delta["legs"].values())  # type: ignore[union-attr]
    result: dict[str, Any] = {
        "median_ms": statistics.median(runs) * 1e3,
        "best_ms": min(runs) * 1e3,
        "legs_in_delta": changed,
        "legs_with_iv": sum(1 for leg in chain.legs.values() if leg.our_iv is not None),
    }
    result["parts_ms"] = flush_parts(chain, years, repeat)
    return result


def partial_flush(strikes: int, expiry: date, repeat: int) -> dict[str, Any]:
    """Time ``ChainBook.flush`` when only the ``TICKED`` legs nearest the money ticked and the
    parity forward moved by ``SMALL_MOVE``."""
    years = analytics.years_to_expiry(expiry, NOW)
    _, legs = make_chain(strikes, SPOT, years)
    specs = [LegSpec(f"{int(k)}{'CE' if c else 'PE'}", k, "CE" if c else "PE")
             for c, k, _ in legs]  # fmt: skip
    chain = ChainBook(underlying="NIFTY", expiry=expiry, index_instrument="13", legs=specs,
                      lot_size=65)  # fmt: skip
    chain.apply_spot(Tick("dhan", "IDX_I", "13", NOW, ltp=grid(SPOT)), 1.0)
    for tick in leg_ticks(specs, legs, 0):
        chain.apply_tick(chain.legs[tick.instrument], tick, 1.0)
    chain.flush(NOW)
    near = sorted(range(len(specs)), key=lambda n: abs(specs[n].strike - SPOT))[:TICKED]
    prepared = []
    for n, spot in enumerate((SPOT * (1 + SMALL_MOVE), SPOT)):
        _, moved = make_chain(strikes, spot, years)
        ticks = leg_ticks(specs, moved, n + 1)
        prepared.append([ticks[i] for i in near])
    observed, runs, in_delta = 1.0, [], []
    for n in range(repeat):
        observed += 1.0
        for tick in prepared[n % 2]:
            chain.apply_tick(chain.legs[tick.instrument], tick, observed)
        started = time.perf_counter()
        delta = chain.flush(NOW)
        runs.append(time.perf_counter() - started)
        assert delta is not None
        in_delta.append(sum(len(sides) for sides in delta["legs"].values()))
    return {
        "median_ms": statistics.median(runs) * 1e3,
        "best_ms": min(runs) * 1e3,
        "legs_ticked": TICKED,
        "legs_in_delta_median": statistics.median(in_delta),
    }


def flush_parts(chain: ChainBook, years: float, repeat: int) -> dict[str, float] | None:
    """Where a flush goes: IV+greeks of every leg, OI statistics (PCR, max pain), leg dicts.

    Uses the book's private steps and ``Leg.compute``; None when they were renamed (the total
    above still holds).
    """
    try:
        legs = list(chain.legs.values())
        oi_stats, legs_dict = chain._update_oi_stats, chain._legs_dict
    except AttributeError:
        return None
    forward, rate = chain.forward, chain.rate

    def analytics_part() -> None:
        for leg in legs:
            leg.compute(forward=forward, years=years, rate=rate)

    return {
        "iv_greeks_buildup": timed(analytics_part, repeat)["median_ms"],
        "oi_stats_pcr_max_pain": timed(oi_stats, repeat)["median_ms"],
        "leg_dicts": timed(lambda: legs_dict(legs), repeat)["median_ms"],
    }


# --- main -----------------------------------------------------------------------------------


def run(strikes: int, days: float, repeat: int) -> dict[str, Any]:
    expiry_day = date.fromordinal(NOW.date().toordinal() + max(1, round(days)))
    years = analytics.years_to_expiry(expiry_day, NOW)
    forward, legs = make_chain(strikes, SPOT, years)
    moved_forward, moved = make_chain(strikes, SPOT * (1 + MOVE), years)
    reference = vollib(legs, forward, years)
    first = ours(legs, forward, years, None)
    with_iv = [n for n, iv in enumerate(first) if iv is not None]
    errors = [abs(first[n] - reference[n]) for n in with_iv if reference[n] is not None]
    agree = sum((a is None) == (b is None) for a, b in zip(first, reference, strict=True))
    cases: dict[str, dict[str, float]] = {
        "ours cold": timed(lambda: ours(legs, forward, years, None), repeat),
        "ours warm": timed(lambda: ours(moved, moved_forward, years, first), repeat),
        "ours iv+greeks cold": timed(lambda: ours_two_calls(legs, forward, years, None), repeat),
        "ours iv+greeks warm": timed(
            lambda: ours_two_calls(moved, moved_forward, years, first), repeat
        ),
        "vollib (baseline)": timed(lambda: vollib(legs, forward, years), max(5, repeat // 10)),
        "bisection (baseline)": timed(
            lambda: bisection(legs, forward, years), max(5, repeat // 10)
        ),
    }
    flush = flush_path(strikes, expiry_day, repeat)
    partial = partial_flush(strikes, expiry_day, repeat)
    recompute_ms = max(cases["ours cold"]["median_ms"], cases["ours warm"]["median_ms"])
    return {
        "chain": {
            "legs": len(legs),
            "legs_with_iv": len(with_iv),
            "forward": round(forward, 2),
            "years": years,
            "expiry": expiry_day.isoformat(),
        },
        "accuracy": {
            "max_abs_iv_error_vs_vollib": max(errors) if errors else None,
            "legs_agreeing_on_having_an_iv": agree,
        },
        "cases": cases,
        "flush": flush,
        "partial_flush": partial,
        "goal_ms": GOAL_MS,
        "goal_met": {
            "recompute": recompute_ms < GOAL_MS,
            "flush_path": flush["median_ms"] < GOAL_MS,
            "partial_flush": partial["median_ms"] < GOAL_MS,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strikes", type=int, default=200)
    parser.add_argument("--days", type=float, default=3.0, help="days to expiry (whole days)")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per case")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    results = run(args.strikes, args.days, args.repeat)
    if args.json:
        print(json.dumps({"benchmark": "analytics", "results": results}, indent=2))
        return
    chain, flush, acc = results["chain"], results["flush"], results["accuracy"]
    legs = chain["legs"]
    print(
        f"chain: {legs} legs ({chain['legs_with_iv']} with an IV), forward "
        f"{chain['forward']:,}, {chain['years'] * 365:.2f} days to expiry"
    )
    print(
        f"accuracy: max |IV − vollib| {acc['max_abs_iv_error_vs_vollib']:.1e}, "
        f"{acc['legs_agreeing_on_having_an_iv']}/{legs} legs agree on having an IV"
    )
    print(f"{'case':<24}{'median ms':>11}{'best ms':>10}{'µs/leg':>9}")
    partial = results["partial_flush"]
    rows = [
        *results["cases"].items(),
        ("ChainBook.flush", flush),
        (f"flush, {partial['legs_ticked']} legs ticked", partial),
    ]
    for name, c in rows:
        print(
            f"{name:<24}{c['median_ms']:>11.3f}{c['best_ms']:>10.3f}"
            f"{c['median_ms'] * 1e3 / legs:>9.2f}"
        )
    print(f"  flush: {flush['legs_in_delta']} legs in the delta")
    print(
        f"  flush, {partial['legs_ticked']} legs ticked: "
        f"{partial['legs_in_delta_median']:.0f} legs in the delta (median)"
    )
    if flush["parts_ms"]:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in flush["parts_ms"].items())
        print(f"  of which (median ms): {parts}")
    for what, met in results["goal_met"].items():
        print(f"goal < {GOAL_MS} ms per chain, {what}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
