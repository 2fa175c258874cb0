"""The metrics every process shares, read at each scrape: feed workers (their status records in
Redis), accounts and tokens, the periodic tasks' last outcomes (database), the cluster's
channel-layer gaps (Redis) and the exchange calendar.

Feed workers and Celery are separate processes that already publish what they do (the feed
status record, ``chains.feed.status``; ``TaskOutcome``): reading those records makes any web
process's ``/metrics`` show every worker, with nothing to scrape on the workers themselves. A
feed worker's counters restart from 0 when it restarts (Prometheus' ``rate`` handles resets).

While Redis does not answer, the Redis-backed families are left out and
``optionsite_metrics_store_up`` is 0 (the scrape itself succeeds: an alert can say why).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from brokers.calendar import market_state_now
from brokers.exchange import Exchange
from brokers.models import BrokerAccount

from .. import freshness, store
from ..feed.status import FeedStatus, HistogramJSON
from ..models import TaskOutcome
from ..selectors import account_problem
from ..status_selectors import _token_left

logger = logging.getLogger(__name__)

# Counters of the feed status record: (record key, metric name without "_total", help).
FEED_COUNTERS = (
    ("ticks", "optionsite_feed_ticks", "Ticks applied to the chains."),
    ("frames", "optionsite_feed_frames", "Broker WebSocket frames received."),
    ("decode_errors", "optionsite_feed_decode_errors", "Malformed frames, skipped."),
    ("reconnects", "optionsite_feed_reconnects", "Broker WebSocket reconnections."),
    ("crashes", "optionsite_feed_crashes", "Tasks of the worker that died (restarted)."),
    ("publish_errors", "optionsite_feed_publish_errors", "Chain publications Redis refused."),
    ("store_errors", "optionsite_feed_store_errors", "Other Redis failures of the worker."),
    ("deltas", "optionsite_feed_deltas", "Chain deltas published."),
    ("unrouted", "optionsite_feed_unrouted_ticks", "Ticks for no followed contract."),
    ("rest_legs", "optionsite_feed_rest_legs", "Legs changed by REST chains handed over."),
    ("history_bars", "optionsite_feed_history_bars", "Minute bars of history written."),
    ("history_errors", "optionsite_feed_history_errors", "History writes failed (gaps)."),
)
# Histograms of the feed status record: (record key, metric name, help).
FEED_HISTOGRAMS = (
    ("flush_seconds", "optionsite_feed_flush_seconds", "Duration of flushes that had changes."),
    (
        "publish_lag_seconds",
        "optionsite_feed_publish_lag_seconds",
        "From the arrival of a flush's newest tick to the end of its publication.",
    ),
)
OUTCOMES = ("ok", "failed", "running")


def histogram_buckets(data: HistogramJSON) -> list[tuple[str, float]]:
    """Prometheus' cumulative (le, count) buckets, "+Inf" last, of a status-record histogram."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip([*data["bounds"], float("inf")], data["counts"], strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return buckets


class SharedCollector(Collector):
    """Reads the shared records at each scrape (see the module's docstring)."""

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on the records: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        accounts = list(BrokerAccount.objects.order_by("name"))
        yield from _accounts(accounts, now)
        yield from _tasks()
        yield from _market(now)
        store_up = GaugeMetricFamily(
            "optionsite_metrics_store_up",
            "1 when Redis answered this scrape (feed and gap metrics are left out while not).",
        )
        try:
            feeds = {a.name: store.read_feed_status(a.name) for a in accounts if a.enabled}
            gaps = store.channel_gaps()
        except RedisError as exc:
            logger.warning("Metrics: Redis does not answer, feed metrics left out: %s", exc)
            store_up.add_metric([], 0)
            yield store_up
            return
        store_up.add_metric([], 1)
        yield store_up
        yield CounterMetricFamily(
            "optionsite_channel_gaps",
            "Deltas found missing by the sockets of every web process (channel layer drops).",
            value=gaps,
        )
        yield from _feeds(feeds, now)


def _accounts(accounts: list[BrokerAccount], now: datetime) -> Iterator[Metric]:
    enabled = GaugeMetricFamily(
        "optionsite_account_enabled", "1 for an enabled broker account.", labels=["account"]
    )
    problem = GaugeMetricFamily(
        "optionsite_account_problem",
        "1 when an enabled account cannot feed (no token, token expired or refused, disabled "
        "by an error): /status/ says what to do.",
        labels=["account"],
    )
    expires = GaugeMetricFamily(
        "optionsite_token_expires_in_seconds",
        "Seconds until the account's access token expires (absent: no token, refused, or "
        "its expiry unknown).",
        labels=["account"],
    )
    for account in accounts:
        enabled.add_metric([account.name], 1 if account.enabled else 0)
        if account.enabled:
            problem.add_metric([account.name], 1 if account_problem(account, now) else 0)
        seconds, _ = _token_left(account, now)
        if seconds is not None:
            expires.add_metric([account.name], seconds)
    yield from (enabled, problem, expires)


def _tasks() -> Iterator[Metric]:
    outcome = GaugeMetricFamily(
        "optionsite_task_last_outcome",
        "1 for the last outcome (ok, failed, running) of each periodic task.",
        labels=["task", "outcome"],
    )
    finished = GaugeMetricFamily(
        "optionsite_task_last_finished_timestamp_seconds",
        "When each periodic task's last run ended (Unix time).",
        labels=["task"],
    )
    for row in TaskOutcome.objects.order_by("name"):
        last = "running" if row.ok is None else ("ok" if row.ok else "failed")
        for name in OUTCOMES:
            outcome.add_metric([row.name, name], 1 if name == last else 0)
        if row.finished_at is not None:
            finished.add_metric([row.name], row.finished_at.timestamp())
    yield from (outcome, finished)


def _market(now: datetime) -> Iterator[Metric]:
    market = GaugeMetricFamily(
        "optionsite_market_open",
        "1 while the exchange's regular session runs (exchange calendar).",
        labels=["exchange"],
    )
    for exchange in Exchange:
        market.add_metric([exchange.value], 1 if market_state_now(exchange, now=now).is_open else 0)
    yield market


def _feeds(feeds: dict[str, FeedStatus | None], now: datetime) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "optionsite_feed_up",
        "1 while the account's feed worker reports (a status record with a fresh heartbeat).",
        labels=["account"],
    )
    live = GaugeMetricFamily(
        "optionsite_feed_live",
        "1 while the account's feed is live: connected, holding the lock, a tick within seconds.",
        labels=["account"],
    )
    connected = GaugeMetricFamily(
        "optionsite_feed_connected",
        "1 while the feed worker holds the lock, reports on time and its broker socket is open.",
        labels=["account"],
    )
    state = GaugeMetricFamily(
        "optionsite_feed_state",
        "1 for the feed worker's state as /status/ judges it (live, quiet, backoff, "
        "token_wait, not reporting, …).",
        labels=["account", "state"],
    )
    backoff = GaugeMetricFamily(
        "optionsite_feed_backoff",
        "1 while the worker waits before its next connection attempt.",
        labels=["account"],
    )
    retry = GaugeMetricFamily(
        "optionsite_feed_retry_in_seconds",
        "Seconds until the next connection attempt (in backoff only).",
        labels=["account"],
    )
    lock = GaugeMetricFamily(
        "optionsite_feed_lock_held",
        "1 when the reporting worker (pid, broker) held the account's feed lock at its last "
        "heartbeat: the lock holder.",
        labels=["account", "pid", "broker"],
    )
    heartbeat = GaugeMetricFamily(
        "optionsite_feed_heartbeat_age_seconds",
        "Seconds since the feed worker's last status record.",
        labels=["account"],
    )
    rate = GaugeMetricFamily(
        "optionsite_feed_ticks_per_second",
        "Ticks per second, as the worker measured them.",
        labels=["account"],
    )
    recording = GaugeMetricFamily(
        "optionsite_feed_history_recording",
        "1 when the worker records minute history (HISTORY_RECORDING).",
        labels=["account"],
    )
    counters = {
        key: CounterMetricFamily(name, text, labels=["account"])
        for key, name, text in FEED_COUNTERS
    }
    histograms = {
        key: HistogramMetricFamily(name, text, labels=["account"])
        for key, name, text in FEED_HISTOGRAMS
    }
    for account, feed in feeds.items():
        health = freshness.feed_health(feed, now=now, account=account)
        reporting = feed is not None and health.state != "not reporting"
        up.add_metric([account], 1 if reporting else 0)
        live.add_metric([account], 1 if health.feed_state == "live" else 0)
        connected.add_metric([account], 1 if health.connected else 0)
        state.add_metric([account, health.state], 1)
        if feed is None:
            continue
        labels = [account]
        if health.heartbeat_age is not None:
            heartbeat.add_metric(labels, health.heartbeat_age)
        in_backoff = feed["state"] == "backoff"
        backoff.add_metric(labels, 1 if in_backoff and reporting else 0)
        retry_at = freshness.parse_time(feed["retry_at"]) if feed["retry_at"] else None
        if in_backoff and retry_at is not None:
            retry.add_metric(labels, max(0.0, (retry_at - now).total_seconds()))
        held = feed["lock_held"] and reporting
        lock.add_metric([account, str(feed["pid"]), feed["broker"] or ""], 1 if held else 0)
        rate.add_metric(labels, feed["ticks_per_second"])
        recording.add_metric(labels, 1 if feed["history_recording"] else 0)
        for key, _, _ in FEED_COUNTERS:
            counters[key].add_metric(labels, feed[key])  # type: ignore[literal-required]
        for key, _, _ in FEED_HISTOGRAMS:
            data: HistogramJSON = feed[key]  # type: ignore[literal-required]
            histograms[key].add_metric(labels, histogram_buckets(data), data["sum"])
    yield from (up, live, connected, state, backoff, retry, lock, heartbeat, rate, recording)
    yield from counters.values()
    yield from histograms.values()
