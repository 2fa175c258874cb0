"""Exchange time: Indian Standard Time and the moment an option expiry ends.

Pure (no Django): the broker codecs, the instrument masters, the chain analytics and the
simulator all read the exchange's clock from here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")
EXPIRY_CUTOFF = time(15, 30)  # options expire at the close, 15:30 IST


def expiry_moment(expiry: date) -> datetime:
    """The instant an expiry ends: 15:30 IST on the day, as an aware UTC datetime."""
    return datetime.combine(expiry, EXPIRY_CUTOFF, tzinfo=IST).astimezone(UTC)
