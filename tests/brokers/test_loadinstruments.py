"""loadinstruments: both brokers' masters, every malformed case, all-or-nothing replacement."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from brokers.models import Instrument, TrackedChain

from .factories import (
    DHAN_COMPACT_HEADER,
    DHAN_DETAILED_HEADER,
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


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load(account_name: str, path: Path) -> str:
    out = io.StringIO()
    call_command("loadinstruments", account=account_name, file=path, stdout=out)
    return out.getvalue()


def snapshot(account) -> list[tuple]:
    return list(
        Instrument.objects.filter(account=account)
        .order_by("broker_id")
        .values_list("broker_id", "strike", "lot_size", "tick_size")
    )


# --- Dhan ------------------------------------------------------------------------------------


def test_dhan_compact_master_loads_index_futures_and_options(tmp_path):
    account = dhan_account()
    path = write(
        tmp_path, "m.csv", csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES))
    )
    output = load("main", path)
    options = Instrument.objects.filter(account=account, kind="option")
    assert options.count() == 10
    assert Instrument.objects.filter(account=account, kind="future").count() == 1
    index = Instrument.objects.get(account=account, kind="index")
    assert (index.broker_id, index.segment, index.underlying) == ("13", "IDX_I", "NIFTY")
    assert index.tick_size == Decimal("0.05")
    assert not Instrument.objects.filter(trading_symbol="HDFCBANK").exists()  # equity skipped
    call = options.get(strike=26000, option_type="CE")
    assert call.segment == "NSE_FNO"
    assert call.expiry == EXPIRY  # "YYYY-MM-DD 14:30:00" → the date
    assert call.tick_size == Decimal("0.05")  # 5.0000 paise → ₹0.05
    assert call.lot_size == 75  # "75.0"
    assert call.underlying == "NIFTY"
    assert "12 instruments" in output
    assert f"NIFTY        option  {EXPIRY.isoformat()}     10" in output


def test_dhan_detailed_master_loads(tmp_path):
    account = dhan_account()
    rows = [
        ["NSE", "I", "13", "NA", "INDEX", "13", "NIFTY", "NIFTY", "Nifty 50", "INDEX", "X",
         "1.0", "0001-01-01", "", "XX", "0.0500", "", ""],
        ["NSE", "D", "35084", "NA", "OPTIDX", "26000", "NIFTY", "NIFTY-Sep2026-29150-CE",
         "NIFTY 29 SEP 29150 CALL", "OP", "NA", "65.0", "2026-09-29", "29150.00000", "CE",
         "5.0000", "M", ""],
        ["BSE", "D", "845123", "NA", "OPTIDX", "51", "SENSEX", "SENSEX-Dec2026-85000-PE",
         "SENSEX 24 DEC 85000 PUT", "OP", "NA", "20.0", "24-12-2026", "85000.00000", "PE",
         "5.0000", "W", ""],
    ]  # fmt: skip
    load("main", write(tmp_path, "d.csv", csv_bytes(DHAN_DETAILED_HEADER, rows)))
    nifty = Instrument.objects.get(account=account, broker_id="35084")
    assert (nifty.strike, nifty.lot_size, nifty.expiry) == (Decimal("29150"), 65, date(2026, 9, 29))
    sensex = Instrument.objects.get(account=account, broker_id="845123")
    assert (sensex.segment, sensex.underlying, sensex.expiry) == (
        "BSE_FNO",
        "SENSEX",
        date(2026, 12, 24),
    )


def test_reload_updates_and_removes_what_the_new_file_lacks(tmp_path):
    account = dhan_account()
    load(
        "main",
        write(
            tmp_path, "a.csv", csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES))
        ),
    )
    output = load(
        "main",
        write(
            tmp_path,
            "b.csv",
            csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES[:2])),
        ),
    )
    assert Instrument.objects.filter(account=account, kind="option").count() == 4
    assert "(0 new, 6 updated, 6 removed)" in output


def bad_row_cases() -> Iterator[tuple[str, int, str, str]]:
    """(description, column index, bad value, expected message part)."""
    col = DHAN_COMPACT_HEADER.index
    yield "bad strike", col("SEM_STRIKE_PRICE"), "26,000", "strike price '26,000' is not a number"
    yield "bad date", col("SEM_EXPIRY_DATE"), "2026-13-45", "expiry date '2026-13-45' is not a date"
    yield "bad lot", col("SEM_LOT_UNITS"), "75.5", "lot size '75.5' is not a positive whole number"
    yield "bad tick", col("SEM_TICK_SIZE"), "abc", "tick size 'abc' is not a number"
    yield "bad option type", col("SEM_OPTION_TYPE"), "XX", "option type 'XX' is not CE or PE"
    yield "bad security id", col("SEM_SMST_SECURITY_ID"), "4x1", "security id '4x1' is not a number"
    yield "empty strike", col("SEM_STRIKE_PRICE"), "", "strike price is empty"


@pytest.mark.parametrize(("case", "column", "value", "message"), list(bad_row_cases()))
def test_malformed_dhan_row_is_rejected_and_previous_master_kept(
    tmp_path, case, column, value, message
):
    account = dhan_account()
    load(
        "main",
        write(
            tmp_path, "good.csv", csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES))
        ),
    )
    before = snapshot(account)
    rows = dhan_compact_rows(EXPIRY, [*STRIKES, 26150, 26200])
    rows[-2][column] = value  # a late row: earlier batches were already written
    with pytest.raises(CommandError) as err:
        load("main", write(tmp_path, "bad.csv", csv_bytes(DHAN_COMPACT_HEADER, rows)))
    assert f"row {len(rows)}:" in str(err.value)  # header is row 1
    assert message in str(err.value)
    assert "previous instruments of 'main' are unchanged" in str(err.value)
    assert snapshot(account) == before


def test_rollback_spans_batches(tmp_path, monkeypatch):
    """A bad row after several committed-looking batches still leaves nothing changed."""
    monkeypatch.setattr("brokers.loading.BATCH_SIZE", 3)
    account = dhan_account()
    rows = dhan_compact_rows(EXPIRY, list(range(20000, 21000, 50)))
    rows[-1][DHAN_COMPACT_HEADER.index("SEM_EXPIRY_DATE")] = "someday"
    with pytest.raises(CommandError, match="is not a date"):
        load("main", write(tmp_path, "bad.csv", csv_bytes(DHAN_COMPACT_HEADER, rows)))
    assert not Instrument.objects.filter(account=account).exists()


def test_missing_column_is_rejected(tmp_path):
    dhan_account()
    header = [h for h in DHAN_COMPACT_HEADER if h != "SEM_TICK_SIZE"]
    rows = [r[:11] + r[12:] for r in dhan_compact_rows(EXPIRY, STRIKES)]
    with pytest.raises(CommandError, match=r"row 1: missing column\(s\) SEM_TICK_SIZE"):
        load("main", write(tmp_path, "m.csv", csv_bytes(header, rows)))


def test_short_row_is_rejected(tmp_path):
    dhan_account()
    rows = dhan_compact_rows(EXPIRY, STRIKES)
    rows[4] = rows[4][:5]
    with pytest.raises(CommandError, match="row 6: has 5 columns"):
        load("main", write(tmp_path, "m.csv", csv_bytes(DHAN_COMPACT_HEADER, rows)))


def test_duplicate_id_is_rejected(tmp_path):
    dhan_account()
    rows = dhan_compact_rows(EXPIRY, STRIKES)
    rows.append(list(rows[-1]))
    with pytest.raises(CommandError, match=rf"row {len(rows) + 1}: .* appears more than once"):
        load("main", write(tmp_path, "m.csv", csv_bytes(DHAN_COMPACT_HEADER, rows)))


def test_empty_file_is_rejected(tmp_path):
    dhan_account()
    with pytest.raises(CommandError, match="the file is empty"):
        load("main", write(tmp_path, "m.csv", b""))


def test_file_without_kept_rows_keeps_previous_master(tmp_path):
    account = dhan_account()
    load(
        "main",
        write(
            tmp_path, "a.csv", csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES))
        ),
    )
    before = snapshot(account)
    equity_only = [dhan_compact_rows(EXPIRY, [])[1]]
    with pytest.raises(CommandError, match="No instruments kept"):
        load("main", write(tmp_path, "b.csv", csv_bytes(DHAN_COMPACT_HEADER, equity_only)))
    assert snapshot(account) == before


def test_removing_a_tracked_chains_index_is_refused(tmp_path):
    account = dhan_account()
    load(
        "main",
        write(
            tmp_path, "a.csv", csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES))
        ),
    )
    TrackedChain.objects.create(
        account=account, underlying="NIFTY", index_instrument=Instrument.objects.get(broker_id="13")
    )
    before = snapshot(account)
    without_index = dhan_compact_rows(EXPIRY, STRIKES)[1:]
    with pytest.raises(CommandError, match="no longer lists the index instrument of tracked chain"):
        load("main", write(tmp_path, "b.csv", csv_bytes(DHAN_COMPACT_HEADER, without_index)))
    assert snapshot(account) == before


def test_underlying_filter_keeps_only_named_underlyings(tmp_path):
    account = dhan_account()
    path = write(
        tmp_path, "m.csv", csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES))
    )
    call_command("loadinstruments", account="main", file=path, underlyings="BANKNIFTY,NIFTY",
                 kinds="option", stdout=io.StringIO())  # fmt: skip
    assert set(Instrument.objects.filter(account=account).values_list("kind", flat=True)) == {
        "option"
    }


def test_unknown_kind_option_is_refused(tmp_path):
    dhan_account()
    with pytest.raises(CommandError, match="unknown instrument kinds"):
        call_command("loadinstruments", account="main", file=tmp_path / "x", kinds="stock")


def test_unknown_account_names_the_fix():
    with pytest.raises(CommandError, match="No broker account named 'nope'"):
        call_command("loadinstruments", account="nope", file="x.csv")


def test_missing_file_is_a_clear_error(tmp_path):
    dhan_account()
    with pytest.raises(CommandError, match="Cannot open"):
        load("main", tmp_path / "absent.csv")


# --- Upstox ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "gz"), [("complete.json", False), ("complete.json.gz", True)])
def test_upstox_master_loads(tmp_path, name, gz):
    account = upstox_account()
    load("ux", write(tmp_path, name, json_bytes(upstox_records(EXPIRY, STRIKES), gz=gz)))
    call = Instrument.objects.get(account=account, strike=26000, option_type="CE")
    assert (call.segment, call.broker_id, call.lot_size) == ("NSE_FO", "NSE_FO|50004", 75)
    assert call.expiry == EXPIRY  # 23:59:59 IST epoch ms → that IST date
    assert call.tick_size == Decimal("0.05")
    assert call.underlying == "NIFTY"
    indices = dict(
        Instrument.objects.filter(account=account, kind="index").values_list(
            "broker_id", "underlying"
        )
    )
    assert indices == {"NSE_INDEX|Nifty 50": "NIFTY", "NSE_INDEX|Nifty Bank": "BANKNIFTY"}


def test_gzip_detected_by_content_not_name(tmp_path):
    account = upstox_account()
    load("ux", write(tmp_path, "master.bin", json_bytes(upstox_records(EXPIRY, STRIKES), gz=True)))
    assert Instrument.objects.filter(account=account, kind="option").count() == 10


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r[-1].pop("instrument_key"), "row 13: field 'instrument_key' is missing"),
        (
            lambda r: r[-1].update(strike_price="high"),
            "row 13: strike_price 'high' is not a number",
        ),
        (lambda r: r[-1].update(lot_size=0), "row 13: lot_size 0 is not a positive whole number"),
        (lambda r: r[-1].update(expiry="tomorrow"), "row 13: expiry 'tomorrow' is not a date"),
        (lambda r: r.append([1, 2]), "row 14: is not a JSON object"),
    ],
)
def test_malformed_upstox_record_is_rejected_and_previous_master_kept(tmp_path, mutate, message):
    account = upstox_account()
    load("ux", write(tmp_path, "a.json", json_bytes(upstox_records(EXPIRY, STRIKES))))
    before = snapshot(account)
    records = upstox_records(EXPIRY, STRIKES)
    mutate(records)
    with pytest.raises(CommandError) as err:
        load("ux", write(tmp_path, "b.json", json_bytes(records)))
    assert message in str(err.value)
    assert snapshot(account) == before


def test_malformed_json_is_rejected(tmp_path):
    upstox_account()
    data = json_bytes(upstox_records(EXPIRY, STRIKES))[:-40] + b"}}}"
    with pytest.raises(CommandError, match="malformed JSON"):
        load("ux", write(tmp_path, "b.json", data))


def test_truncated_gzip_is_rejected(tmp_path):
    upstox_account()
    data = json_bytes(upstox_records(EXPIRY, STRIKES), gz=True)
    with pytest.raises(CommandError, match=r"broken gzip stream|malformed JSON"):
        load("ux", write(tmp_path, "b.json.gz", data[: len(data) // 2]))


def test_json_that_is_not_an_array_is_rejected(tmp_path):
    upstox_account()
    with pytest.raises(CommandError, match="no instrument records"):
        load("ux", write(tmp_path, "b.json", b'{"status": "error"}'))


# --- --url over a real socket ----------------------------------------------------------------


@pytest.fixture
def master_server(tmp_path):
    files = {
        "/complete.json.gz": json_bytes(upstox_records(EXPIRY, STRIKES), gz=True),
        "/scrip.csv": csv_bytes(DHAN_COMPACT_HEADER, dhan_compact_rows(EXPIRY, STRIKES)),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Quiet: the test output is the assertion."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_download_loads_the_master(master_server):
    account = upstox_account()
    out = io.StringIO()
    call_command(
        "loadinstruments", account="ux", url=f"{master_server}/complete.json.gz", stdout=out
    )
    assert Instrument.objects.filter(account=account, kind="option").count() == 10


def test_account_master_url_is_the_default_source(master_server):
    account = dhan_account(master_url=f"{master_server}/scrip.csv")
    call_command("loadinstruments", account="main", stdout=io.StringIO())
    assert Instrument.objects.filter(account=account, kind="option").count() == 10


def test_url_http_error_is_reported(master_server):
    upstox_account()
    with pytest.raises(CommandError, match="HTTP 404"):
        call_command("loadinstruments", account="ux", url=f"{master_server}/missing.json.gz")


def test_url_unreachable_is_reported():
    upstox_account()
    with pytest.raises(CommandError, match="ConnectError"):
        call_command("loadinstruments", account="ux", url="http://127.0.0.1:9/x.json")


def test_far_expiry_forms_parse():
    from brokers.masters import parse_expiry

    assert parse_expiry("2026-07-30 14:30:00", row=1, field="e") == date(2026, 7, 30)
    assert parse_expiry("30/07/2026", row=1, field="e") == date(2026, 7, 30)
    assert parse_expiry("30-Jul-2026", row=1, field="e") == date(2026, 7, 30)
    assert parse_expiry("0001-01-01", row=1, field="e") is None
    assert parse_expiry(1767119399000, row=1, field="e") == date(2025, 12, 30)
    assert parse_expiry("1767119399000", row=1, field="e") == date(2025, 12, 30)
    assert date(2025, 12, 30) - timedelta(days=0) == parse_expiry(1767119399000.0, row=1, field="e")
