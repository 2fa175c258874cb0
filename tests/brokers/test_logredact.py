"""The redacting log filter masks every kind of secret in every part of a record, on every
handler the settings install; daphne's access lines go through it."""

from __future__ import annotations

import io
import logging
import sys
import types

import pytest
from django.conf import settings

from brokers import logredact
from brokers.logredact import REDACTED, RedactingAccessLog, RedactingFilter, redact
from brokers.secret import Secret

FAKE_JWT = "eyJhbGciOiJIUzUxMiJ9.eyJmYWtlIjoidGVzdC1vbmx5In0.ZmFrZS1zaWduYXR1cmU"
FAKE_TOKEN = "FAKE-token-test-only-7a1b"
FAKE_CODE = "FAKEcode0test1only"
FAKE_SECRET = "FAKE-api-secret-test-only"
FAKE_NOTIFIER = "FAKEnotifierSecret_test-only-0123456789"


@pytest.mark.parametrize(
    "text, secret",
    [
        (f"GET /?version=2&token={FAKE_TOKEN}&clientId=1&authType=2 HTTP/1.1", FAKE_TOKEN),
        (f"wss://feed.example.test/v3?requestId=r1&code={FAKE_CODE}", FAKE_CODE),
        (f"GET /brokers/upstox/callback?code={FAKE_CODE}&state=s1 HTTP/1.1", FAKE_CODE),
        (f"> Authorization: Bearer {FAKE_TOKEN}", FAKE_TOKEN),
        (f"> access-token: {FAKE_TOKEN}", FAKE_TOKEN),
        (f"Authorization: Basic {FAKE_TOKEN}", FAKE_TOKEN),
        (f"headers={{'access-token': '{FAKE_TOKEN}'}}", FAKE_TOKEN),
        (f"[('access-token', '{FAKE_TOKEN}'), ('Accept', 'application/json')]", FAKE_TOKEN),
        (f"code={FAKE_CODE}&client_id=k&client_secret={FAKE_SECRET}&grant_type=x", FAKE_SECRET),
        (f"code={FAKE_CODE}&client_id=k&client_secret={FAKE_SECRET}", FAKE_CODE),
        (f'{{"client_secret": "{FAKE_SECRET}"}}', FAKE_SECRET),
        (f'POST /brokers/upstox/notifier/{FAKE_NOTIFIER}/ HTTP/1.1" 404', FAKE_NOTIFIER),
        (f"https://site.test/brokers/upstox/notifier/{FAKE_NOTIFIER}/", FAKE_NOTIFIER),
        (f"/login?next=/x%3Ftoken%3D{FAKE_TOKEN}%26a%3Db", FAKE_TOKEN),
        (f"the feed said {FAKE_JWT} is bad", FAKE_JWT),
        (f"token: {FAKE_JWT}", FAKE_JWT),
    ],
)
def test_redact_masks_each_shape(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert REDACTED in masked


def test_redact_keeps_ordinary_text():
    text = "GET /api/v2/chains/NIFTY?expiry=2026-12-03&grant_type=authorization_code HTTP/1.1"
    assert redact(text) == text


def test_a_revealed_secret_is_masked_verbatim_anywhere():
    secret = Secret("FAKE-verbatim-secret-test-only-42")
    assert "FAKE-verbatim" in f"x {secret.reveal()} y"
    assert redact(f"x {secret.reveal()} y") == f"x {REDACTED} y"


def test_short_values_are_not_remembered():
    logredact.remember("abc1")
    assert redact("abc1 is a word") == "abc1 is a word"


def record(msg, *args, exc_info=None):
    return logging.LogRecord("some.library", logging.DEBUG, __file__, 1, msg, args, exc_info)


def emitted(rec: logging.LogRecord) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.handle(rec)
    return stream.getvalue()


def test_filter_masks_the_formatted_message_when_the_secret_is_an_argument():
    text = emitted(record("connecting to %s?token=%s", "wss://x", FAKE_TOKEN))
    assert FAKE_TOKEN not in text and "wss://x?token=***" in text


def test_filter_masks_a_secret_split_between_format_and_dict_args():
    text = emitted(record("> GET %(path)s HTTP/1.1", {"path": f"/?token={FAKE_TOKEN}"}))
    assert FAKE_TOKEN not in text


def test_filter_handles_non_string_arguments():
    text = emitted(record("%d frames, %r, %s", 3, {"Authorization": f"Bearer {FAKE_TOKEN}"}, None))
    assert FAKE_TOKEN not in text and "3 frames" in text


def test_filter_masks_a_message_that_is_not_a_string():
    text = emitted(record(ValueError(f"refused url=/x?code={FAKE_CODE}")))
    assert FAKE_CODE not in text and "code=***" in text


def test_filter_masks_arguments_that_do_not_fit_the_format(capsys):
    text = emitted(record("one %s and %s", f"token={FAKE_TOKEN}"))
    assert FAKE_TOKEN not in text + capsys.readouterr().err
    assert "token=***" in text


def test_filter_masks_exception_text_and_stack():
    try:
        raise ConnectionError(f"handshake failed for /?token={FAKE_TOKEN}")
    except ConnectionError:
        rec = record("feed lost", exc_info=sys.exc_info())
    rec.stack_info = f"Stack (most recent call last):\n  connect('/?token={FAKE_TOKEN}')"
    text = emitted(rec)
    assert "ConnectionError" in text and "token=***" in text
    assert FAKE_TOKEN not in text


def test_every_configured_handler_redacts():
    """Every handler that writes, on the root logger and on any logger the settings (or Django)
    set up, carries the filter."""
    handlers = set(logging.getLogger().handlers)
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            handlers.update(logger.handlers)
    handlers = {
        h
        for h in handlers
        if "pytest" not in type(h).__module__ and not isinstance(h, logging.NullHandler)
    }  # pytest's capture handlers; NullHandler writes nothing
    assert handlers, "no handler configured"
    for handler in handlers:
        assert any(isinstance(f, RedactingFilter) for f in handler.filters), handler
    assert settings.LOGGING_CONFIG == "brokers.logredact.configure_logging"


def test_a_secret_logged_by_any_library_is_masked_in_the_console_output():
    root_handler = next(
        h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)
    )
    stream = io.StringIO()
    old = root_handler.setStream(stream)
    try:
        logging.getLogger("websockets.client").warning("> GET /?token=%s HTTP/1.1", FAKE_TOKEN)
        logging.getLogger("django.request").warning(
            "Not Found: /brokers/upstox/notifier/%s/", FAKE_NOTIFIER
        )
    finally:
        root_handler.setStream(old)
    text = stream.getvalue()
    assert "token=***" in text and "notifier/***/" in text
    assert FAKE_TOKEN not in text and FAKE_NOTIFIER not in text


@pytest.mark.parametrize("logger", ["websockets", "websockets.client", "asyncio"])
def test_protocol_loggers_stay_at_warning(logger):
    assert logging.getLogger(logger).getEffectiveLevel() >= logging.WARNING


@pytest.mark.parametrize("logger", ["aiohttp", "daphne", "daphne.access"])
def test_server_loggers_stay_at_info(logger):
    assert logging.getLogger(logger).getEffectiveLevel() >= logging.INFO


def test_daphne_access_lines_go_through_logging_masked(caplog):
    access = RedactingAccessLog(sys.stdout)
    with caplog.at_level(logging.INFO, logger="daphne.access"):
        access("http", "complete", {"client": "127.0.0.1:5000", "method": "POST", "status": 404,
                                    "path": f"/brokers/upstox/notifier/{FAKE_NOTIFIER}/",
                                    "size": 10})  # fmt: skip
        access("websocket", "connecting", {"client": "127.0.0.1:5001", "path": "/ws/chain/"})
    lines = [r.getMessage() for r in caplog.records if r.name == "daphne.access"]
    assert len(lines) == 2
    assert "404" in lines[0] and "WSCONNECTING /ws/chain/" in lines[1]
    # caplog's handler sits on the root logger, next to the console one: the filter of the
    # console handler ran first only if it is reached first, so check redaction directly too.
    assert FAKE_NOTIFIER not in emitted(caplog.records[0])


def test_routing_replaces_daphnes_access_log_writer(monkeypatch):
    # A stand-in for daphne.cli: importing the real one would install Twisted's reactor here.
    cli = types.ModuleType("daphne.cli")
    cli.AccessLogGenerator = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "daphne.cli", cli)
    logredact.route_daphne_access_log()
    assert cli.AccessLogGenerator is RedactingAccessLog  # type: ignore[attr-defined]


def test_routing_fails_loudly_when_daphne_moved_its_writer(monkeypatch):
    monkeypatch.setitem(sys.modules, "daphne.cli", types.ModuleType("daphne.cli"))
    with pytest.raises(RuntimeError, match="access lines would not be redacted"):
        logredact.route_daphne_access_log()


def test_routing_does_nothing_outside_daphnes_command_line(monkeypatch):
    monkeypatch.delitem(sys.modules, "daphne.cli", raising=False)
    logredact.route_daphne_access_log()
    assert "daphne.cli" not in sys.modules
