"""What a chain writer follows: its account's tracked chains resolved from the instrument master.

Synchronous Django code (the worker calls it through ``sync_to_async``). Every problem a person
must fix raises ``FeedConfigError`` with a message that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from django.utils import timezone

from brokers.accounts import load_account
from brokers.adapters import InstrumentRef
from brokers.exceptions import FeedConfigError
from brokers.exchange import IST, expiry_moment
from brokers.models import BrokerAccount, Instrument, InstrumentKind, TrackedChain

from .book import ChainBook
from .leg import LegSpec

__all__ = [
    "ChainPlan",
    "InstrumentRef",
    "LegPlan",
    "chain_plans",
    "nearest_expiries",
    "plan_chains",
]


@dataclass(frozen=True, slots=True)
class LegPlan:
    ref: InstrumentRef
    strike: float
    option_type: str


@dataclass
class ChainPlan:
    """One (underlying, expiry) chain to follow: its index, legs and strike window."""

    underlying: str
    expiry: date
    index: InstrumentRef
    lot_size: int
    window: int | None
    legs: list[LegPlan] = field(default_factory=list)

    def strikes(self) -> list[float]:
        return sorted({leg.strike for leg in self.legs})

    def new_book(self) -> ChainBook:
        """An empty chain book of exactly this plan's legs."""
        return ChainBook(
            underlying=self.underlying,
            expiry=self.expiry,
            index_instrument=self.index.broker_id,
            legs=[LegSpec(g.ref.broker_id, g.strike, g.option_type) for g in self.legs],
            lot_size=self.lot_size,
        )

    def narrowed(self, spot: float | None) -> ChainPlan:
        """The plan cut to ``window`` strikes each side of the strike nearest ``spot``.

        Without a window, or without a spot to centre it on, every strike is kept.
        """
        strikes = self.strikes()
        if self.window is None or spot is None or spot <= 0 or not strikes:
            return self
        atm = min(range(len(strikes)), key=lambda i: abs(strikes[i] - spot))
        keep = set(strikes[max(0, atm - self.window) : atm + self.window + 1])
        legs = [leg for leg in self.legs if leg.strike in keep]
        return ChainPlan(self.underlying, self.expiry, self.index, self.lot_size, self.window, legs)


def nearest_expiries(
    account: BrokerAccount, underlying: str, count: int, *, now: datetime | None = None
) -> list[date]:
    """The ``count`` nearest option expiries of ``underlying`` that have not expired (15:30 IST)."""
    now = now or timezone.now()
    today = now.astimezone(IST).date()
    expiries = (
        Instrument.objects.filter(
            account=account, underlying=underlying, kind=InstrumentKind.OPTION, expiry__gte=today
        )
        .values_list("expiry", flat=True)
        .distinct()
        .order_by("expiry")
    )
    live = [e for e in expiries if expiry_moment(e) > now]
    return live[:count]


def plan_chains(account: BrokerAccount, *, now: datetime | None = None) -> list[ChainPlan]:
    """Every chain the account's enabled tracked chains ask for, with all listed strikes.

    Raises FeedConfigError when the account tracks nothing, or a tracked underlying has no
    unexpired options in the instrument master.
    """
    tracked = list(
        TrackedChain.objects.filter(account=account, enabled=True).select_related(
            "index_instrument"
        )
    )
    if not tracked:
        raise FeedConfigError(
            f"Broker account {account.name!r} tracks no chain: add one in admin → Tracked chains."
        )
    plans: list[ChainPlan] = []
    for chain in tracked:
        expiries = nearest_expiries(account, chain.underlying, chain.expiries, now=now)
        if not expiries:
            raise FeedConfigError(
                f"Tracked chain {chain.underlying} on {account.name!r} has no unexpired options "
                f"in the instrument master: run `python manage.py loadinstruments --account "
                f"{account.name}`."
            )
        index = InstrumentRef(chain.index_instrument.segment, chain.index_instrument.broker_id)
        options = Instrument.objects.filter(
            account=account,
            underlying=chain.underlying,
            kind=InstrumentKind.OPTION,
            expiry__in=expiries,
        ).values_list("expiry", "segment", "broker_id", "strike", "option_type", "lot_size")
        by_expiry: dict[date, ChainPlan] = {
            e: ChainPlan(chain.underlying, e, index, 0, chain.strike_window) for e in expiries
        }
        for expiry, segment, broker_id, strike, option_type, lot_size in options:
            plan = by_expiry[expiry]
            plan.legs.append(LegPlan(InstrumentRef(segment, broker_id), float(strike), option_type))
            plan.lot_size = plan.lot_size or lot_size
        plans.extend(by_expiry.values())
    return plans


def chain_plans(name: str) -> list[ChainPlan]:
    """The plans of account ``name`` (FeedConfigError when it cannot feed or tracks nothing)."""
    return plan_chains(load_account(name))
