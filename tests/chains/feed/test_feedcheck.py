"""feedcheck against the real simulator and a real runfeed: every stage passes on a healthy
pipeline, and each injected fault is pinned to its stage with what to do and a non-zero exit."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import httpx
import pytest
from django.core.management import CommandError, call_command

from brokers.models import BrokerAccount
from chains import store
from chains.feed.check import STAGES
from tests.processes import Process, eventually, runfeed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def feed(wired) -> Iterator[Process]:
    """runfeed for both simulator accounts, once every chain is live and ready."""
    with runfeed("sim-dhan", "sim-upstox", FEED_QUIET_AFTER="1") as process:

        def ready() -> bool:
            for name in ("sim-dhan", "sim-upstox"):
                status = store.read_feed_status(name)
                if not status or status["state"] != "live" or not status["chains"]:
                    return False
                if not all(c["ready"] for c in status["chains"]):
                    return False
            return True

        try:
            eventually(ready, timeout=30, what="runfeed live with every chain ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nrunfeed log:\n{process.output()[-4000:]}") from None
        yield process


def feedcheck(*args: str) -> tuple[str, CommandError | None]:
    """Run feedcheck; (its output, the CommandError it exited with or None)."""
    out = io.StringIO()
    try:
        call_command("feedcheck", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def failed_at(output: str, error: CommandError | None, stage: str) -> str:
    """Assert the walk failed at ``stage`` (earlier ones passed, later ones unchecked)."""
    assert error is not None and error.returncode == 1, output
    assert f"at '{stage}'" in str(error)
    index = STAGES.index(stage)
    for earlier in STAGES[:index]:
        assert f"✓ {earlier}:" in output, (earlier, output)
    assert f"✗ {stage}:" in output, output
    for later in STAGES[index + 1 :]:
        assert f"· {later}: not checked" in output, (later, output)
    return output.split(f"✗ {stage}:", 1)[1]


def test_every_stage_passes_against_a_healthy_pipeline(feed):
    output, error = feedcheck("--timeout", "5", "--window", "1")
    assert error is None, output
    for name in ("sim-dhan", "sim-upstox"):
        assert f"{name}: all 9 stages passed." in output
    assert output.count("✓") == 2 * len(STAGES)
    assert "token=***" in output and "SIM-DHAN-TOKEN" not in output  # the feed URL is redacted


def test_missing_credentials_stop_the_walk_at_the_first_stage(wired):
    account = BrokerAccount.objects.get(name="sim-dhan")
    account.set_access_token("")
    account.save()
    output, error = feedcheck("--account", "sim-dhan")
    after = failed_at(output, error, "credentials present")
    assert "no access token: paste the DhanHQ access token in admin" in after


def test_a_token_the_broker_rejects_fails_the_token_stage_with_its_message(wired):
    wired.fault(action="revoke_token", broker="dhan")
    output, error = feedcheck("--account", "sim-dhan")
    after = failed_at(output, error, "token accepted")
    assert "DhanHQ rejected the access token" in after and "paste a new token" in after


def test_a_stalled_dhan_feed_fails_at_frames_received(wired):
    wired.fault(action="stall", seconds=30)
    output, error = feedcheck("--account", "sim-dhan", "--timeout", "1")
    after = failed_at(output, error, "frames received")
    assert "no frame within 1s of subscribing" in after
    assert "sends nothing" in after


def test_a_stalled_upstox_feed_fails_at_decoded_with_no_prices(wired):
    wired.fault(action="stall", seconds=30)  # Upstox still sends its market-info frame
    output, error = feedcheck("--account", "sim-upstox", "--timeout", "1", "--window", "1")
    after = failed_at(output, error, "decoded")
    assert "decoded, none with a price" in after and "stalled" in after


def test_malformed_frames_fail_at_decoded_with_how_many(wired):
    stop = threading.Event()

    def inject() -> None:  # keep sending garbage to every open feed connection
        with httpx.Client(timeout=5) as client:
            while not stop.wait(0.05):
                body = {"action": "malformed", "broker": "dhan", "kind": "unknown_code", "count": 3}
                client.post(f"{wired.url}/sim/faults", json=body).raise_for_status()

    injector = threading.Thread(target=inject, daemon=True)
    injector.start()
    try:
        output, error = feedcheck("--account", "sim-dhan", "--window", "1")
    finally:
        stop.set()
        injector.join(5)
    after = failed_at(output, error, "decoded")
    assert "frames could not be decoded (first: " in after
    assert "decode errors" in after


def test_no_running_feed_worker_fails_at_applied_saying_start_runfeed(wired):
    output, error = feedcheck("--account", "sim-upstox", "--window", "0.5")
    after = failed_at(output, error, "applied to chains")
    assert "no feed worker is running for 'sim-upstox'" in after
    assert "python manage.py runfeed --account sim-upstox" in after


def test_a_quiet_feed_fails_the_consumer_stage_saying_the_market_is_closed(feed, wired):
    wired.fault(action="market", status="closed")
    eventually(lambda: (store.read_feed_status("sim-upstox") or {}).get("state") == "quiet",
               timeout=10, what="the feed to go quiet")  # fmt: skip
    output, error = feedcheck("--account", "sim-upstox", "--timeout", "1.5", "--window", "0.5")
    after = failed_at(output, error, "consumer receives")
    assert "outside market hours there is nothing to publish" in after


def test_an_unknown_account_fails_at_credentials(db):
    output, error = feedcheck("--account", "ghost")
    assert "No broker account named 'ghost'" in failed_at(output, error, "credentials present")


def test_bad_timings_are_refused(db):
    with pytest.raises(CommandError, match="must be positive"):
        call_command("feedcheck", "--timeout", "0", stdout=io.StringIO())


def test_no_enabled_account_says_how_to_add_one(db):
    with pytest.raises(CommandError, match="No enabled broker account"):
        call_command("feedcheck", stdout=io.StringIO())
