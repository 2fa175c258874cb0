"""``manage.py runfeed`` whose history recorder follows the simulator's exchange clock.

    python bench/_runfeed_clock.py SIM_URL --account NAME

A recorder that follows the exchange timestamps of ticks (``chains.feed.history.ExchangeClock``)
records a simulated session at any hour: the command then runs unchanged. An older recorder
takes a minute's bars by the wall clock (``HistoryRecorder(now=...)``), so a simulated session
at another time of day than the wall clock's (``runsim --start 10:00`` at night) would record
nothing: its default clock is then set to the simulator's (its epoch when this process starts,
advancing at its speed, ``/sim/state``). Both runfeed processes of bench/history.py, recording
on and off, start through here; the first line on stderr says which clock the recorder used.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    url, args = sys.argv[1], sys.argv[2:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from chains.feed import history

    defaults = history.HistoryRecorder.__init__.__kwdefaults__ or {}
    if hasattr(history, "ExchangeClock"):
        print("recorder clock: the ticks' exchange timestamps", file=sys.stderr, flush=True)
    elif "now" in defaults:
        clock = httpx.get(f"{url}/sim/state?instruments=0", timeout=10).json()["clock"]
        epoch, speed, origin = float(clock["epoch"]), float(clock["speed"]), time.monotonic()
        defaults["now"] = lambda: datetime.fromtimestamp(
            epoch + (time.monotonic() - origin) * speed, UTC
        )
        print(
            "recorder clock: the simulator's, given as its wall clock", file=sys.stderr, flush=True
        )
    else:
        raise SystemExit("bench/_runfeed_clock.py does not know this recorder's clock")
    call_command("runfeed", *args)


if __name__ == "__main__":
    main()
