"""The example alert rules and scrape configuration in deploy/prometheus: every rule names
metrics ``/metrics`` serves, and, where Prometheus' ``promtool`` is installed (Debian:
apt-get install prometheus), the files pass ``promtool check`` and the rules' unit tests
(deploy/prometheus/alerts.test.yml: feed not live in market hours, token expiring, lag)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from chains.metrics import registry
from chains.metrics.shared import FEED_COUNTERS, FEED_HISTOGRAMS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (apt-get install prometheus)"
REQUIRED_ALERTS = {
    "OptionsiteFeedNotLive",
    "OptionsiteTokenExpiringSoon",
    "OptionsitePublishLagHigh",
}


def rules() -> dict[str, str]:
    """Each alert's name and the text of its rule (the YAML is read by promtool below; this
    plain split needs no YAML library)."""
    blocks = re.split(r"^\s*- alert: ", ALERTS.read_text(), flags=re.M)[1:]
    return {block.split("\n", 1)[0].strip(): block for block in blocks}


def served_names() -> set[str]:
    """Every sample name /metrics can serve (the shared collector's families by their names)."""
    names = {
        sample_name
        for family in registry.collect()
        for sample_name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    names |= {f"{name}_total" for _, name, _ in FEED_COUNTERS}
    names |= {f"{name}_bucket" for _, name, _ in FEED_HISTOGRAMS}
    return names


def test_the_rules_file_has_the_alerts_the_product_needs_each_explained():
    found = rules()
    assert set(found) >= REQUIRED_ALERTS
    for name, rule in found.items():
        for part in ("expr:", "summary:", "description:", "severity:"):
            assert part in rule, f"{name} has no {part}"


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_redis")
def test_every_metric_a_rule_uses_is_served(tmp_path):
    from tests.chains.fixtures import tracked
    from tests.chains.test_freshness import feed_record, write_feed

    tracked(tmp_path, "dhan")  # an account, so that the per-account families have samples
    write_feed("main", feed_record())
    served = served_names()
    for name, rule in rules().items():
        expr = rule.split("expr:", 1)[1].split("labels:", 1)[0]
        used = set(re.findall(r"\b(optionsite_[a-z_]+)", expr))
        assert used, name
        assert used <= served, f"{name} uses {used - served}, not served"


@pytest.mark.integration
@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    checked = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts.test.yml"], cwd=DEPLOY,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


@pytest.mark.integration
@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_example_scrape_configuration():
    checked = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", "prometheus.yml"],
        cwd=DEPLOY, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.integration
@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_refuses_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(ALERTS.read_text().replace("> 2", "> > 2", 1))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(broken)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode != 0
