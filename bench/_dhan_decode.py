"""Dhan feed decode benchmark: our codec vs the official ``dhanhq`` SDK on the same bytes.

Used by ``bench/decode.py``; also runnable alone from the repository root::

    .venv/bin/python -m bench._dhan_decode [n]

``generate`` builds a realistic mix of single-packet frames (the way Dhan sends them);
``run_ours`` decodes them into ``Tick`` events with ``brokers.dhan.codec.decode_frame``;
``run_sdk`` feeds them to ``dhanhq.marketfeed.MarketFeed.process_data`` (dhanhq 2.3.0), the
SDK's own per-frame packet processing (dispatch on the code byte, ``struct.unpack``, a dict per
packet). Each returns ``{"packets", "seconds", "per_second"}`` for the best of ``repeat`` runs.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brokers.dhan.codec import decode_frame
from brokers.dhan.encode import encode_full, encode_oi, encode_quote, encode_ticker
from brokers.ticks import DepthLevel

# Share of each packet type in the generated mix (an option chain in Full mode, its index in
# Ticker mode, and Quote+OI pairs for instruments in Quote mode).
MIX: dict[str, float] = {"ticker": 0.30, "quote": 0.25, "oi": 0.15, "full": 0.30}
PACKETS_PER_SECOND = 400  # feed packets sharing one LTT second
INDEXES = (13, 25, 27, 442)  # IDX_I ids: NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY
OPTIONS = range(35000, 35600)  # NSE_FNO security ids of one chain


def _tick(x: float) -> float:
    return round(round(x / 0.05) * 0.05, 2)


def generate(n: int, seed: int) -> list[bytes]:
    """Return ``n`` single-packet frames (Ticker/Quote/OI/Full mix per ``MIX``), reproducibly."""
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    start = datetime(2025, 1, 2, 3, 45, tzinfo=UTC)  # 09:15 IST
    at = start
    frames: list[bytes] = []
    for i, kind in enumerate(kinds):
        if i and i % PACKETS_PER_SECOND == 0:
            at += timedelta(seconds=1)
        if kind == "ticker" and rng.random() < 0.2:
            ltp = round(rng.uniform(22000, 52000), 2)
            frames.append(encode_ticker("IDX_I", rng.choice(INDEXES), ltp=ltp, ltt=at))
            continue
        sid = rng.choice(OPTIONS)
        ltp = _tick(rng.uniform(0.05, 800.0))
        if kind == "ticker":
            frames.append(encode_ticker("NSE_FNO", sid, ltp=ltp, ltt=at))
        elif kind == "oi":
            frames.append(encode_oi("NSE_FNO", sid, oi=rng.randrange(0, 20_000_000, 75)))
        else:
            common: dict[str, Any] = {
                "ltp": ltp,
                "ltq": rng.randrange(75, 7500, 75),
                "ltt": at,
                "avg_price": _tick(ltp * rng.uniform(0.95, 1.05)),
                "volume": rng.randrange(0, 400_000_000, 75),
                "total_sell_qty": rng.randrange(0, 5_000_000, 75),
                "total_buy_qty": rng.randrange(0, 5_000_000, 75),
                "open": _tick(ltp * 1.1),
                "close": _tick(ltp * 0.9),
                "high": _tick(ltp * 1.2),
                "low": _tick(ltp * 0.8),
            }
            if kind == "quote":
                frames.append(encode_quote("NSE_FNO", sid, **common))
            else:
                oi = rng.randrange(0, 20_000_000, 75)
                depth = [
                    DepthLevel(
                        rng.randrange(75, 75_000, 75),
                        rng.randrange(75, 75_000, 75),
                        rng.randrange(1, 200),
                        rng.randrange(1, 200),
                        max(_tick(ltp - 0.05 * (level + 1)), 0.05),
                        _tick(ltp + 0.05 * (level + 1)),
                    )
                    for level in range(5)
                ]
                frames.append(
                    encode_full(
                        "NSE_FNO",
                        sid,
                        **common,
                        oi=oi,
                        oi_day_high=oi + 7500,
                        oi_day_low=max(oi - 7500, 0),
                        depth=depth,
                    )
                )
    return frames


def _result(packets: int, seconds: float) -> dict[str, float]:
    return {"packets": packets, "seconds": seconds, "per_second": packets / seconds}


def run_ours(frames: list[bytes], *, repeat: int = 1) -> dict[str, float]:
    """Decode every frame with ``decode_frame``; best of ``repeat`` timed runs.

    Raises AssertionError if a frame does not decode to exactly one event (checked untimed).
    """
    events = sum(len(decode_frame(frame)) for frame in frames)
    assert events == len(frames), f"{events} events from {len(frames)} frames"
    decode = decode_frame
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for frame in frames:
            decode(frame)
        best = min(best, time.perf_counter() - started)
    return _result(len(frames), best)


def run_sdk(frames: list[bytes], *, repeat: int = 1) -> dict[str, float]:
    """Process every frame with dhanhq 2.3.0's ``MarketFeed.process_data``; best of ``repeat``.

    The feed object is made without ``__init__`` (which wants credentials and an event loop):
    ``process_data`` and the ``process_*`` methods it dispatches to use no instance state.
    """
    from dhanhq.marketfeed import MarketFeed  # optional dependency: requirements-bench.txt

    feed = MarketFeed.__new__(MarketFeed)
    feed.on_close = None  # read only by the code-50 path
    process = feed.process_data
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for frame in frames:
            process(frame)
        best = min(best, time.perf_counter() - started)
    return _result(len(frames), best)


def _line(name: str, result: dict[str, float]) -> str:
    return (
        f"{name:<28} {result['packets']:>9,} packets {result['seconds']:7.3f} s "
        f"{result['per_second']:>12,.0f} packets/s"
    )


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 1_000_000
    started = time.perf_counter()
    frames = generate(n, seed=1)
    print(f"generated {n:,} frames in {time.perf_counter() - started:.1f} s; mix {MIX}")
    ours = run_ours(frames, repeat=3)
    sdk = run_sdk(frames, repeat=3)
    print(_line("ours: decode_frame", ours))
    print(_line("dhanhq 2.3.0 process_data", sdk))
    print(f"ours / sdk: {ours['per_second'] / sdk['per_second']:.2f}x")
    for code, kind in ((2, "ticker"), (4, "quote"), (5, "oi"), (8, "full")):
        subset = [frame for frame in frames if frame[0] == code]
        mine, theirs = run_ours(subset, repeat=3), run_sdk(subset, repeat=3)
        ratio = mine["per_second"] / theirs["per_second"]
        print(
            f"  {kind:<6} ours {mine['per_second']:>12,.0f}/s   "
            f"sdk {theirs['per_second']:>12,.0f}/s   {ratio:.2f}x"
        )


if __name__ == "__main__":
    main(sys.argv)
