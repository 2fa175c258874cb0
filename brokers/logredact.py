"""The one place that knows what a secret looks like in text: masking it in messages and logs.

Pure Python (no Django). ``redact(text)`` replaces with ``***``:

* ``token=``, ``code=``, ``client_secret=`` (and similar keys) in a query string or form body,
  also percent-encoded (``token%3D``) inside another URL's query;
* the ``Authorization`` and ``access-token`` headers, ``Bearer <x>`` anywhere, and such keys in
  JSON or Python reprs (``"access_token": "..."``, ``('access-token', '...')``);
* the secret segment of the Upstox notifier path (``/brokers/upstox/notifier/<secret>/``);
* JWT-shaped strings (``eyJ...``): DhanHQ and Upstox access tokens are JWTs;
* verbatim, every secret this process has revealed (``remember``; ``Secret.reveal`` calls it)
  and any ``secrets`` passed in.

``RedactingFilter`` applies it to every log record a handler emits (settings.LOGGING installs it
on every handler), whatever library wrote the record; ``RedactingJsonFormatter`` writes records
as JSON (``LOG_FORMAT=json``) and redacts every string it adds. ``RedactingAccessLog`` sends
daphne's access lines, which daphne writes straight to a stream, through logging instead
(``configure_logging``, settings.LOGGING_CONFIG, installs it).
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.json import JsonFormatter

REDACTED = "***"

# Secrets shorter than this are not masked verbatim: they would mask ordinary words.
MIN_REMEMBERED = 8
# How many revealed secrets a process keeps for verbatim masking (oldest forgotten first).
MAX_REMEMBERED = 256

_SENSITIVE_KEYS = (
    r"access[_-]?token|accesstoken|extended[_-]?token|extendedtoken|refresh[_-]?token|"
    r"id[_-]?token|token|client[_-]?secret|clientsecret|api[_-]?secret|code|authorization|"
    r"password"
)
# "key": "value", 'key': 'value', ('key', 'value'): JSON, dict and header-tuple reprs.
_QUOTED_KEY = re.compile(
    rf"""(?i)(["'](?:{_SENSITIVE_KEYS}|access-token)["']\s*[:,]\s*["'])[^"']*(["'])"""
)
# key=value in a query or form; key%3Dvalue inside another URL's (percent-encoded) query.
_QUERY_OR_FORM = re.compile(
    rf"(?i)(?:(?<=%3F)|(?<=%26)|\b)((?:{_SENSITIVE_KEYS})(?:=|%3D))(?:(?!%26)[^&\s\"'#,;<>])+"
)
_HEADER = re.compile(
    r"(?i)\b((?:access-token|authorization)\s*:\s*)(?:(?:bearer|basic|token)\s+)?[^\s,;&\"']+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/=]+")
_NOTIFIER_PATH = re.compile(r"(?i)(/upstox/notifier/)[^/?#\s\"'<>]+")
# A JWT's header segment is short (base64 of a small JSON object): bounding it, and matching
# possessively, keeps every attempt short, so text made of many "eyJ"s (a request line an
# attacker sends) costs linear time, not quadratic.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,512}+\.[A-Za-z0-9_-]{4,}+(?:\.[A-Za-z0-9_-]*+)?")

_remembered: dict[str, None] = {}  # insertion-ordered set
_remembered_lock = threading.Lock()


def remember(secret: str) -> None:
    """Mask ``secret`` verbatim in every later ``redact`` of this process (ignored when shorter
    than MIN_REMEMBERED characters; the oldest of more than MAX_REMEMBERED is forgotten)."""
    if len(secret) < MIN_REMEMBERED:
        return
    with _remembered_lock:
        _remembered.pop(secret, None)
        _remembered[secret] = None
        while len(_remembered) > MAX_REMEMBERED:
            del _remembered[next(iter(_remembered))]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every secret replaced by ``***`` (see the module docstring).

    ``secrets`` are removed verbatim (values shorter than 4 characters are ignored), as is
    every value given to ``remember``; then everything that looks like a secret.
    """
    with _remembered_lock:
        known = list(_remembered)
    for secret in (*secrets, *known):
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    text = _QUOTED_KEY.sub(rf"\g<1>{REDACTED}\g<2>", text)
    text = _HEADER.sub(rf"\g<1>{REDACTED}", text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _NOTIFIER_PATH.sub(rf"\g<1>{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _QUERY_OR_FORM.sub(rf"\g<1>{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in every record and never drops one.

    The message is %-formatted first and the result redacted (a secret split between the
    format string and an argument is still caught), then ``args`` are cleared; exception and
    stack text are formatted and redacted into ``exc_text``/``stack_info``. A record whose
    arguments do not fit its format string keeps both, redacted, in its message (logging's own
    error report would otherwise print them raw).
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # arguments that do not fit the format
            message = f"{record.msg!s} (log arguments: {record.args!r})"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


class RedactingJsonFormatter(JsonFormatter):
    """``LOG_FORMAT=json``: one JSON object a line (python-json-logger), every string in it
    redacted. The handler's RedactingFilter has masked the message and the exception text by
    then; this also covers what the JSON formatter adds by itself: ``extra`` fields of the
    record and the exception it formats again from ``exc_info``."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: _redact_value(value) for key, value in log_data.items()}


access_logger = logging.getLogger("daphne.access")


class RedactingAccessLog:
    """daphne's access-log writer (``daphne.access.AccessLogGenerator``'s interface) that logs
    each line to the ``daphne.access`` logger at INFO instead of writing to a stream, so that
    the handlers' RedactingFilter masks its paths (notifier secret, OAuth ``code``)."""

    def __init__(self, stream: Any = None) -> None:
        # The stream daphne would have written to is unused: logging's handlers decide.
        self.stream = stream

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        client = details.get("client") or "-"
        if protocol == "http" and action == "complete":
            access_logger.info(
                '%s "%s %s" %s %s',
                client,
                details["method"],
                details["path"],
                details["status"],
                details["size"],
            )
        elif protocol == "websocket" and action in _WS_ACTIONS:
            access_logger.info('%s "%s %s"', client, _WS_ACTIONS[action], details["path"])


_WS_ACTIONS = {
    "connecting": "WSCONNECTING",
    "rejected": "WSREJECT",
    "connected": "WSCONNECT",
    "disconnected": "WSDISCONNECT",
}


def configure_logging(config: dict[str, Any]) -> None:
    """``settings.LOGGING_CONFIG``: apply ``config`` (``logging.config.dictConfig``), then
    route daphne's access lines through logging (``route_daphne_access_log``)."""
    logging.config.dictConfig(config)
    route_daphne_access_log()


def route_daphne_access_log() -> None:
    """Under daphne's command line, make it log access lines through ``RedactingAccessLog``.

    daphne builds its access-log writer from ``daphne.cli.AccessLogGenerator`` after it has
    imported the ASGI application (which sets Django, and so logging, up): replacing that name
    then is in time. Does nothing in processes daphne's command line did not start (importing
    it would install Twisted's reactor). Raises RuntimeError when daphne no longer has that
    name (an upgrade moved it): its access lines would carry secrets unmasked.
    """
    cli = sys.modules.get("daphne.cli")
    if cli is None:
        return
    if not hasattr(cli, "AccessLogGenerator"):
        raise RuntimeError(
            "daphne.cli.AccessLogGenerator is gone (daphne was upgraded): its access lines "
            "would not be redacted; adapt brokers.logredact.route_daphne_access_log."
        )
    cli.AccessLogGenerator = RedactingAccessLog  # type: ignore[attr-defined]
