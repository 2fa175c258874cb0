"""The product wired to the test simulator, trimmed so REST primes stay fast."""

from __future__ import annotations

import io
from datetime import date

from django.core.management import call_command

from brokers.models import BrokerAccount, TrackedChain
from chains.plan import nearest_expiries
from tests.sim_process import RunningSimulator

# The one chain each simulator account keeps tracking (simaccounts gives each its own).
UNDERLYING = {"sim-dhan": "NIFTY", "sim-upstox": "BANKNIFTY"}


def wire(sim: RunningSimulator) -> None:
    """Accounts sim-dhan and sim-upstox on ``sim`` (masters loaded), each tracking one
    underlying (``UNDERLYING``) with one expiry: DhanHQ allows one option chain per 3 s."""
    call_command("simaccounts", url=sim.url, stdout=io.StringIO())
    for account, underlying in UNDERLYING.items():
        TrackedChain.objects.filter(account__name=account).exclude(underlying=underlying).delete()
    TrackedChain.objects.update(expiries=1)


def tracked_chain(account: str) -> tuple[str, date]:
    """(underlying, nearest expiry) of the chain ``account`` tracks after ``wire``."""
    underlying = UNDERLYING[account]
    expiry = nearest_expiries(BrokerAccount.objects.get(name=account), underlying, 1)[0]
    return underlying, expiry
