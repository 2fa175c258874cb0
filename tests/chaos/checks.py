"""The checks every fault ends with, and their record (``FaultReport``): recovery, honesty
(nothing said "live" while no tick arrived), one writer, and convergence of every client to the
simulator's truth. Nothing here asserts: tests assert on the report, the benchmark prints it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .claims import LIVE_GRACE, dishonest
from .observers import Chain

if TYPE_CHECKING:
    from .stack import ChaosStack

FIELDS = ("ltp", "bid", "ask", "volume", "oi", "prev_close")


@dataclass
class FaultReport:
    """What one fault did. Times are epoch seconds (``time.time()``)."""

    name: str
    started: float
    lifted: float | None = None  # the fault ended (Redis answers, kill sent, stall resumed)
    recovered: float | None = None  # every chain had fresh ticks and every feed said live
    recovery_error: str | None = None
    dishonest_seconds: float = 0.0
    dishonest_examples: list[str] = field(default_factory=list)
    divergent: list[str] = field(default_factory=list)
    duplicate_writers: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    # When Redis came back empty: nothing written before can be served after it, so every
    # claim made after it is about new state (the evidence channels need a moment to re-join).
    empty_store_since: float | None = None

    @property
    def recovery_seconds(self) -> float | None:
        if self.recovered is None or self.lifted is None:
            return None
        return max(0.0, self.recovered - self.lifted)

    def problems(self) -> list[str]:
        """Every way this fault broke a rule, one line each (empty: none)."""
        out = []
        if self.recovery_error:
            out.append(f"no recovery: {self.recovery_error}")
        if self.dishonest_examples:
            out.append(
                f"said 'live' with no tick for > {LIVE_GRACE:g} s during "
                f"{self.dishonest_seconds:.1f} s, e.g. " + "; ".join(self.dishonest_examples)
            )
        out += [f"divergent: {d}" for d in self.divergent]
        out += [f"second writer: {d}" for d in self.duplicate_writers]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "recovery_seconds": _round(self.recovery_seconds),
            "recovery_error": self.recovery_error,
            "live_while_no_tick_seconds": round(self.dishonest_seconds, 1),
            "live_claims": self.dishonest_examples,
            "divergent_clients": len(self.divergent),
            "divergent": self.divergent,
            "duplicate_writers": len(self.duplicate_writers),
            "second_writer": self.duplicate_writers,
            **self.notes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def convergence(stack: ChaosStack, report: FaultReport, *, timeout: float = 20.0) -> None:
    """Stall the market, let everything settle, then every leg of every client's rebuilt
    chain must equal the API's answer and the simulator's truth; the market resumes."""
    assert stack.sim is not None and stack.observers is not None
    stack.sim.fault(action="stall")
    try:
        _settle(stack)
        truth = _truth(stack)
        answers = {}
        for chain in stack.chains:
            answer = httpx.get(
                f"{stack.web_url}/api/v2/options/live",
                params={"underlying": chain.underlying, "expiry": chain.expiry},
                headers={"Cookie": stack.cookie},
                timeout=10,
            )
            data = answer.json().get("data") if answer.status_code in (200, 503) else None
            if not data or not data.get("strikes"):
                report.divergent.append(
                    f"{chain.name}: the API answered HTTP "
                    f"{answer.status_code} without a chain: "
                    f"{answer.text[:300]}"
                )
                continue
            answers[chain] = data
            wrong = _against_truth(data["strikes"], truth[chain.broker])
            if wrong:
                report.divergent.append(
                    f"{chain.name}: the API answer differs from the "
                    f"simulator in {len(wrong)} legs, e.g. {wrong[:3]}"
                )
        deadline = time.monotonic() + timeout
        while True:
            behind = _behind(stack, answers)
            if not behind or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        report.divergent += behind
    finally:
        stack.sim.fault(action="resume")


def _settle(stack: ChaosStack, quiet: float = 1.0, timeout: float = 15.0) -> None:
    """Wait until no chain's snapshot seq moved for ``quiet`` seconds (the market stalled)."""
    last, since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seqs = [(m or {}).get("seq") for m in map(stack.meta, stack.chains)]
        if seqs != last:
            last, since = seqs, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


def _truth(stack: ChaosStack) -> dict[str, dict[str, dict[str, Any]]]:
    assert stack.sim is not None
    instruments = [i for i in stack.sim.state()["instruments"] if i["kind"] == "option"]
    return {
        "dhan": {str(i["security_id"]): i for i in instruments},
        "upstox": {str(i["upstox_key"]): i for i in instruments},
    }


def _behind(stack: ChaosStack, answers: dict[Chain, dict[str, Any]]) -> list[str]:
    assert stack.observers is not None
    out = []
    for client, copy in stack.observers.replicas():
        answer = answers.get(client.chain)
        if answer is None:
            continue
        if copy["seq"] == answer["seq"] and copy["strikes"] == answer["strikes"]:
            continue
        legs = [
            f"{strike} {side}"
            for strike, sides in answer["strikes"].items()
            for side, leg in sides.items()
            if (copy["strikes"].get(strike) or {}).get(side) != leg
        ]
        out.append(
            f"{client.label}: seq {copy['seq']} (API {answer['seq']}), "
            f"{len(legs)} of {sum(map(len, answer['strikes'].values()))} legs differ "
            f"from the API (e.g. {legs[:3]}), connected={copy['connected']}"
        )
    return out


def single_writer(
    stack: ChaosStack, report: FaultReport, since: float, *, timeout: float = 15.0
) -> None:
    """No chain's writer run may come back after another run wrote (flip-flop), in the
    group messages or in what clients saw; the simulator must end with one feed connection
    per account."""
    assert stack.observers is not None
    for chain in stack.chains:
        runs = stack.observers.watcher.runs(chain, since)
        back = _returns(runs)
        if back:
            report.duplicate_writers.append(
                f"{chain.name}: deltas of run(s) {back} came back after another run wrote "
                f"(runs in order: {[short(r) for r in runs]})"
            )
    for client, copy in stack.observers.replicas():
        back = _returns(copy["runs"])
        if back:
            report.duplicate_writers.append(
                f"{client.label} saw run(s) {back} again (runs: {copy['runs']})"
            )
    deadline = time.monotonic() + timeout
    while True:
        counts = stack.connections()
        if all(n == 1 for n in counts.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for broker, n in counts.items():
        if n != 1:
            report.duplicate_writers.append(
                f"the simulator has {n} {broker} feed "
                f"connections for one account, {timeout:g} s "
                "after recovery (want 1)"
            )


def honesty(stack: ChaosStack, report: FaultReport, start: float, end: float) -> None:
    """Record the seconds in [start, end] during which a surface said "live" with no tick for
    more than ``LIVE_GRACE`` seconds, and the first such claim of each kind of surface."""
    assert stack.observers is not None
    claims, seconds = dishonest(
        stack.observers, start, end, grace=LIVE_GRACE, fresh_since=report.empty_store_since
    )
    report.dishonest_seconds = seconds
    firsts: dict[str, Any] = {}
    for claim in claims:
        firsts.setdefault(claim.surface.split(" (")[0].split(" client")[0], claim)
    report.dishonest_examples = [c.describe(report.started) for c in firsts.values()]
    report.notes["api_said"] = api_said(stack, start, end)


def api_said(stack: ChaosStack, start: float, end: float) -> dict[str, list[str]]:
    """What the JSON API said about each chain in [start, end], changes only: its freshness
    state (else its source, else the HTTP status and code), e.g. ["live", "stale", "live"]."""
    assert stack.observers is not None
    out: dict[str, list[str]] = {}
    for sample in stack.observers.sampler.between(start, end):
        if sample.surface != "api":
            continue
        said = sample.said
        word = str(said.get("freshness.state") or said.get("data.source")
                   or f"HTTP {sample.http} {said.get('code', '')}".strip())  # fmt: skip
        seen = out.setdefault(sample.chain.name, [])
        if not seen or seen[-1] != word:
            seen.append(word)
    return out


def finish(
    stack: ChaosStack, report: FaultReport, *, honest_until: float | None = None
) -> FaultReport:
    """The checks every fault ends with: honesty from the start to recovery, a single
    writer since the start, convergence."""
    end = honest_until or report.recovered or time.time()
    honesty(stack, report, report.started, end)
    single_writer(stack, report, report.started)
    if report.recovery_error is None:
        convergence(stack, report)
    return report


def _against_truth(strikes: dict[str, Any], truth: dict[str, dict[str, Any]]) -> list[str]:
    wrong = []
    for strike, sides in strikes.items():
        for side, leg in sides.items():
            real = truth.get(str(leg.get("instrument_id")))
            if real is None:
                wrong.append(f"{strike} {side}: instrument {leg.get('instrument_id')} unknown")
                continue
            for name in FIELDS:
                expected = real[name]
                if isinstance(expected, float):
                    expected = round(expected, 2)
                if leg.get(name) != expected:
                    wrong.append(f"{strike} {side} {name}: {leg.get(name)} != {expected}")
    return wrong


def _returns(runs: list[Any]) -> list[str]:
    """Runs that appear again after another run (A, B, A → [A])."""
    seen: list[Any] = []
    back = []
    for run in runs:
        if run in seen and run != seen[-1]:
            back.append(short(run))
        if not seen or seen[-1] != run:
            seen.append(run)
    return sorted(set(back))


def short(run: Any) -> str:
    """A writer run as failure messages show it."""
    return str(run)[:8] if run is not None else "None"
