"""The expiry switcher's labels: "09 Dec · 3d · W". Pure Python, no Django.

Days to expiry count calendar days from today in IST (0d on the expiry day itself). Weekly or
monthly follows the exchanges' rule, applied to the expiries the instrument master lists for
the underlying: the last listed expiry of a month is that month's monthly contract, every
earlier one in the month is a weekly. (The rule needs every listed expiry, not only those
tracked: with only the nearest two tracked, the second may be a weekly.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from brokers.exchange import IST

WEEKLY, MONTHLY = "W", "M"


@dataclass(frozen=True, slots=True)
class ExpiryLabel:
    """One expiry of the switcher: its day, calendar days left, W or M, and the label."""

    day: date
    days_left: int
    kind: str  # WEEKLY or MONTHLY

    @property
    def label(self) -> str:
        return f"{self.day:%d %b} · {self.days_left}d · {self.kind}"

    @property
    def title(self) -> str:
        """The label in words (the link's tooltip and accessible name)."""
        kind = "weekly" if self.kind == WEEKLY else "monthly"
        left = "expires today" if self.days_left == 0 else f"{self.days_left} days to expiry"
        return f"{self.day:%d %b %Y}, {kind}, {left}"


def monthly_expiries(listed: Iterable[date]) -> set[date]:
    """The monthly expiries among ``listed`` (every expiry the master lists for one
    underlying): the last of each month."""
    last: dict[tuple[int, int], date] = {}
    for day in listed:
        key = (day.year, day.month)
        if key not in last or day > last[key]:
            last[key] = day
    return set(last.values())


def expiry_labels(
    shown: Sequence[date], *, listed: Iterable[date], now: datetime
) -> list[ExpiryLabel]:
    """Labels of the ``shown`` expiries, in their order. ``listed`` is every expiry the master
    lists for the underlying (it decides W/M); ``now`` is aware. Raises ValueError when an
    expiry shown is not listed, or is already over (before today in IST): the switcher would
    show a wrong label."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (e.g. django.utils.timezone.now())")
    listed = set(listed)
    monthly = monthly_expiries(listed)
    today = now.astimezone(IST).date()
    labels = []
    for day in shown:
        if day not in listed:
            raise ValueError(f"expiry {day.isoformat()} is not in the listed expiries")
        if day < today:
            raise ValueError(f"expiry {day.isoformat()} is before today ({today.isoformat()})")
        kind = MONTHLY if day in monthly else WEEKLY
        labels.append(ExpiryLabel(day=day, days_left=(day - today).days, kind=kind))
    return labels
