"""Where a request comes from: the browser origin a WebSocket may be opened from, and the client
address that login throttling counts.

A WebSocket handshake is not covered by CSRF protection: a page on any site can open one to this
site and the browser sends the user's session cookie with it. The defence is the ``Origin``
header, which a browser sets and a page cannot change. It must be one of the site's public
origins, compared as scheme, host and port: an ``http://`` page of the same host (which anyone on
the network path can forge) or a page on another port of it is another origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http import HttpRequest

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """A web origin: scheme (``http``/``https``), host name (lower case) and port."""

    scheme: str
    host: str
    port: int


def parse_origin(value: str) -> Origin | None:
    """Return the origin of ``value`` (an Origin header or a URL), or None when it has none.

    None for ``null`` (sandboxed pages, file: URLs), a scheme other than http/https, a missing
    host or an unparsable port.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:  # a port that is not a number, or a malformed IPv6 host
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


class OriginPattern(NamedTuple):
    """An allowed origin; a host starting with ``.`` also matches its subdomains."""

    scheme: str
    host: str
    port: int

    def matches(self, origin: Origin) -> bool:
        if (origin.scheme, origin.port) != (self.scheme, self.port):
            return False
        if self.host.startswith("."):
            return origin.host == self.host[1:] or origin.host.endswith(self.host)
        return origin.host == self.host


def public_origins(*, public_base_url: str, trusted_origins: Iterable[str]) -> list[OriginPattern]:
    """The origins pages of this site are served from: PUBLIC_BASE_URL's, and each of
    DJANGO_CSRF_TRUSTED_ORIGINS (``https://*.example.com`` covers the subdomains, as in
    Django's CSRF check).

    Raises ValueError naming the setting when an entry is not an http(s) origin (settings
    validate both at startup, so this only fires on a value set after it).
    """
    patterns: list[OriginPattern] = []
    for name, value in [
        ("PUBLIC_BASE_URL", public_base_url),
        *(("DJANGO_CSRF_TRUSTED_ORIGINS", v) for v in trusted_origins),
    ]:
        wildcard = "://*." in value
        origin = parse_origin(value.replace("://*.", "://", 1) if wildcard else value)
        if origin is None:
            raise ValueError(f"{name} entry {value!r} is not an http(s) origin")
        host = "." + origin.host if wildcard else origin.host
        patterns.append(OriginPattern(origin.scheme, host, origin.port))
    return patterns


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, not an address
        return False


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def origin_allowed(scope: dict[str, Any], allowed: Iterable[OriginPattern]) -> bool:
    """True when the WebSocket handshake in ``scope`` comes from an allowed origin.

    Allowed: an Origin header matching one of ``allowed`` in scheme, host and port; or, for a
    site reached on a loopback address (development, tests, a local-only run), the connection's
    own origin — the Origin equals the scheme and Host of this very connection, which only the
    site's own pages on this machine have. A missing or ``null`` Origin is refused: browsers
    always send one, and a non-browser client can send the site's public origin.
    """
    raw = _header(scope, b"origin")
    origin = parse_origin(raw) if raw is not None else None
    if origin is None:
        return False
    if any(pattern.matches(origin) for pattern in allowed):
        return True
    host_header = _header(scope, b"host")
    if host_header is None:
        return False
    # ASGI: "scheme" is optional in a websocket scope and defaults to "ws".
    scheme = "https" if scope.get("scheme", "ws") == "wss" else "http"
    own = parse_origin(f"{scheme}://{host_header}")
    return own is not None and _is_loopback(own.host) and own == origin


class PublicOriginValidator:
    """ASGI middleware: a WebSocket whose handshake fails :func:`origin_allowed` is closed
    before the application sees it (HTTP 403 to the handshake)."""

    def __init__(self, application: Any, allowed: Iterable[OriginPattern]) -> None:
        self.application = application
        self.allowed = list(allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("PublicOriginValidator guards WebSocket connections only")
        if origin_allowed(scope, self.allowed):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def site_origin_validator(application: Any) -> PublicOriginValidator:
    """:class:`PublicOriginValidator` for this site's settings (PUBLIC_BASE_URL and
    DJANGO_CSRF_TRUSTED_ORIGINS)."""
    return PublicOriginValidator(
        application,
        public_origins(
            public_base_url=settings.PUBLIC_BASE_URL,
            trusted_origins=settings.CSRF_TRUSTED_ORIGINS,
        ),
    )


def client_ip(request: HttpRequest) -> str | None:
    """The client address login throttling counts (django-axes' AXES_CLIENT_IP_CALLABLE).

    With ``DJANGO_PROXY_COUNT`` = N > 0 (default 1 behind DJANGO_BEHIND_TLS_PROXY), the N-th
    address from the right of X-Forwarded-For: the one the outermost of this site's own proxies
    saw. Entries left of it are whatever the client sent and are never trusted. Without proxies,
    or when the header holds fewer entries (the request did not pass the proxies), the address
    of the connection. None when neither is known. (daphne's ``--proxy-headers`` takes the
    leftmost entry instead, which the client chooses: this site does not rely on it.)
    """
    return forwarded_client(
        request.META.get("HTTP_X_FORWARDED_FOR", ""), request.META.get("REMOTE_ADDR")
    )


def scope_client_ip(scope: dict[str, Any]) -> str | None:
    """``client_ip``'s rule for an ASGI scope (the WebSocket's per-address socket cap)."""
    forwarded = b",".join(v for k, v in scope.get("headers", ()) if k == b"x-forwarded-for")
    client = scope.get("client")
    return forwarded_client(forwarded.decode("latin-1"), str(client[0]) if client else None)


def forwarded_client(forwarded: str, remote: str | None) -> str | None:
    """The address ``client_ip`` trusts, from an X-Forwarded-For value and the connection's."""
    count: int = settings.CLIENT_IP_PROXY_COUNT
    if count > 0:
        hops = [a.strip() for a in forwarded.split(",") if a.strip()]
        if len(hops) >= count:
            return hops[-count]
    return remote
