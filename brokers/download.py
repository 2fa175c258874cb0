"""Downloading an instrument master: only public addresses, no redirect to another host, capped.

A master URL can be typed by staff (an account's master URL, ``loadinstruments --url``), so a
download must not become a way to reach the machine's own network:

- every address the host resolves to must be public (not private, loopback, link-local,
  shared, multicast, reserved or unspecified), unless the host is in ``BROKER_HOST_ALLOWLIST``
  (the local simulator in the demo and the tests). The check runs before the request and
  again on the address each connection is made to, so a name that resolves differently the
  second time is caught too;
- a redirect is followed only on the same host;
- the body is refused once it is larger than ``INSTRUMENT_MASTER_MAX_DOWNLOAD_BYTES`` (before
  reading, when the server announces its length). What the body decompresses to is capped by
  the loader (``brokers.masters.master_content``).
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from collections.abc import Callable
from typing import IO

import httpcore
import httpx

from .endpoints import host_allowed
from .exceptions import InstrumentLoadError

DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)
MAX_REDIRECTS = 5
ALLOWLIST_SETTING = "BROKER_HOST_ALLOWLIST"
DOWNLOAD_SETTING = "INSTRUMENT_MASTER_MAX_DOWNLOAD_MB"
MB = 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_refusal(address: IPAddress) -> str | None:
    """Why a download may not connect to ``address`` (e.g. "a loopback address"), or None when
    it is a public address. An IPv4 address written as IPv6 (``::ffff:127.0.0.1``) is judged as
    the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def _mb(size: int) -> str:
    return f"{size / MB:g} MB"


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order (an IP literal: itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def public_addresses(host: str, port: int) -> list[str]:
    """The addresses a download to ``host`` may connect to, in order.

    An allowlisted host is returned as it is (the system connects as usual). Otherwise every
    address it resolves to must be public: raises InstrumentLoadError naming the address, its
    class and the setting; httpcore.ConnectError when the name does not resolve.
    """
    if host_allowed(host):
        return [host]
    addresses = _resolve(host, port)
    for text in addresses:
        reason = address_refusal(ipaddress.ip_address(text.split("%", 1)[0]))
        if reason is not None:
            where = "that is" if host == text else f"it resolves to {text},"
            raise InstrumentLoadError(
                f"Refused to download the instrument master from {host!r}: {where} {reason}. A "
                f"master is fetched only from public addresses, unless its host is in "
                f"{ALLOWLIST_SETTING} (add it there if it really is your broker's or your "
                "simulator's host)."
            )
    return addresses


class _PublicOnlyBackend(httpcore.SyncBackend):
    """Connects only to the addresses ``public_addresses`` passes, trying each in turn."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in public_addresses(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # public_addresses returns at least one address or raises
        raise failure


def _transport() -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport()
    # httpx has no public way to hand httpcore a network backend; its pool is replaced by the
    # same pool with the backend that checks every address it connects to (TLS still checks
    # the certificate against the URL's host: httpcore takes that from the request).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        network_backend=_PublicOnlyBackend(),
    )
    return transport


def _same_host_only(origin: httpx.URL) -> Callable[[httpx.Request], None]:
    def check(request: httpx.Request) -> None:
        if origin.scheme == "https" and request.url.scheme != "https":
            raise InstrumentLoadError(
                f"Refused the instrument master download from {origin.host!r}: it redirected "
                f"from https to {request.url.scheme}. Set the account's master URL to the "
                "file's final https address."
            )
        if request.url.host != origin.host:
            raise InstrumentLoadError(
                f"Refused the instrument master download from {origin.host!r}: it redirected to "
                f"another host ({request.url.host!r}). Set the account's master URL to the "
                "file's final address on a host you trust."
            )

    return check


def _declared_length(headers: httpx.Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def download(
    url: str,
    dest: IO[bytes],
    *,
    max_bytes: int,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> int:
    """Stream ``url`` into ``dest`` (the bytes as sent: a gzip body stays gzip); returns bytes
    written. ``on_progress(bytes_so_far, total_or_None)`` is called per chunk.

    Raises InstrumentLoadError with the URL's host and what to do for a refused address, a
    redirect to another host, a body larger than ``max_bytes``, an HTTP error status or a
    network error.
    """
    target = httpx.URL(url)
    if target.scheme not in {"http", "https"} or not target.host:
        raise InstrumentLoadError(
            f"Cannot download the instrument master from {url!r}: give an http(s):// URL."
        )
    try:
        public_addresses(target.host, target.port or (443 if target.scheme == "https" else 80))
    except httpcore.ConnectError as exc:
        raise InstrumentLoadError(
            f"Downloading the instrument master from {url} failed: {exc}. Check the network "
            "and the account's master URL."
        ) from exc
    written = 0
    try:
        with (
            httpx.Client(
                transport=_transport(),
                timeout=DOWNLOAD_TIMEOUT,
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                headers={"Accept-Encoding": "identity"},  # stored as sent: no decoding here
                event_hooks={"request": [_same_host_only(target)]},
            ) as client,
            client.stream("GET", url) as resp,
        ):
            if resp.status_code != 200:
                raise InstrumentLoadError(
                    f"Downloading the instrument master from {url} failed: HTTP "
                    f"{resp.status_code}. Check the account's master URL or try again later."
                )
            encoding = resp.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in {"identity", "gzip", "x-gzip"}:
                raise InstrumentLoadError(
                    f"The instrument master at {url} came with Content-Encoding {encoding}, "
                    "which cannot be read (plain or gzip only)."
                )
            total = _declared_length(resp.headers)
            if total is not None and total > max_bytes:
                raise _too_large(url, max_bytes)
            for chunk in resp.iter_raw():
                written += len(chunk)
                if written > max_bytes:
                    raise _too_large(url, max_bytes)
                dest.write(chunk)
                if on_progress is not None:
                    on_progress(written, total)
    except httpx.HTTPError as exc:
        raise InstrumentLoadError(
            f"Downloading the instrument master from {url} failed: {exc.__class__.__name__}: "
            f"{exc}. Check the network and the account's master URL."
        ) from exc
    dest.flush()
    dest.seek(0)
    return written


def _too_large(url: str, max_bytes: int) -> InstrumentLoadError:
    return InstrumentLoadError(
        f"Refused the instrument master at {url}: it is larger than {_mb(max_bytes)} "
        f"({DOWNLOAD_SETTING}). Check the URL; raise the setting only if the broker's master "
        "really grew that large."
    )
