"""``/metrics`` (chains.metrics): who may read it (METRICS_ALLOW, METRICS_TOKEN), and a real
scrape over HTTP of a running daphne while a real feed worker follows the simulator, parsed with
prometheus_client's own parser."""

from __future__ import annotations

import ipaddress
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from brokers import connections
from chains.feed.status import Counters, Histogram
from chains.metrics.shared import histogram_buckets
from chains.metrics.views import REFUSED
from chains.outcomes import CHECK_TOKENS, record_outcome
from tests.chains.feed.conftest import wait_ready
from tests.chains.fixtures import tracked
from tests.chains.test_freshness import feed_record, write_feed
from tests.processes import daphne, eventually, free_port, runfeed

TOKEN = "fake-metrics-token-test-only-0123456789"
ORIGIN = "http://127.0.0.1:8000"  # the test settings' PUBLIC_BASE_URL: sockets are accepted from it


def samples(text: str) -> dict[str, list[Any]]:
    """Every sample of a scrape by sample name (``_total``, ``_bucket`` … included)."""
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The one sample ``name`` with ``labels`` (among others) in a scrape."""
    matching = [
        s
        for s in samples(text).get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, f"{name} {labels}: {matching}"
    return float(matching[0].value)


# --- access ---------------------------------------------------------------------------------------


@pytest.fixture
def open_settings(settings):
    settings.METRICS_ALLOW = ["staff"]
    settings.METRICS_ALLOW_NETWORKS = []
    settings.METRICS_TOKEN = ""
    return settings


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_redis")
class TestAccess:
    def test_anonymous_is_refused_by_default_with_what_to_set(self, open_settings):
        response = Client().get("/metrics")
        assert response.status_code == 403
        assert response.content.decode() == REFUSED
        assert "METRICS_ALLOW" in REFUSED and "METRICS_TOKEN" in REFUSED
        assert b"optionsite_" not in response.content

    def test_a_user_who_is_not_staff_is_refused(self, open_settings):
        client = Client()
        client.force_login(get_user_model().objects.create_user("trader", password="pw-test"))
        assert client.get("/metrics").status_code == 403

    def test_staff_may_read_it(self, open_settings):
        client = Client()
        client.force_login(
            get_user_model().objects.create_user("ops", password="pw-test", is_staff=True)
        )
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        assert "optionsite_metrics_store_up 1.0" in response.content.decode()

    def test_staff_is_refused_when_metrics_allow_does_not_list_staff(self, open_settings):
        open_settings.METRICS_ALLOW = ["10.0.0.0/8"]
        open_settings.METRICS_ALLOW_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
        client = Client()
        client.force_login(
            get_user_model().objects.create_user("ops", password="pw-test", is_staff=True)
        )
        assert client.get("/metrics").status_code == 403

    def test_the_bearer_token_lets_in_and_a_wrong_one_is_refused(self, open_settings):
        open_settings.METRICS_TOKEN = TOKEN
        assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
        assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403

    def test_a_bearer_token_is_refused_while_none_is_set(self, open_settings):
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
        assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 403

    def test_listed_networks_let_in_by_the_client_address(self, open_settings):
        open_settings.METRICS_ALLOW = ["staff", "10.1.0.0/16"]
        open_settings.METRICS_ALLOW_NETWORKS = [ipaddress.ip_network("10.1.0.0/16")]
        assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
        assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 403

    def test_behind_a_proxy_the_address_the_proxy_saw_counts(self, open_settings):
        open_settings.CLIENT_IP_PROXY_COUNT = 1
        open_settings.METRICS_ALLOW = ["127.0.0.1"]
        open_settings.METRICS_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.1")]
        # Through the proxy on this machine: the connection is loopback, the client is not.
        proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
        assert proxied.get("/metrics").status_code == 403
        # A client's own forged entry left of the proxy's is not trusted either.
        forged = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.9")
        assert forged.get("/metrics").status_code == 403
        assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200  # direct

    def test_only_get_is_answered(self, open_settings):
        open_settings.METRICS_TOKEN = TOKEN
        auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
        assert Client().post("/metrics", **auth).status_code == 405


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_redis")
class TestShared:
    """The shared records as the collector reads them from the test Redis and database."""

    @pytest.fixture
    def scrape(self, open_settings, tmp_path):
        open_settings.METRICS_TOKEN = TOKEN
        tracked(tmp_path, "dhan")  # the enabled account "main"

        def get() -> str:
            response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
            assert response.status_code == 200
            return response.content.decode()

        return get

    def test_an_account_without_a_feed_worker_is_down_and_not_running(self, scrape):
        text = scrape()
        assert value(text, "optionsite_feed_up", account="main") == 0
        assert value(text, "optionsite_feed_live", account="main") == 0
        assert value(text, "optionsite_feed_state", account="main", state="not running") == 1
        assert "optionsite_feed_lock_held" not in samples(text)
        assert value(text, "optionsite_account_enabled", account="main") == 1

    def test_a_reporting_worker_shows_its_counters_lock_and_histograms(self, scrape):
        write_feed("main", feed_record(now=datetime.now(UTC), state="backoff",
                                       retry_at=None, reconnects=3))  # fmt: skip
        text = scrape()
        assert value(text, "optionsite_feed_up", account="main") == 1
        assert value(text, "optionsite_feed_backoff", account="main") == 1
        assert value(text, "optionsite_feed_reconnects_total", account="main") == 3
        assert value(text, "optionsite_feed_ticks_total", account="main") == 9000
        assert value(text, "optionsite_feed_lock_held", account="main", pid="4242") == 1
        assert value(text, "optionsite_feed_flush_seconds_bucket", account="main", le="0.01") == 3
        assert value(text, "optionsite_feed_flush_seconds_count", account="main") == 4
        assert value(text, "optionsite_feed_publish_lag_seconds_sum", account="main") == 0.8

    def test_a_worker_whose_heartbeat_is_gone_is_down_and_holds_no_lock(self, scrape):
        stale = datetime.now(UTC) - timedelta(minutes=5)
        write_feed("main", feed_record(now=stale))
        text = scrape()
        assert value(text, "optionsite_feed_up", account="main") == 0
        assert value(text, "optionsite_feed_lock_held", account="main", pid="4242") == 0

    def test_while_redis_does_not_answer_the_scrape_says_so(self, scrape, monkeypatch):
        dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=1)
        monkeypatch.setattr(connections, "_sync_client", dead)
        text = scrape()
        assert value(text, "optionsite_metrics_store_up") == 0
        assert "optionsite_feed_up" not in samples(text)
        assert value(text, "optionsite_account_enabled", account="main") == 1  # the database's


def test_a_status_histogram_counts_each_value_in_the_first_bucket_it_fits():
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 7.0):  # a bound belongs to its own bucket ("le")
        histogram.observe(seconds)
    assert histogram.to_json() == {"bounds": [0.1, 1.0], "counts": [2, 2, 1], "sum": 8.65,
                                   "count": 5}  # fmt: skip


def test_a_flush_observes_its_duration_and_the_lag_of_its_newest_tick_once():
    counters = Counters()
    counters.flushed(seconds=0.002, published=True)  # no tick yet: no lag
    assert counters.publish_lag_seconds.to_json()["count"] == 0
    counters.last_tick_at = time.time() - 0.3
    counters.flushed(seconds=0.004, published=True)
    counters.flushed(seconds=0.001, published=True)  # the same newest tick: not again
    lag = counters.publish_lag_seconds.to_json()
    assert lag["count"] == 1 and lag["sum"] >= 0.3
    counters.last_tick_at = time.time()
    counters.flushed(seconds=0.001, published=False)  # Redis refused it: not published
    assert counters.publish_lag_seconds.to_json()["count"] == 1
    assert counters.flush_seconds.to_json()["count"] == 4


def test_status_record_histograms_become_cumulative_prometheus_buckets():
    data = {"bounds": [0.1, 1.0], "counts": [2, 3, 1], "sum": 4.2, "count": 6}
    assert histogram_buckets(data) == [("0.1", 2), ("1.0", 5), ("+Inf", 6)]  # type: ignore[arg-type]


# --- a real scrape --------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_scrape_of_a_running_stack_shows_the_feed_the_lock_and_task_outcomes(wired):
    with record_outcome(CHECK_TOKENS) as outcome:  # what the Celery task records
        outcome.add("all tokens valid")
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    env = {"METRICS_TOKEN": TOKEN, "CHAINS_PUBLIC": "1"}
    with runfeed("sim-dhan") as feed, daphne(port, **env) as web:

        def scrape() -> str | None:
            try:
                response = httpx.get(f"{site}/metrics", headers=auth, timeout=5)
            except httpx.HTTPError:
                assert web.process.poll() is None, web.output()[-3000:]
                return None
            assert response.status_code == 200, response.text
            return response.text

        wait_ready("sim-dhan", timeout=90)
        assert feed.process.poll() is None, feed.output()[-3000:]
        first = eventually(scrape, timeout=60, what="daphne answers /metrics")
        assert httpx.get(f"{site}/metrics", timeout=5).status_code == 403  # no token: refused
        ticks = value(first, "optionsite_feed_ticks_total", account="sim-dhan")
        assert ticks > 0
        eventually(
            lambda: (
                value(scrape() or "", "optionsite_feed_ticks_total", account="sim-dhan") > ticks
            ),
            timeout=60,
            what="the feed's ticks counter to grow between scrapes",
        )
        text = scrape() or ""
        assert value(text, "optionsite_feed_up", account="sim-dhan") == 1
        [holder] = samples(text)["optionsite_feed_lock_held"]
        assert holder.labels["account"] == "sim-dhan" and holder.value == 1
        assert holder.labels["pid"] == str(feed.process.pid)  # the worker holding the lock
        assert value(text, "optionsite_task_last_outcome", task=CHECK_TOKENS, outcome="ok") == 1
        assert value(text, "optionsite_task_last_outcome", task=CHECK_TOKENS, outcome="failed") == 0
        flushes = value(text, "optionsite_feed_flush_seconds_count", account="sim-dhan")
        assert flushes > 0
        top = value(text, "optionsite_feed_flush_seconds_bucket", account="sim-dhan", le="+Inf")
        assert top == flushes
        assert value(text, "optionsite_feed_publish_lag_seconds_count", account="sim-dhan") > 0
        assert value(text, "optionsite_feed_decode_errors_total", account="sim-dhan") == 0
        assert value(text, "optionsite_feed_backoff", account="sim-dhan") == 0
        # This web process's own: an API request in its latency histogram, an open socket and
        # the resync it asked for.
        live = httpx.get(f"{site}/api/v2/options/live?underlying=NIFTY", timeout=10)
        assert live.status_code == 200
        text = scrape() or ""
        latency = "optionsite_api_request_duration_seconds_count"
        assert value(text, latency, endpoint="live", status="200") == 1
        assert value(text, "optionsite_web_open_websockets") == 0
        socket_url = f"ws://127.0.0.1:{port}/ws/live-options/NIFTY"
        with connect(socket_url, origin=ORIGIN, open_timeout=30, max_size=None) as socket:
            assert json.loads(socket.recv(timeout=30))["type"] == "snapshot"
            eventually(lambda: value(scrape() or "", "optionsite_web_open_websockets") == 1,
                       what="the open socket counted")  # fmt: skip
            socket.send(json.dumps({"type": "resync"}))
            eventually(lambda: value(scrape() or "", "optionsite_web_resyncs_total") >= 1,
                       what="the resync counted")  # fmt: skip
        eventually(lambda: value(scrape() or "", "optionsite_web_open_websockets") == 0,
                   what="the closed socket uncounted")  # fmt: skip
