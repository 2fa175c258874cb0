"""Removing tokens and secrets from text before it reaches a message or a log."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"

_SENSITIVE_KEYS = (
    r"access[_-]?token|accesstoken|extended[_-]?token|extendedtoken|token|"
    r"client[_-]?secret|clientsecret|code|authorization|password"
)
_QUOTED_KEY = re.compile(rf"""(?i)(["'](?:{_SENSITIVE_KEYS})["']\s*:\s*["'])[^"']*(["'])""")
_QUERY_OR_FORM = re.compile(rf"(?i)\b((?:{_SENSITIVE_KEYS})=)[^&\s\"'#,;]+")
_HEADER = re.compile(r"(?i)\b((?:access-token|authorization)\s*:\s*)(?:bearer\s+)?[^\s,;&\"']+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/=]+")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every secret replaced by ``***``.

    Removes the given ``secrets`` verbatim (values shorter than 4 characters are ignored), plus
    anything that looks like one: ``token=``/``code=``/``client_secret=`` in a query or form,
    the ``access-token`` and ``Authorization`` headers, ``Bearer <x>``, and JSON keys such as
    ``"access_token": "..."``.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _QUOTED_KEY.sub(rf"\g<1>{REDACTED}\g<2>", text)
    text = _HEADER.sub(rf"\g<1>{REDACTED}", text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    return _QUERY_OR_FORM.sub(rf"\g<1>{REDACTED}", text)
