"""Exchange simulator throughput: ticks/s the simulator sustains while feeding real clients.

    python bench/simulator.py [--rate 50000] [--seconds 8] [--broker dhan|upstox|both]

Starts ``manage.py runsim --ticks-per-second RATE`` in a subprocess, subscribes every
instrument (Dhan quote mode, and/or Upstox option_greeks) over real sockets, decodes every
frame with our codecs in this process, and reports: the simulator's own measured step rate
and skipped steps (``/sim/state``: steps it could not generate in time), and the frames and
ticks this client received per second. Goal: ≥ 50,000 ticks/s on one core, no skipped steps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from brokers.dhan.codec import decode_frame as dhan_decode  # noqa: E402
from brokers.dhan.messages import subscribe_messages  # noqa: E402
from brokers.upstox.codec import decode_frame as upstox_decode  # noqa: E402
from brokers.upstox.messages import sub  # noqa: E402
from tests.brokers.simulator.feedclient import feed_connect, upstox_uri  # noqa: E402
from tests.sim_process import start_simulator  # noqa: E402


async def consume(ws, decode, seconds: float, counts: dict[str, int]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            continue
        counts["frames"] += 1
        counts["ticks"] += len(decode(frame))


async def run(rate: int, seconds: float, broker: str) -> None:
    sim = await asyncio.to_thread(start_simulator, "--ticks-per-second", str(rate))
    try:
        state = await asyncio.to_thread(sim.state)
        rows = [i for i in state["instruments"]]
        jobs = []
        results = {}
        if broker in ("dhan", "both"):
            ws = await feed_connect(sim.dhan_feed_url())
            for message in subscribe_messages(
                "quote", [(r["dhan_segment"], r["security_id"]) for r in rows]
            ):
                await ws.send(message)
            results["dhan"] = {"frames": 0, "ticks": 0}
            jobs.append(consume(ws, dhan_decode, seconds, results["dhan"]))
        if broker in ("upstox", "both"):
            ws = await feed_connect(await upstox_uri(sim))
            for request in sub([r["upstox_key"] for r in rows], mode="option_greeks"):
                await ws.send(request)
            results["upstox"] = {"frames": 0, "ticks": 0}
            jobs.append(consume(ws, upstox_decode, seconds, results["upstox"]))
        before = await asyncio.to_thread(sim.state, instruments=False)
        started = time.monotonic()
        await asyncio.gather(*jobs)
        elapsed = time.monotonic() - started
        after = await asyncio.to_thread(sim.state, instruments=False)
        steps = after["steps"] - before["steps"]
        skipped = after["skipped_steps"] - before["skipped_steps"]
        print(
            f"simulator: {steps / elapsed:,.0f} steps/s generated (asked {rate:,}/s), "
            f"{skipped:,} skipped, {len(rows)} instruments subscribed"
        )
        for name, c in results.items():
            print(
                f"{name:>9}: {c['frames'] / elapsed:,.0f} frames/s, "
                f"{c['ticks'] / elapsed:,.0f} decoded ticks/s"
            )
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--broker", choices=("dhan", "upstox", "both"), default="both")
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds, args.broker))


if __name__ == "__main__":
    main()
