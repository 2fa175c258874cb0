"""Instrument-master limits: download and content caps, one record's size, redirects, address
classes, binary files. Downloads go over real sockets to a local HTTP server."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import ipaddress
import socket
import threading
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command

from brokers.download import _same_host_only, address_refusal
from brokers.exceptions import InstrumentLoadError
from brokers.models import Instrument

from .factories import (
    DHAN_COMPACT_HEADER,
    csv_bytes,
    dhan_account,
    dhan_compact_rows,
    json_bytes,
    next_thursday,
    upstox_account,
    upstox_records,
)

pytestmark = pytest.mark.django_db
EXPIRY = next_thursday(date(2026, 11, 21))
STRIKES = [25900, 25950, 26000, 26050, 26100]
MB = 1024 * 1024


def gzip_of_one_huge_string(size: int) -> bytes:
    """A small .json.gz whose one record holds a ``size``-byte string (compressed in chunks)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    parts = [packer.compress(b'[{"segment": "NSE_INDEX", "name": "')]
    chunk = b"a" * MB
    for _ in range(size // MB):
        parts.append(packer.compress(chunk))
    parts.append(packer.compress(b'"}]'))
    parts.append(packer.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = gzip_of_one_huge_string(150 * MB)
    assert len(data) < 400 * 1024  # a ~150 KB file
    return data


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True


@dataclass
class Server:
    url: str
    routes: dict[str, Route]
    hits: Counter[str]


def _serve(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[Server]:
    hits: Counter[str] = Counter()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            hits[self.path] += 1
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.content_length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            # The client may stop reading: that is what a cap does.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            """Quiet: the test output is the assertion."""

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://{host}:{server.server_address[1]}", routes, hits)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Route]], Server]]:
    started: list[Iterator[Server]] = []

    def start(routes: dict[str, Route]) -> Server:
        gen = _serve(routes)
        started.append(gen)
        return next(gen)

    yield start
    for gen in started:
        gen.close()


@pytest.fixture
def loopback_allowed(settings):
    settings.BROKER_HOST_ALLOWLIST = [".dhan.co", ".upstox.com", "127.0.0.1", "localhost"]


def dhan_csv(strikes: list[int] = STRIKES) -> bytes:
    return csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, strikes))


def load_url(account: str, url: str) -> str:
    out = io.StringIO()
    call_command("loadinstruments", account=account, url=url, stdout=out, no_progress=True)
    return out.getvalue()


def load_file(account: str, path: Path) -> str:
    out = io.StringIO()
    call_command("loadinstruments", account=account, file=path, stdout=out, no_progress=True)
    return out.getvalue()


def snapshot(account) -> list[tuple]:
    return list(
        Instrument.objects.filter(account=account)
        .order_by("broker_id")
        .values_list("broker_id", "strike", "lot_size")
    )


# --- content caps ----------------------------------------------------------------------------


def test_gzip_bomb_with_one_huge_string_is_rejected_quickly_in_bounded_memory(tmp_path, bomb):
    account = upstox_account()
    load_file("ux", _write(tmp_path, "good.json", json_bytes(upstox_records(EXPIRY, STRIKES))))
    before = snapshot(account)
    path = _write(tmp_path, "complete.json.gz", bomb)
    tracemalloc.start()
    try:
        with pytest.raises(CommandError) as err:
            load_file("ux", path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "row 1: a record is larger than 64 KB" in str(err.value)
    assert peak < 16 * MB  # the 150 MB string was never built
    assert snapshot(account) == before


def test_gzip_bomb_is_rejected_over_a_download_too(serve, loopback_allowed, bomb):
    upstox_account()
    server = serve({"/complete.json.gz": Route(body=bomb)})
    with pytest.raises(CommandError, match="a record is larger than 64 KB"):
        load_url("ux", f"{server.url}/complete.json.gz")


def test_content_larger_than_the_cap_after_decompression_is_rejected(tmp_path, settings):
    settings.INSTRUMENT_MASTER_MAX_BYTES = 1 * MB
    account = upstox_account()
    load_file("ux", _write(tmp_path, "good.json", json_bytes(upstox_records(EXPIRY, STRIKES))))
    before = snapshot(account)
    padded = b"[" + b"{}, " * (MB // 2) + json_bytes(upstox_records(EXPIRY, STRIKES))[1:]
    path = _write(tmp_path, "big.json.gz", gzip.compress(padded))
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(CommandError) as err:
        load_file("ux", path)
    assert "larger than 1 MB" in str(err.value)
    assert "INSTRUMENT_MASTER_MAX_MB" in str(err.value)
    assert snapshot(account) == before


def test_csv_row_larger_than_the_cap_is_rejected_with_its_row_number(tmp_path):
    account = dhan_account()
    load_file("main", _write(tmp_path, "good.csv", dhan_csv()))
    before = snapshot(account)
    rows = dhan_compact_rows(EXPIRY, STRIKES)
    rows[3][5] = rows[3][7] = "X" * (70 * 1024)  # row 5 (header = row 1); each field is
    # under csv's own field limit, the row is not under the budget (64 KB and a read-ahead)
    with pytest.raises(CommandError) as err:
        load_file("main", _write(tmp_path, "big.csv", csv_bytes(DHAN_COMPACT_HEADER, rows)))
    assert "row 5: a row is larger than 64 KB" in str(err.value)
    assert snapshot(account) == before


def test_csv_row_of_many_tiny_fields_is_rejected(tmp_path):
    dhan_account()
    data = dhan_csv() + b"," * (8 * MB) + b"\n"
    with pytest.raises(CommandError, match="a row is larger than 64 KB"):
        load_file("main", _write(tmp_path, "commas.csv", data))


# --- download caps ---------------------------------------------------------------------------


def test_download_announcing_more_than_the_cap_is_refused_unread(serve, loopback_allowed, settings):
    settings.INSTRUMENT_MASTER_MAX_DOWNLOAD_BYTES = 1 * MB
    account = dhan_account()
    server = serve({"/good.csv": Route(body=dhan_csv()), "/big.csv": Route(body=b"x" * (2 * MB))})
    load_url("main", f"{server.url}/good.csv")
    before = snapshot(account)
    with pytest.raises(CommandError) as err:
        load_url("main", f"{server.url}/big.csv")
    message = str(err.value)
    assert "larger than 1 MB" in message
    assert "INSTRUMENT_MASTER_MAX_DOWNLOAD_MB" in message
    assert snapshot(account) == before


def test_download_without_length_is_cut_at_the_cap(serve, loopback_allowed, settings):
    settings.INSTRUMENT_MASTER_MAX_DOWNLOAD_BYTES = 1 * MB
    dhan_account()
    server = serve({"/big.csv": Route(body=dhan_csv() * 4000, content_length=False)})
    with pytest.raises(CommandError, match=r"larger than 1 MB .*INSTRUMENT_MASTER_MAX_DOWNLOAD_MB"):
        load_url("main", f"{server.url}/big.csv")


# --- redirects and addresses -----------------------------------------------------------------


def test_redirect_to_another_host_is_refused(serve, loopback_allowed):
    account = dhan_account()
    other = serve({"/scrip.csv": Route(body=dhan_csv())})
    elsewhere = other.url.replace("127.0.0.1", "localhost") + "/scrip.csv"
    first = serve({"/scrip.csv": Route(status=302, headers={"Location": elsewhere})})
    with pytest.raises(CommandError) as err:
        load_url("main", f"{first.url}/scrip.csv")
    assert "redirected to another host ('localhost')" in str(err.value)
    assert other.hits["/scrip.csv"] == 0
    assert not Instrument.objects.filter(account=account).exists()


def test_redirect_on_the_same_host_is_followed(serve, loopback_allowed):
    account = dhan_account()
    server = serve(
        {
            "/old.csv": Route(status=301, headers={"Location": "/scrip.csv"}),
            "/scrip.csv": Route(body=dhan_csv()),
        }
    )
    load_url("main", f"{server.url}/old.csv")
    assert Instrument.objects.filter(account=account, kind="option").count() == 10


def test_a_redirect_from_https_to_plain_http_is_refused():
    """The redirect hook on its own: this suite's servers speak plain http only."""
    check = _same_host_only(httpx.URL("https://images.dhan.co/api-data/master.csv"))
    with pytest.raises(InstrumentLoadError, match="from https to http"):
        check(httpx.Request("GET", "http://images.dhan.co/api-data/master.csv"))
    check(httpx.Request("GET", "https://images.dhan.co/api-data/other.csv"))  # same host, https


def test_loopback_address_is_refused_unless_allowlisted(serve, settings):
    settings.BROKER_HOST_ALLOWLIST = [".dhan.co", ".upstox.com"]
    account = dhan_account()
    server = serve({"/scrip.csv": Route(body=dhan_csv())})
    with pytest.raises(CommandError) as err:
        load_url("main", f"{server.url}/scrip.csv")
    message = str(err.value)
    assert "127.0.0.1" in message and "loopback" in message
    assert "BROKER_HOST_ALLOWLIST" in message
    assert server.hits["/scrip.csv"] == 0  # refused before connecting
    assert not Instrument.objects.filter(account=account).exists()
    settings.BROKER_HOST_ALLOWLIST = [".dhan.co", ".upstox.com", "127.0.0.1"]
    load_url("main", f"{server.url}/scrip.csv")
    assert Instrument.objects.filter(account=account, kind="option").count() == 10


def test_a_name_resolving_to_loopback_is_refused_unless_allowlisted(serve, settings):
    settings.BROKER_HOST_ALLOWLIST = [".dhan.co", ".upstox.com", "127.0.0.1"]
    dhan_account()
    server = serve({"/scrip.csv": Route(body=dhan_csv())})
    with pytest.raises(
        CommandError, match=r"'localhost': it resolves to (127\.0\.0\.1|::1), a loopback"
    ):
        load_url("main", server.url.replace("127.0.0.1", "localhost") + "/scrip.csv")
    assert server.hits["/scrip.csv"] == 0


def test_a_name_that_resolves_elsewhere_when_connecting_is_refused(serve, settings, monkeypatch):
    """DNS rebinding: the name passes the check, then resolves to loopback for the connection;
    the address connected to is checked again, so nothing is fetched."""
    settings.BROKER_HOST_ALLOWLIST = [".dhan.co", ".upstox.com"]
    dhan_account()
    server = serve({"/scrip.csv": Route(body=dhan_csv())})
    port = int(server.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = iter(["93.184.215.14", "127.0.0.1"])  # first answer public, then loopback

    def resolver(host, *args, **kwargs):
        if host != "master.example.test":
            return real(host, *args, **kwargs)
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(CommandError, match=r"it resolves to 127\.0\.0\.1, a loopback address"):
        load_url("main", f"http://master.example.test:{port}/scrip.csv")
    assert server.hits["/scrip.csv"] == 0


def test_more_records_than_the_cap_are_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr("brokers.upstox.master.MAX_RECORDS", 5)
    monkeypatch.setattr("brokers.dhan.master.MAX_RECORDS", 5)
    upstox_account()
    dhan_account()
    with pytest.raises(CommandError, match=r"row 6: more than 5 records"):
        load_file("ux", _write(tmp_path, "m.json", json_bytes(upstox_records(EXPIRY, STRIKES))))
    with pytest.raises(CommandError, match=r"row 6: more than 5 records"):
        load_file("main", _write(tmp_path, "m.csv", dhan_csv()))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "not a public"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, nothing binds
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("fc00::1", "private"),
    ],
)
def test_non_public_address_classes_are_refused(address, kind):
    reason = address_refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "104.18.0.1"])
def test_public_addresses_pass(address):
    assert address_refusal(ipaddress.ip_address(address)) is None


# --- what a person gives by mistake ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("master.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\xff\xfe"),
        ("master.csv", b"SEM_EXM_EXCH_ID\x00,SEM_SEGMENT\n\x00\x01\x02"),
        ("master.csv", gzip.compress(b"\x00\x01\x02\xff\xfe binary inside gzip", mtime=0)),
    ],
    ids=["png", "nul-bytes-in-csv", "binary-inside-gzip"],
)
def test_binary_file_is_rejected_with_a_one_line_reason(tmp_path, name, data):
    dhan_account()
    with pytest.raises(CommandError) as err:
        load_file("main", _write(tmp_path, name, data))
    message = str(err.value)
    assert "\n" not in message
    assert "binary" in message
    assert "previous instruments of 'main' are unchanged" in message


def test_binary_file_for_upstox_is_rejected_with_a_one_line_reason(tmp_path):
    upstox_account()
    with pytest.raises(CommandError) as err:
        load_file("ux", _write(tmp_path, "m.json", b"\x89PNG\r\n\x1a\n\x00\x00\xff"))
    assert "\n" not in str(err.value)
    assert "row 1:" in str(err.value)


def test_duplicate_id_names_both_rows(tmp_path):
    dhan_account()
    rows = dhan_compact_rows(EXPIRY, STRIKES)
    rows.append(list(rows[5]))  # header row 1: the copy of row 7 is row 15
    with pytest.raises(CommandError) as err:
        load_file("main", _write(tmp_path, "m.csv", csv_bytes(DHAN_COMPACT_HEADER, rows)))
    assert f"row {len(rows) + 1}: instrument id {rows[5][2]} appears more than once" in str(
        err.value
    )
    assert "(first at row 7)" in str(err.value)


def test_duplicate_upstox_key_names_its_record_number(tmp_path):
    upstox_account()
    records = upstox_records(EXPIRY, STRIKES)
    records.append(dict(records[4]))
    with pytest.raises(CommandError) as err:
        load_file("ux", _write(tmp_path, "m.json", json_bytes(records)))
    assert f"row {len(records)}: instrument id {records[4]['instrument_key']}" in str(err.value)
    assert "(first at row 5)" in str(err.value)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path
