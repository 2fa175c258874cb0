"""Feed decoding: our codecs against the official SDKs' decode paths, on the same bytes.

    .venv/bin/pip install -r requirements-bench.txt   # the SDKs, only for this benchmark
    python bench/decode.py [--dhan-packets 1000000] [--upstox-frames 20000] [--repeat 3] [--json]

Dhan: 1,000,000 packets (ticker/quote/OI/full mix), decoded into ``Tick``s by
``brokers.dhan.codec.decode_frame`` and by dhanhq's ``MarketFeed.process_data``. Upstox:
20,000 ``FeedResponse`` frames of 50 option_greeks feeds, decoded by
``brokers.upstox.codec.decode_frame`` and by upstox-python-sdk's path (``FeedResponse`` parse +
``MessageToDict``; in a child interpreter because its generated module and ours register the
same protobuf names). The process is pinned to one core. Goal: Dhan ≥ 1,000,000 packets/s and
≥ 3× the SDK; Upstox ≥ 300,000 feeds/s and ≥ 4× the SDK.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _dhan_decode, _upstox_decode


def main() -> None:
    parser = argparse.ArgumentParser(description="Feed decoding: ours vs the official SDKs.")
    parser.add_argument("--dhan-packets", type=int, default=1_000_000)
    parser.add_argument("--upstox-frames", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timed runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal says
    dhan_frames = _dhan_decode.generate(args.dhan_packets, 1)
    dhan = {
        "ours": _dhan_decode.run_ours(dhan_frames, repeat=args.repeat),
        "sdk": _dhan_decode.run_sdk(dhan_frames, repeat=args.repeat),
    }
    del dhan_frames
    upstox_frames = _upstox_decode.generate(args.upstox_frames, 50, 1)
    upstox = {
        "ours": _upstox_decode.run_ours(upstox_frames, repeat=args.repeat),
        "sdk": _upstox_decode.run_sdk(upstox_frames, repeat=args.repeat),
    }
    results = {
        "dhan": {**dhan, "ratio": dhan["ours"]["per_second"] / dhan["sdk"]["per_second"],
                 "goal_met": dhan["ours"]["per_second"] >= 1_000_000
                 and dhan["ours"]["per_second"] >= 3 * dhan["sdk"]["per_second"]},
        "upstox": {**upstox, "ratio": upstox["ours"]["per_second"] / upstox["sdk"]["per_second"],
                   "goal_met": upstox["ours"]["per_second"] >= 300_000
                   and upstox["ours"]["per_second"] >= 4 * upstox["sdk"]["per_second"]},
    }  # fmt: skip
    if args.json:
        print(json.dumps({"benchmark": "decode", "results": results}, indent=2))
        return
    for broker, unit in (("dhan", "packets"), ("upstox", "feeds")):
        r = results[broker]
        print(
            f"{broker:<7} ours {r['ours']['per_second']:>12,.0f} {unit}/s   "
            f"SDK {r['sdk']['per_second']:>10,.0f} {unit}/s   ratio {r['ratio']:.1f}x   "
            f"goal {'met' if r['goal_met'] else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
