"""Instrument-master loading: seconds and peak RSS for 250,000-row masters of both brokers.

    python bench/instruments.py [--rows 250000] [--json]

Generates a Dhan compact CSV and an Upstox JSON.gz with ``--rows`` rows each (mostly index
options, the rows the loader keeps, plus equities and stock options it skips), then runs
``manage.py loadinstruments`` for each in a fresh process on a fresh SQLite database and
reports wall seconds (whole command), the loader's own seconds and the process's peak RSS.
Side by side, a naive baseline: the same file read whole into memory (``list(csv.reader)`` /
``json.load``) without touching the database — what a non-streaming loader pays in memory
before it writes a single row. Goal: each load under 20 s and 300 MB peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IST = timezone(timedelta(hours=5, minutes=30))
UNDERLYINGS = {"NIFTY": (25000, 50), "BANKNIFTY": (57000, 100), "FINNIFTY": (27000, 50),
               "MIDCPNIFTY": (13000, 25), "SENSEX": (84000, 100)}  # fmt: skip
DHAN_HEADER = [
    "SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME",
    "SEM_EXPIRY_CODE", "SEM_TRADING_SYMBOL", "SEM_LOT_UNITS", "SEM_CUSTOM_SYMBOL",
    "SEM_EXPIRY_DATE", "SEM_STRIKE_PRICE", "SEM_OPTION_TYPE", "SEM_TICK_SIZE", "SEM_EXPIRY_FLAG",
    "SEM_EXCH_INSTRUMENT_TYPE", "SEM_SERIES", "SM_SYMBOL_NAME",
]  # fmt: skip


def _contracts(rows: int, seed: int):
    """Yield (kind, underlying, expiry, strike, option_type) for ``rows`` rows."""
    rng = random.Random(seed)
    today = date(2026, 11, 23)
    expiries = [today + timedelta(days=7 * w) for w in range(40)]
    produced = 0
    while produced < rows:
        roll = rng.random()
        underlying = rng.choice(list(UNDERLYINGS))
        spot, step = UNDERLYINGS[underlying]
        expiry = rng.choice(expiries)
        if roll < 0.8:
            strike = spot + step * rng.randint(-400, 400)
            yield "option", underlying, expiry, strike, rng.choice(("CE", "PE"))
        elif roll < 0.82:
            yield "future", underlying, expiry, None, ""
        elif roll < 0.9:
            yield (
                "stockopt",
                f"STOCK{rng.randint(1, 180)}",
                expiry,
                100 + rng.randint(0, 300) * 5,
                "CE",
            )
        else:
            yield "equity", f"STOCK{rng.randint(1, 5000)}", None, None, ""
        produced += 1


def make_dhan(path: Path, rows: int, seed: int) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(DHAN_HEADER)
        for name, sid in (("NIFTY", 13), ("BANKNIFTY", 25), ("FINNIFTY", 27), ("MIDCPNIFTY", 442)):
            out.writerow(["NSE", "I", sid, "INDEX", 0, name, "1.0", name, "0001-01-01", "", "XX",
                          "0.0500", "", "INDEX", "X", name])  # fmt: skip
        out.writerow(["BSE", "I", 51, "INDEX", 0, "SENSEX", "1.0", "SENSEX", "0001-01-01", "",
                      "XX", "0.0500", "", "INDEX", "X", "SENSEX"])  # fmt: skip
        for n, (kind, und, exp, strike, opt) in enumerate(_contracts(rows - 5, seed)):
            sid = 100000 + n
            exch = "BSE" if und == "SENSEX" else "NSE"
            if kind == "option":
                out.writerow([exch, "D", sid, "OPTIDX", 0, f"{und}-{exp:%b%Y}-{strike}-{opt}", "75.0",
                              f"{und} {exp:%d %b} {strike} {opt}", f"{exp} 14:30:00",
                              f"{strike}.00000", opt, "5.0000", "W", "OP", "NA", und])  # fmt: skip
            elif kind == "future":
                out.writerow([exch, "D", sid, "FUTIDX", 0, f"{und}-{exp:%b%Y}-FUT", "75.0",
                              f"{und} {exp:%b} FUT", f"{exp} 14:30:00", "-0.01000", "XX",
                              "10.0000", "M", "FUTIDX", "NA", und])  # fmt: skip
            elif kind == "stockopt":
                out.writerow(["NSE", "D", sid, "OPTSTK", 0, f"{und}-{exp:%b%Y}-{strike}-CE", "500.0",
                              und, f"{exp}", f"{strike}.00000", "CE", "5.0000", "M", "OP", "NA",
                              und])  # fmt: skip
            else:
                out.writerow(["NSE", "E", sid, "EQUITY", 0, und, "1.0", und, "0001-01-01", "",
                              "XX", "5.0000", "", "EQ", "EQ", und])  # fmt: skip


def _millis(day: date) -> int:
    return int(datetime.combine(day, dtime(23, 59, 59), tzinfo=IST).timestamp() * 1000)


def make_upstox(path: Path, rows: int, seed: int) -> None:
    with gzip.open(path, "wt", compresslevel=6) as handle:
        handle.write("[")
        first = True
        indices = [("NSE_INDEX", "Nifty 50", "NIFTY"), ("NSE_INDEX", "Nifty Bank", "BANKNIFTY"),
                   ("NSE_INDEX", "Nifty Fin Service", "FINNIFTY"),
                   ("NSE_INDEX", "NIFTY MID SELECT", "MIDCPNIFTY"), ("BSE_INDEX", "SENSEX", "SENSEX")]  # fmt: skip
        for seg, name, symbol in indices:
            record = {"segment": seg, "name": name, "exchange": seg[:3], "instrument_type": "INDEX",
                      "instrument_key": f"{seg}|{name}", "exchange_token": "1",
                      "trading_symbol": symbol}  # fmt: skip
            handle.write(("" if first else ",") + json.dumps(record))
            first = False
        for n, (kind, und, exp, strike, opt) in enumerate(_contracts(rows - 5, seed)):
            token = 100000 + n
            seg = "BSE_FO" if und == "SENSEX" else "NSE_FO"
            if kind in {"option", "future", "stockopt"}:
                record = {"weekly": True, "segment": seg, "name": und, "exchange": seg[:3],
                          "expiry": _millis(exp), "instrument_type": "FUT" if kind == "future" else opt,
                          "asset_symbol": und, "underlying_symbol": und,
                          "instrument_key": f"{seg}|{token}", "lot_size": 75,
                          "freeze_quantity": 1800.0, "exchange_token": str(token), "minimum_lot": 75,
                          "underlying_type": "EQUITY" if kind == "stockopt" else "INDEX",
                          "tick_size": 5.0, "trading_symbol": f"{und} {strike} {opt} {exp:%d %b %y}",
                          "strike_price": float(strike or 0), "qty_multiplier": 1.0}  # fmt: skip
            else:
                record = {"segment": "NSE_EQ", "name": und, "exchange": "NSE", "instrument_type": "EQ",
                          "instrument_key": f"NSE_EQ|INE{token}", "lot_size": 1, "tick_size": 5.0,
                          "trading_symbol": und}  # fmt: skip
            handle.write("," + json.dumps(record))
        handle.write("]")


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a child; return (wall seconds, peak RSS MB, stdout)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.decode()}")
    return seconds, usage.ru_maxrss / 1024, out.decode()


BASELINE = """
import csv, gzip, json, sys
path = sys.argv[1]
if path.endswith('.gz'):
    rows = json.load(gzip.open(path, 'rt'))
else:
    rows = list(csv.reader(open(path, newline='')))
print(len(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    py = sys.executable
    results = []
    with tempfile.TemporaryDirectory(prefix="optionsite-bench-") as tmp:
        tmpdir = Path(tmp)
        files = {"dhan": tmpdir / "api-scrip-master.csv", "upstox": tmpdir / "complete.json.gz"}
        make_dhan(files["dhan"], args.rows, args.seed)
        make_upstox(files["upstox"], args.rows, args.seed)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "optionsite.settings",
            "DJANGO_DEBUG": "1",
            "DATABASE_URL": f"sqlite:///{tmpdir / 'bench.sqlite3'}",
            "FIELD_ENCRYPTION_KEY": "YmVuY2gtb25seS1rZXktbm90LWEtc2VjcmV0LSEhISE=",
            "LOG_LEVEL": "WARNING",
        }
        _run([py, "manage.py", "migrate", "-v0"], env)
        setup = (
            "from brokers.models import BrokerAccount as A;"
            "A.objects.get_or_create(name='bench-dhan', kind='dhan');"
            "A.objects.get_or_create(name='bench-upstox', kind='upstox')"
        )
        _run([py, "manage.py", "shell", "-c", setup], env)
        for broker, path in files.items():
            wall, rss, out = _run(
                [py, "manage.py", "loadinstruments", f"--account=bench-{broker}", f"--file={path}",
                 "--no-progress"], env,
            )  # fmt: skip
            match = re.search(r": (\d+) instruments from .* in ([\d.]+)s", out)
            kept, load_seconds = (int(match[1]), float(match[2])) if match else (None, None)
            base_wall, base_rss, _ = _run([py, "-c", BASELINE, str(path)], env)
            results.append({
                "broker": broker, "rows": args.rows, "file_mb": round(path.stat().st_size / 2**20, 1),
                "kept": kept, "load_seconds": load_seconds, "command_seconds": round(wall, 2),
                "peak_rss_mb": round(rss, 1), "baseline_read_seconds": round(base_wall, 2),
                "baseline_peak_rss_mb": round(base_rss, 1),
                "goal_met": wall < 20 and rss < 300,
            })  # fmt: skip
    if args.json:
        print(json.dumps({"benchmark": "instruments", "results": results}, indent=2))
        return
    print(f"{'broker':<8}{'rows':>9}{'file MB':>9}{'kept':>9}{'load s':>9}{'cmd s':>8}"
          f"{'peak MB':>9}  | baseline read-whole: {'s':>6}{'peak MB':>9}  goal")  # fmt: skip
    for r in results:
        print(f"{r['broker']:<8}{r['rows']:>9}{r['file_mb']:>9}{r['kept']:>9}{r['load_seconds']:>9}"
              f"{r['command_seconds']:>8}{r['peak_rss_mb']:>9}  | {'':>20}{r['baseline_read_seconds']:>6}"
              f"{r['baseline_peak_rss_mb']:>9}  {'met' if r['goal_met'] else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
