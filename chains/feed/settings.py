"""Timings of the feed worker (settings ``FEED_*`` override the defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FeedSettings:
    """Every duration the feed worker waits for, in seconds.

    ``lock_ttl`` and ``lock_margin`` make the one-writer rule (``chains.ownership``): the holder
    renews every ``status_interval`` and stops writing ``lock_margin`` seconds before its lock
    could expire; a standby polls at most every ``lock_poll``. The feed status lives as long
    as the lock (``lock_ttl``), so it can never outlive the holder it describes.
    """

    flush_interval: float = 0.25
    status_interval: float = 1.0
    persist_interval: float = 300.0
    liveness_timeout: float = 60.0
    ping_interval: float = 10.0
    quiet_after: float = 5.0
    backoff_base: float = 0.5  # the first retry after a working connection waits ≤ 0.5 s
    backoff_cap: float = 30.0
    crash_pause: float = 1.0  # the least pause before a failed worker restarts its feed
    token_poll_interval: float = 2.0
    lock_ttl: float = 10.0
    lock_margin: float = 3.0
    lock_poll: float = 1.0
    open_timeout: float = 10.0
    # A frame backlog still yields to the event loop this often (flushes, status, the lock).
    yield_every: float = 0.05
    # Intraday history (``chains.feed.history``): a minute bar per chain per minute (setting
    # HISTORY_RECORDING), and how many minutes may wait for the database before new ones are
    # dropped (gaps).
    history_recording: bool = True
    history_queue_minutes: int = 30
