"""Many WebSocket clients of ``/ws/live-options/<UNDERLYING>`` in one process (bench/fanout.py).

    python bench/_fanout_client.py --base ws://HOST:PORT --chains NIFTY=2026-01-06,...
                                   --clients 250 --first 0 --control FILE --out FILE

Each client reconstructs its chain exactly as a browser does: the ``snapshot`` message, then
every ``delta`` in ``seq`` order (a delta carries the whole state of each leg it names and, when
they changed, the header fields). While the control file says ``measure``, every leg of a delta
whose ``exchange_time`` changed (a new tick, not analytics re-sent after the forward moved)
adds one latency sample: receipt time minus that ``exchange_time`` (the simulator's tick
time). On ``report`` each client's reconstructed chain is reduced to a SHA-256 digest and
the results are written to ``--out`` as JSON. Identical message texts are parsed once per
process (the clients of a chain receive the same bytes; each client still applies every message
to its own state, so a missing or reordered message still shows as a divergence).

``ChainReplica`` is that reconstruction on its own (no socket, no timing): the chaos tests and
``bench/chaos.py`` rebuild their clients' chains with it too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HEADER = ("spot", "forward", "atm_strike", "pcr", "max_pain")
BIN_MS = 1
MAX_MS = 120_000


class Shared:
    """What the clients of this process share: phase, histogram, parse and time caches."""

    def __init__(self) -> None:
        self.phase = "warmup"
        self.histogram = [0] * (MAX_MS // BIN_MS + 1)
        self.parsed: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.times: dict[str, float] = {}
        self.received_measuring = 0
        self.bytes_measuring = 0
        self.legs_measuring = 0

    def parse(self, text: str) -> Any:
        hit = self.parsed.get(text)
        if hit is None:
            hit = self.parsed[text] = json.loads(text)
            if len(self.parsed) > 256:
                self.parsed.popitem(last=False)
        return hit

    def stamp(self, iso: str) -> float:
        value = self.times.get(iso)
        if value is None:
            if len(self.times) > 200_000:
                self.times.clear()
            value = self.times[iso] = datetime.fromisoformat(iso).timestamp()
        return value


class ChainReplica:
    """One chain rebuilt from the consumer's messages exactly as a browser rebuilds it.

    ``apply`` takes each parsed message: a ``snapshot`` replaces the whole state; a ``delta``
    with the next ``seq`` updates the legs it names (and the header when it carries one); an
    older ``seq`` is ignored (``stale``), a jump is counted (``gaps``: the consumer sends a
    snapshot instead, so a gap seen here is a bug). ``status`` messages are kept with their
    receipt time; the writer ``run`` a message names (when it names one) is noted in ``runs``
    (consecutive repeats collapsed), so a return to an earlier writer shows. Shared by the
    fan-out benchmark and the chaos tests (tests/chaos).
    """

    def __init__(self) -> None:
        self.seq: int | None = None
        self.as_of: str | None = None
        self.header: dict[str, Any] = {}
        self.strikes: dict[str, dict[str, Any]] = {}
        self.snapshots = self.deltas = self.gaps = self.stale = self.other = 0
        self.runs: list[str] = []
        self.statuses: list[tuple[float, dict[str, Any]]] = []

    def apply(self, message: dict[str, Any], received: float) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self.snapshots += 1
            data = message.get("data") or {}
            self._note_run(message.get("run") or data.get("run"))
            self.seq, self.as_of = message.get("seq"), data.get("as_of")
            self.header = {k: data.get(k) for k in HEADER}
            self.strikes = {k: dict(v) for k, v in (data.get("strikes") or {}).items()}
            return
        if kind != "delta":
            self.other += 1
            if kind == "status":
                self.statuses.append((received, message))
            return
        self._note_run(message.get("run"))
        seq = message["seq"]
        if self.seq is not None and seq <= self.seq:
            self.stale += 1
            return
        if self.seq is not None and seq != self.seq + 1:
            self.gaps += 1  # the consumer sends a snapshot instead: a gap here is a bug
        self.deltas += 1
        self.seq, self.as_of = seq, message.get("as_of")
        if message.get("header"):
            self.header.update({k: message["header"].get(k) for k in HEADER})
        self.apply_legs(message["legs"], received)

    def apply_legs(self, legs: dict[str, dict[str, Any]], received: float) -> int:
        """Put every leg of a delta in place; returns how many legs it named."""
        strikes = self.strikes
        count = 0
        for strike, sides in legs.items():
            row = strikes.get(strike)
            if row is None:
                row = strikes[strike] = {}
            row.update(sides)
            count += len(sides)
        return count

    def _note_run(self, run: str | None) -> None:
        if run is not None and (not self.runs or self.runs[-1] != run):
            self.runs.append(run)

    def digest(self) -> str:
        return state_digest(self.seq, self.as_of, self.header, self.strikes)


class Client(ChainReplica):
    """A replica fed by its own WebSocket connection, timing every new tick it receives."""

    def __init__(self, shared: Shared, url: str, origin: str, underlying: str) -> None:
        super().__init__()
        self.shared, self.url, self.origin, self.underlying = shared, url, origin, underlying
        self.connected = False
        self.error: str | None = None
        self._text_length = 0

    async def run(self, ready: asyncio.Event | None) -> None:
        try:
            async with connect(self.url, origin=self.origin, max_size=None, max_queue=None,
                               open_timeout=60, ping_interval=None) as ws:  # fmt: skip
                self.connected = True
                if ready is not None:
                    ready.set()
                async for text in ws:
                    self.on_message(text, time.time())
        except (ConnectionClosed, OSError, TimeoutError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if ready is not None:
                ready.set()

    def on_message(self, text: str | bytes, received: float) -> None:
        self._text_length = len(text)
        self.apply(self.shared.parse(text if isinstance(text, str) else text.decode()), received)

    def apply_legs(self, legs: dict[str, dict[str, Any]], received: float) -> int:
        shared = self.shared
        if shared.phase != "measure":
            return super().apply_legs(legs, received)
        strikes = self.strikes
        histogram, stamp = shared.histogram, shared.stamp
        count = 0
        for strike, sides in legs.items():
            row = strikes.get(strike)
            if row is None:
                row = strikes[strike] = {}
            for side, leg in sides.items():
                before = row.get(side)
                row[side] = leg
                count += 1
                at = leg.get("exchange_time")
                # A leg re-sent only because its analytics moved (the forward did) carries an
                # old exchange time: only a new tick is a delivery to time.
                if at and (before is None or before.get("exchange_time") != at):
                    ms = int((received - stamp(at)) * 1000)
                    histogram[min(max(ms, 0), MAX_MS) // BIN_MS] += 1
        shared.received_measuring += 1
        shared.bytes_measuring += self._text_length
        shared.legs_measuring += count
        return count


def state_digest(seq: Any, as_of: Any, header: dict[str, Any], strikes: dict[str, Any]) -> str:
    """SHA-256 of a chain state in canonical JSON (the coordinator computes it from Redis)."""
    body = {"seq": seq, "as_of": as_of, "header": {k: header.get(k) for k in HEADER},
            "strikes": strikes}  # fmt: skip
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def main(args: argparse.Namespace) -> None:
    shared = Shared()
    chains = [c.split("=") for c in args.chains.split(",")]
    clients = []
    tasks = []
    for n in range(args.clients):
        underlying, expiry = chains[(args.first + n) % len(chains)]
        url = f"{args.base}/ws/live-options/{underlying}?expiry={expiry}"
        clients.append(Client(shared, url, args.origin, underlying))
    control = Path(args.control)
    # Connect a few at a time: 500 simultaneous handshakes would only measure the backlog.
    for start in range(0, len(clients), 10):
        batch = clients[start : start + 10]
        events = [asyncio.Event() for _ in batch]
        tasks += [asyncio.create_task(c.run(e)) for c, e in zip(batch, events, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
    Path(args.out + ".connected").write_text(str(sum(c.connected for c in clients)))
    progress = Path(args.out + ".progress")
    while True:
        await asyncio.sleep(0.2)
        lines = control.read_text().splitlines() if control.exists() else ["warmup"]
        phase = lines[0].strip() if lines else "warmup"
        shared.phase = phase
        if phase == "settle" and len(lines) > 1:  # the final seq of each chain's snapshot
            final = json.loads(lines[1])
            reached = sum(1 for c in clients if c.seq == final.get(c.underlying))
            moved = sum(c.seq or 0 for c in clients)
            progress.write_text(json.dumps({"reached": reached, "total": len(clients),
                                            "seqs": moved}))  # fmt: skip
        if phase == "report":
            break
    result = {
        "clients": [
            {
                "url": c.url,
                "connected": c.connected,
                "error": c.error,
                "seq": c.seq,
                "digest": c.digest(),
                "snapshots": c.snapshots,
                "deltas": c.deltas,
                "gaps": c.gaps,
                "stale": c.stale,
                "other": c.other,
            }
            for c in clients
        ],
        "histogram": {str(i): n for i, n in enumerate(shared.histogram) if n},
        "bin_ms": BIN_MS,
        "messages_measuring": shared.received_measuring,
        "bytes_measuring": shared.bytes_measuring,
        "legs_measuring": shared.legs_measuring,
    }
    Path(args.out).write_text(json.dumps(result))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--chains", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--control", required=True)
    parser.add_argument("--out", required=True)
    asyncio.run(main(parser.parse_args()))
