"""Removing tokens and secrets from text before it reaches a message or a log.

What a secret looks like in text is known in one place, ``brokers.logredact``; this module
names it for the HTTP plumbing.
"""

from __future__ import annotations

from brokers.logredact import REDACTED, redact

__all__ = ["REDACTED", "redact"]
