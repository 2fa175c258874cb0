"""Upstox V3 feed decode benchmark: our codec vs the official ``upstox-python-sdk``, same bytes.

Used by ``bench/decode.py``; also runnable alone from the repository root::

    .venv/bin/python -m bench._upstox_decode [n_frames [feeds_per_frame]]

``generate`` builds option_greeks frames of an option chain (a snapshot, then live_feed frames)
with our encoder; ``run_ours`` decodes them into ``Tick`` events with
``brokers.upstox.codec.decode_frame``; ``run_sdk`` runs upstox-python-sdk 2.30.0's decode path —
``FeedResponse.FromString`` from the SDK's own generated ``MarketDataFeedV3_pb2`` and then
``google.protobuf.json_format.MessageToDict``, exactly what its ``MarketDataStreamerV3`` does per
message. Each returns ``{"feeds", "seconds", "per_second"}`` (a feed = one instrument entry) for
the best of ``repeat`` runs, on one thread.

The SDK's generated module registers the same protobuf symbols as ours in the process-wide
descriptor pool, so the two cannot be imported into one process: ``run_sdk`` times the SDK in a
child Python process fed the same bytes through a temporary file.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brokers.upstox.codec import decode_frame
from brokers.upstox.encode import encode_live_feed, encode_snapshot

SDK_PIN = "upstox-python-sdk==2.30.0"
STRIKES = range(21000, 25000, 50)  # 80 strikes x CE/PE = 160 options of one chain
LOT = 75


def _tick(x: float) -> float:
    return round(max(round(x / 0.05) * 0.05, 0.05), 2)


def generate(n_frames: int = 20_000, feeds_per_frame: int = 50, seed: int = 1) -> list[bytes]:
    """Return ``n_frames`` option_greeks frames of ``feeds_per_frame`` feeds each, reproducibly.

    The first frame is a snapshot, the rest live_feed frames one second apart; each feed carries
    every option_greeks field (ltpc, top of book, greeks, volume, OI, IV) with realistic values.
    Raises ValueError if ``feeds_per_frame`` exceeds the chain's instruments.
    """
    rng = random.Random(seed)
    keys = [f"NSE_FO|{40000 + i}" for i in range(2 * len(STRIKES))]
    if not 0 < feeds_per_frame <= len(keys):
        raise ValueError(f"feeds_per_frame must be 1..{len(keys)}, got {feeds_per_frame}")
    spot = 22976.2
    state = {}
    for i, key in enumerate(keys):
        strike, call = STRIKES[i // 2], i % 2 == 0
        intrinsic = max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
        ltp = _tick(intrinsic + rng.uniform(5.0, 150.0))
        state[key] = {
            "ltp": ltp,
            "cp": _tick(ltp * rng.uniform(0.8, 1.2)),
            "call": call,
            "vtt": rng.randrange(0, 50_000_000, LOT),
            "oi": rng.randrange(0, 10**7, LOT),
        }
    at = datetime(2025, 2, 28, 3, 45, tzinfo=UTC)  # 09:15 IST
    frames = []
    for n in range(n_frames):
        at += timedelta(seconds=1)
        feeds = {}
        for key in rng.sample(keys, feeds_per_frame):
            s = state[key]
            s["ltp"] = ltp = _tick(s["ltp"] * rng.uniform(0.98, 1.02))
            s["vtt"] += rng.randrange(LOT, 100 * LOT, LOT)
            s["oi"] = max(s["oi"] + rng.randrange(-50 * LOT, 50 * LOT, LOT), 0)
            delta = rng.uniform(0.02, 0.98)
            feeds[key] = {
                "exchange_time": at - timedelta(milliseconds=rng.randrange(0, 3000)),
                "ltp": ltp,
                "ltq": rng.randrange(LOT, 20 * LOT, LOT),
                "prev_close": s["cp"],
                "bid_price": _tick(ltp - 0.05),
                "bid_qty": rng.randrange(LOT, 200 * LOT, LOT),
                "ask_price": _tick(ltp + 0.05),
                "ask_qty": rng.randrange(LOT, 200 * LOT, LOT),
                "delta": round(delta if s["call"] else delta - 1.0, 4),
                "theta": round(-rng.uniform(0.5, 40.0), 4),
                "gamma": round(rng.uniform(0.00001, 0.002), 6),
                "vega": round(rng.uniform(0.5, 20.0), 4),
                "volume": s["vtt"],
                "oi": s["oi"],
                "iv": round(rng.uniform(0.08, 0.45), 4),
            }
        encode = encode_snapshot if n == 0 else encode_live_feed
        frames.append(encode(feeds=feeds, mode="option_greeks", current_ts=at))
    return frames


def _result(feeds: int, seconds: float) -> dict[str, float]:
    return {"feeds": feeds, "seconds": seconds, "per_second": feeds / seconds}


def run_ours(frames: list[bytes], *, repeat: int = 1) -> dict[str, float]:
    """Decode every frame into Ticks with ``decode_frame``; best of ``repeat`` timed runs."""
    decode = decode_frame
    best, feeds = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        feeds = 0
        for frame in frames:
            feeds += len(decode(frame))
        best = min(best, time.perf_counter() - started)
    return _result(feeds, best)


# Runs in a child process (see the module docstring): the SDK streamer's per-message decode.
_SDK_CHILD = """
import json, struct, sys, time
from google.protobuf import json_format
from upstox_client.feeder.proto import MarketDataFeedV3_pb2

data = open(sys.argv[1], "rb").read()
frames, at = [], 0
while at < len(data):
    (size,) = struct.unpack_from("<I", data, at)
    frames.append(data[at + 4 : at + 4 + size])
    at += 4 + size
parse, to_dict = MarketDataFeedV3_pb2.FeedResponse.FromString, json_format.MessageToDict
best, feeds = float("inf"), 0
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    feeds = 0
    for frame in frames:
        feeds += len(to_dict(parse(frame)).get("feeds", ()))
    best = min(best, time.perf_counter() - started)
print(json.dumps({"feeds": feeds, "seconds": best}))
"""


def run_sdk(frames: list[bytes], *, repeat: int = 1) -> dict[str, float]:
    """Decode every frame the way upstox-python-sdk's streamer does; best of ``repeat`` runs.

    Runs in a child interpreter (same Python as this one). Raises RuntimeError saying what to
    install when the SDK is missing or the child fails.
    """
    with tempfile.NamedTemporaryFile(suffix=".frames") as file:
        for frame in frames:
            file.write(struct.pack("<I", len(frame)) + frame)
        file.flush()
        child = subprocess.run(
            [sys.executable, "-c", _SDK_CHILD, file.name, str(repeat)],
            capture_output=True,
            text=True,
            check=False,
        )
    if child.returncode != 0:
        raise RuntimeError(
            f"the upstox SDK decode run failed (install it: pip install {SDK_PIN}):\n"
            f"{child.stderr.strip()}"
        )
    result = json.loads(child.stdout)
    return _result(result["feeds"], result["seconds"])


def _line(name: str, result: dict[str, float]) -> str:
    return (
        f"{name:<36} {result['feeds']:>10,} feeds {result['seconds']:7.3f} s "
        f"{result['per_second']:>12,.0f} feeds/s"
    )


def main(argv: list[str]) -> None:
    n_frames = int(argv[1]) if len(argv) > 1 else 20_000
    per_frame = int(argv[2]) if len(argv) > 2 else 50
    started = time.perf_counter()
    frames = generate(n_frames, per_frame, seed=1)
    size = sum(map(len, frames)) / len(frames)
    print(
        f"generated {n_frames:,} option_greeks frames x {per_frame} feeds "
        f"({size:,.0f} bytes each) in {time.perf_counter() - started:.1f} s"
    )
    ours = run_ours(frames, repeat=3)
    sdk = run_sdk(frames, repeat=3)
    if ours["feeds"] != sdk["feeds"]:
        raise SystemExit(f"feed counts differ: ours {ours['feeds']}, sdk {sdk['feeds']}")
    print(_line("ours: decode_frame -> Tick", ours))
    print(_line("upstox-python-sdk 2.30.0 MessageToDict", sdk))
    print(f"ours / sdk: {ours['per_second'] / sdk['per_second']:.2f}x")


if __name__ == "__main__":
    main(sys.argv)
