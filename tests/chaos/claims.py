"""What the surfaces said, judged: which answers claim "live", say quiet or market closed,
and when a "live" claim was made although no tick had reached the chain. Pure functions over
the observers' records (``observers.Observers``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .observers import Chain, Observers

# Fields whose value "live" claims a chain or feed is live, wherever they sit in an answer:
# ``freshness.state``, ``feed_state`` and a feed's ``state``. ``source`` names where prices come
# from ("live": the feed's snapshot, even while quiet) once an answer carries a ``freshness``;
# in an answer without one it was the only word a reader had, and counts as a claim.
LIVE_KEYS = ("source", "state", "feed_state", "freshness")
SKIP_KEYS = ("strikes", "legs")  # prices, not claims
SAID_KEYS = ("words", "code", "message", "market", "error")  # shown beside the claims
# "Live" is a tick within seconds (the product: 5 s); a surface may lag the last tick this long
# (its status refresh and the WebSocket's status poll included) before a "live" is a lie.
LIVE_GRACE = 8.0
SAMPLE_EVERY = 0.5  # seconds between two polls of the API and the status API


def live_claims(value: Any) -> list[str]:
    """Every ``path=live`` in a JSON value: a field of ``LIVE_KEYS`` whose value is "live"
    (``source`` only when the value carries no ``freshness`` anywhere)."""
    keys = set(LIVE_KEYS) - ({"source"} if _has_key(value, "freshness") else set())
    return _claims(value, "", keys)


def _claims(value: Any, path: str, keys: set[str]) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SKIP_KEYS:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key in keys and item == "live":
                found.append(f"{where}=live")
            elif isinstance(item, dict | list):
                found += _claims(item, where, keys)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found += _claims(item, f"{path}[{n}]", keys)
    return found


def _has_key(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        return name in value or any(
            _has_key(v, name) for k, v in value.items() if k not in SKIP_KEYS
        )
    if isinstance(value, list):
        return any(_has_key(v, name) for v in value)
    return False


def words(value: Any) -> dict[str, Any]:
    """The ``LIVE_KEYS`` fields (and ``code``/``message``) of a JSON value, flattened, for
    failure messages: what a surface said instead of "live"."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SKIP_KEYS:
                continue
            if isinstance(item, dict) and key != "market":
                out.update({f"{key}.{k}": v for k, v in words(item).items()})
            elif key in (*LIVE_KEYS, *SAID_KEYS) and item not in (None, ""):
                out[key] = item
    return out


def says_quiet(said: dict[str, Any]) -> bool:
    """True when what a surface said (``words``) is "quiet" or "no ticks for N s"."""
    values = [str(v).lower() for v in said.values()]
    return any(v == "quiet" for v in values) or any("no tick" in v for v in values)


def says_market_closed(value: Any) -> bool:
    """True when a ``LIVE_KEYS`` field (or a ``code``) of a JSON value says the market is
    closed (``market_closed``, ``market closed``, ``closed``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SKIP_KEYS:
                continue
            if key.rsplit(".", 1)[-1] in (*LIVE_KEYS, "code") and isinstance(item, str):
                text = item.lower().replace("_", " ")
                if text in ("closed", "market closed"):
                    return True
            if isinstance(item, dict | list) and says_market_closed(item):
                return True
    elif isinstance(value, list):
        return any(says_market_closed(item) for item in value)
    return False


def status_rows(status: dict[str, Any], chain: Chain) -> dict[str, Any]:
    """The rows of ``/api/v2/status`` ``data`` about ``chain``: its chain row, its account's
    feed row and the market status its feed worker heard from the broker."""
    rows: dict[str, Any] = {}
    for row in status.get("chains") or []:
        if row.get("underlying") == chain.underlying and row.get("expiry") == chain.expiry:
            rows["chain"] = row
    for row in status.get("feeds") or []:
        if row.get("account") == chain.account:
            rows["feed"] = row
    for row in status.get("accounts") or []:
        if row.get("name") == chain.account and row.get("feed"):
            rows["market"] = row["feed"].get("market")
    return rows


@dataclass
class Claim:
    """A surface saying "live" at ``at`` while the chain's last tick arrived ``age`` s before."""

    at: float
    surface: str
    chain: Chain
    age: float | None
    claims: list[str]
    said: dict[str, Any] = field(default_factory=dict)

    def describe(self, origin: float) -> str:
        age = "no tick seen" if self.age is None else f"last tick {self.age:.1f} s before"
        where = (
            self.surface if self.chain.name in self.surface else f"{self.surface} {self.chain.name}"
        )
        return (
            f"{where} at +{self.at - origin:.1f} s said "
            f"{', '.join(self.claims)} ({age}; said {self.said})"
        )


def claims_timeline(observers: Observers, start: float, end: float) -> list[Claim]:
    """Every moment in [start, end] some surface claimed "live" about a chain: API and status
    samples (each holds until the next), and the WebSocket status each client last received."""
    found: list[Claim] = []
    for sample in observers.sampler.between(start, end):
        if sample.claims:
            found.append(
                Claim(sample.at, sample.surface, sample.chain, None, sample.claims, sample.said)
            )
    for client in observers.clients:
        statuses = client.status_claims()
        for n, (at, claims, said) in enumerate(statuses):
            until = statuses[n + 1][0] if n + 1 < len(statuses) else end
            if not claims or until < start or at > end:
                continue
            # A status holds until the next one: sample it as the API is sampled.
            t = max(at, start)
            while t <= min(until, end):
                found.append(
                    Claim(t, f"websocket {client.label}", client.chain, None, claims, said)
                )
                t += SAMPLE_EVERY
    return found


def dishonest(
    observers: Observers,
    start: float,
    end: float,
    *,
    grace: float,
    fresh_since: float | None = None,
) -> tuple[list[Claim], float]:
    """The live claims in [start, end] made although no tick had reached the chain for more
    than ``grace`` seconds (no delta with legs in its group, no newer data from the API); and
    the seconds during which any surface made one (the union over surfaces, in 0.1 s steps).
    ``fresh_since``: when the store came back empty, which counts as evidence of new state."""
    bad = []
    changes = {c: observers.sampler.data_changes(c) for c in observers.chains}
    for claim in claims_timeline(observers, start, end):
        # A change first shown by the sample at ``shown`` happened after the sample before it
        # (``after``): when that was before the claim, the tick may have come as late as the
        # claim itself, so the evidence counts up to min(shown, claim).
        seen = [min(shown, claim.at) for after, shown in changes[claim.chain] if after < claim.at]
        heard = observers.watcher.last_before(claim.chain, claim.at)
        evidence = [*seen[-1:], *([heard] if heard is not None else [])]
        if fresh_since is not None and fresh_since <= claim.at:
            evidence.append(fresh_since)  # the store restarted empty: all it serves is newer
        last = max(evidence, default=None)
        age = None if last is None else claim.at - last
        if age is None or age > grace:
            claim.age = age
            bad.append(claim)
    steps = {int(c.at * 10) for c in bad}
    # Each sample stands for the SAMPLE_EVERY seconds that follow it.
    covered: set[int] = set()
    for step in steps:
        covered.update(range(step, step + int(SAMPLE_EVERY * 10)))
    covered = {s for s in covered if s <= end * 10}
    return sorted(bad, key=lambda c: c.at), len(covered) / 10
