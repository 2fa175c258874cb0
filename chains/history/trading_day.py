"""Which trading day a chain's data is from: the exchange's "today", not the server's.

The feed worker follows each exchange's clock, read from the exchange timestamps it decodes
(``chains.feed.history``), and says in its feed status the latest minute it recorded
(``history_last_minute``, exchange time). That minute's day is the day the chain's history is
being written for: today on a real market; the simulated day on a simulator running another
day (the demo outside market hours). Without a recorded minute (no feed worker reporting, or
nothing recorded yet by it) the day is the server's today in IST.
"""

from __future__ import annotations

from datetime import date, datetime

from brokers.exchange import IST

from .. import store


def trading_day(account: str, *, today: date) -> date:
    """The day (IST) of the latest minute the feed worker of ``account`` recorded, else
    ``today``. Raises what reading Redis raises (the API answers 503 for an outage)."""
    status = store.read_feed_status(account)
    if status is None or status["history_last_minute"] is None:
        return today
    return datetime.fromisoformat(status["history_last_minute"]).astimezone(IST).date()
