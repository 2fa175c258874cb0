"""Prometheus metrics (``/metrics``): this web process's own instruments, and the records every
process shares.

``registry`` holds

- this process's instruments below: open live sockets, resyncs, channel-layer gaps it saw, and
  the API's latency (``chains.api_http``, ``chains.consumers``, ``chains.socket_guard`` update
  them; each web process counts its own, so Prometheus scrapes every web process);
- ``chains.metrics.shared.SharedCollector``, read at each scrape: every feed worker's status
  record in Redis (ticks, frames, decode errors, reconnects, backoff, lock holder, flush and
  tick-to-publish histograms, history recording), the accounts' tokens, the periodic tasks' last
  outcomes, the cluster's channel-layer gaps and the exchange calendar;
- the process collector (CPU, memory, open files of this process).

``chains.metrics.views.metrics`` serves it to the clients ``METRICS_ALLOW`` lets in.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from .shared import SharedCollector

registry = CollectorRegistry()
ProcessCollector(registry=registry)
registry.register(SharedCollector())

OPEN_SOCKETS = Gauge(
    "optionsite_web_open_websockets",
    "Live chain WebSockets open in this web process (admitted, not yet closed).",
    registry=registry,
)
RESYNCS = Counter(
    "optionsite_web_resyncs",
    "Snapshots sent to open live sockets again (after a gap, a feed restart, or on request).",
    registry=registry,
)
CHANNEL_GAPS = Counter(
    "optionsite_web_channel_gaps",
    "Deltas found missing by this web process's sockets (the channel layer dropped them).",
    registry=registry,
)
API_SECONDS = Histogram(
    "optionsite_api_request_duration_seconds",
    "JSON API requests of this web process, from the request to the answer.",
    ["endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=registry,
)
