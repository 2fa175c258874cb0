"""JSON logs (``LOG_FORMAT=json``) keep the redaction of plain logs, and the monitoring settings
(METRICS_ALLOW, METRICS_TOKEN, LOG_FORMAT) refuse bad values naming the variable."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from brokers.logredact import RedactingFilter, RedactingJsonFormatter
from tests.optionsite.test_settings import load
from tests.processes import ROOT, product_env

# Obviously fake secrets, in the shapes the redaction knows: a JWT (both brokers' tokens), a
# token in a feed URL's query, a bearer header.
FAKE_JWT = "eyJmYWtlIjoidGVzdC1vbmx5In0.ZmFrZS10ZXN0LW9ubHk.c2lnbmF0dXJlLXRlc3Q"
FAKE_QUERY_TOKEN = "FAKE-test-only-feed-token-4711"
FAKE_BEARER = "FAKEbearerTestOnly0815"
SECRETS = (FAKE_JWT, FAKE_QUERY_TOKEN, FAKE_BEARER)
MONITORING = ("METRICS_ALLOW", "METRICS_TOKEN", "LOG_FORMAT")


def json_handler() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(RedactingJsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("tests.json-logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def log_secrets(logger: logging.Logger) -> None:
    url = f"wss://api-feed.dhan.co?version=2&token={FAKE_QUERY_TOKEN}&clientId=1"
    logger.debug("Connecting to %s with %s", url, FAKE_JWT, extra={"feed_url": url})
    try:
        raise RuntimeError(f"refused: Authorization: Bearer {FAKE_BEARER}")
    except RuntimeError:
        logger.exception("The feed failed", extra={"headers": [f"Bearer {FAKE_BEARER}"]})


def test_a_json_record_masks_secrets_in_message_extra_fields_and_exception():
    logger, stream = json_handler()
    log_secrets(logger)
    output = stream.getvalue()
    for secret in SECRETS:
        assert secret not in output
    debug, error = (json.loads(line) for line in output.splitlines())
    assert debug["levelname"] == "DEBUG" and debug["name"] == "tests.json-logs"
    assert "token=***" in debug["message"] and "token=***" in debug["feed_url"]
    assert error["levelname"] == "ERROR" and "RuntimeError" in error["exc_info"]
    assert "Authorization: ***" in error["exc_info"] and error["headers"] == ["Bearer ***"]


@pytest.mark.integration
def test_log_format_json_writes_redacted_json_lines_at_debug(tmp_path):
    script = (
        "import logging, django; django.setup(); "
        "from tests.chains.test_metrics_logs import log_secrets; "
        "log_secrets(logging.getLogger('chains.feed.connection'))"
    )
    env = product_env(LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    env.pop("DATABASE_URL")  # nothing here reads the database
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line["name"] == "chains.feed.connection"]
    assert [line["levelname"] for line in ours] == ["DEBUG", "ERROR"], done.stderr[-2000:]
    for secret in SECRETS:
        assert secret not in done.stderr


def test_monitoring_defaults_expose_nothing_publicly_and_log_plain(monkeypatch):
    for name in MONITORING:
        monkeypatch.delenv(name, raising=False)
    settings = load(monkeypatch)
    assert settings["METRICS_ALLOW"] == ["staff"]
    assert settings["METRICS_ALLOW_NETWORKS"] == []
    assert settings["METRICS_TOKEN"] == ""
    assert settings["LOGGING"]["handlers"]["console"]["formatter"] == "plain"


def test_metrics_allow_takes_addresses_and_networks(monkeypatch):
    settings = load(monkeypatch, METRICS_ALLOW="staff, 10.0.0.0/8,::1")
    assert [str(n) for n in settings["METRICS_ALLOW_NETWORKS"]] == ["10.0.0.0/8", "::1/128"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_ALLOW": "staff,everyone"}, "METRICS_ALLOW entry 'everyone'"),
        ({"METRICS_ALLOW": "10.0.0.300"}, "METRICS_ALLOW entry '10.0.0.300'"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN is shorter than 24"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml': use plain"),
    ],
)
def test_bad_monitoring_settings_name_the_variable(monkeypatch, env, message):
    for name in MONITORING:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ImproperlyConfigured, match=message):
        load(monkeypatch, **env)


def test_log_format_json_selects_the_redacting_json_formatter(monkeypatch):
    settings = load(monkeypatch, LOG_FORMAT="JSON")
    logging_config = settings["LOGGING"]
    assert logging_config["handlers"]["console"]["formatter"] == "json"
    assert logging_config["handlers"]["console"]["filters"] == ["redact"]
    assert logging_config["formatters"]["json"]["()"] == "brokers.logredact.RedactingJsonFormatter"
