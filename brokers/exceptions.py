"""Exceptions of the broker layer. Pure Python: importable without Django."""

from __future__ import annotations


class CodecError(ValueError):
    """A broker frame could not be decoded; carries where and what."""

    def __init__(
        self,
        message: str,
        *,
        offset: int,
        code: int | None = None,
        length: int | None = None,
        events: list[object] | None = None,
    ) -> None:
        self.offset = offset
        self.code = code
        self.length = length
        # Events decoded from the same frame before the bad packet: a caller loses nothing.
        self.events: list[object] = events if events is not None else []
        detail = f"offset={offset}"
        if code is not None:
            detail += f" code={code}"
        if length is not None:
            detail += f" length={length}"
        super().__init__(f"{message} ({detail})")


class BrokerError(Exception):
    """A broker call failed; `permanent` says whether retrying can help."""

    def __init__(
        self,
        message: str,
        *,
        broker: str,
        permanent: bool,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.message = message
        self.broker = broker
        self.permanent = permanent
        self.code = code
        self.http_status = http_status
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild explicitly so Celery can pickle the error.
        return (
            _rebuild_broker_error,
            (self.message, self.broker, self.permanent, self.code, self.http_status),
        )

    def __str__(self) -> str:
        parts = [self.broker]
        if self.code:
            parts.append(self.code)
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        kind = "permanent" if self.permanent else "transient"
        return f"{self.message} [{', '.join(parts)}; {kind}]"


def _rebuild_broker_error(
    message: str, broker: str, permanent: bool, code: str | None, http_status: int | None
) -> BrokerError:
    return BrokerError(
        message, broker=broker, permanent=permanent, code=code, http_status=http_status
    )


class EndpointRefused(BrokerError):
    """A broker URL refused by BROKER_HOST_ALLOWLIST or the https/wss rule: nothing was sent."""

    CODE = "endpoint-refused"

    def __init__(self, message: str, *, broker: str) -> None:
        super().__init__(message, broker=broker, permanent=True, code=self.CODE)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_endpoint_refused, (self.message, self.broker))


def _rebuild_endpoint_refused(message: str, broker: str) -> EndpointRefused:
    return EndpointRefused(message, broker=broker)


class PayloadError(ValueError):
    """A broker answer did not have the documented shape."""


class UnknownBrokerKind(LookupError):
    """A broker kind that no adapter is registered for."""


class InstrumentFileError(ValueError):
    """An instrument master file is malformed; carries the row number and reason."""

    def __init__(self, message: str, *, row: int | None = None) -> None:
        self.row = row
        self.reason = message
        super().__init__(f"row {row}: {message}" if row is not None else message)


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY."""


class InstrumentLoadError(RuntimeError):
    """An instrument master could not be loaded (download failed, would break chains, empty)."""


class FeedConfigError(RuntimeError):
    """The feed cannot start: a misconfiguration a person must fix (the message says how)."""


class TokenCheckFailed(RuntimeError):
    """A token check found accounts a person must attend to (the message lists them)."""


class InstrumentRefreshFailed(RuntimeError):
    """The daily master refresh could not load every account's master (the message lists them)."""


class LoginError(RuntimeError):
    """A broker login (OAuth callback) failed; the message says why and what to do."""


class NotifierRefused(ValueError):
    """A POST to the Upstox token notifier was refused (never carries the token)."""
