"""Masters through loadinstruments --url, simaccounts, same-seed ticks over the wire, notifier."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web
from django.core.management import CommandError, call_command

from brokers.dhan.codec import decode_frame
from brokers.models import BrokerAccount, Instrument, TrackedChain
from brokers.upstox.answers import parse_notifier_payload
from chains.plan import nearest_expiries
from tests.brokers.factories import dhan_account, upstox_account
from tests.sim_process import DEMO, start_simulator

from .feedclient import dhan_subscribe, feed_connect, recv, ticks


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("dhan", "/dhan/api-data/api-scrip-master.csv"),
        ("dhan", "/dhan/api-data/api-scrip-master-detailed.csv"),
        ("upstox", "/upstox/market-quote/instruments/exchange/complete.json.gz"),
    ],
)
@pytest.mark.integration
def test_masters_load_through_loadinstruments_url(sim, kind, path):
    account = dhan_account("d") if kind == "dhan" else upstox_account("u")
    out = io.StringIO()
    call_command("loadinstruments", account=account.name, url=f"{sim.url}{path}",
                 no_progress=True, stdout=out)  # fmt: skip
    state = sim.state()["instruments"]
    assert Instrument.objects.filter(account=account).count() == len(state)
    ids = set(Instrument.objects.filter(account=account).values_list("broker_id", flat=True))
    expected = {str(i["security_id"]) if kind == "dhan" else i["upstox_key"] for i in state}
    assert ids == expected
    nifty = Instrument.objects.get(account=account, kind="index", underlying="NIFTY")
    assert nifty.broker_id == ("13" if kind == "dhan" else "NSE_INDEX|Nifty 50")
    option = Instrument.objects.filter(account=account, kind="option", underlying="SENSEX").first()
    assert option.lot_size == 20 and str(option.tick_size) == "0.0500"


@pytest.mark.integration
@pytest.mark.django_db
def test_simaccounts_wires_both_accounts_and_is_idempotent(sim):
    out = io.StringIO()
    call_command("simaccounts", url=sim.url, stdout=out)
    dhan = BrokerAccount.objects.get(name="sim-dhan")
    upstox = BrokerAccount.objects.get(name="sim-upstox")
    assert dhan.feed_base_url == f"{sim.ws_url}/dhan/feed" and dhan.client_id == DEMO.dhan_client_id
    assert upstox.rest_base_url == f"{sim.url}/upstox" and upstox.has_token
    assert DEMO.dhan_token not in out.getvalue() and DEMO.upstox_token not in out.getvalue()
    chains = TrackedChain.objects.filter(account__in=(dhan, upstox))
    assert sorted(c.underlying for c in chains) == [
        "BANKEX", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTY", "SENSEX", "SENSEX50",
    ]  # fmt: skip
    # each underlying on one account only
    assert {c.underlying for c in chains if c.account_id == dhan.pk} == {
        "NIFTY", "SENSEX", "BANKEX", "SENSEX50",
    }  # fmt: skip
    for chain in chains:  # every expiry the master lists is followed
        listed = set(sim.state(instruments=False)["market"]["expiries"][chain.underlying])
        followed = {e.isoformat() for e in nearest_expiries(chain.account, chain.underlying,
                                                            chain.expiries)}  # fmt: skip
        assert followed == listed, chain.underlying
    assert "of the 5,000 one feed connection takes" in out.getvalue()
    assert "of the 2,000 one feed connection takes" in out.getvalue()
    again = io.StringIO()
    call_command("simaccounts", url=sim.url, stdout=again)
    assert "sim-dhan: account unchanged." in again.getvalue()


@pytest.mark.integration
@pytest.mark.django_db
def test_simaccounts_refuses_more_instruments_than_a_feed_connection_takes():
    wide = start_simulator("--strikes", "70")  # 141 strikes: 282 legs an expiry
    try:
        with pytest.raises(CommandError) as refused:
            call_command("simaccounts", url=wide.url, stdout=io.StringIO())
    finally:
        wide.stop()
    message = str(refused.value)
    assert message.startswith("sim-dhan: every expiry of NIFTY, SENSEX, BANKEX, SENSEX50 is ")
    assert "more than one feed connection takes (5,000)" in message
    assert "runsim --strikes 30 --weeklies 2" in message
    assert not TrackedChain.objects.exists()  # nothing tracked beyond the limit


@pytest.mark.django_db
def test_simaccounts_says_how_to_start_the_simulator():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(CommandError, match="runsim"):
        call_command("simaccounts", url=f"http://127.0.0.1:{port}")


async def _first_packets(sim, count: int) -> list:
    rows = [i for i in sim.state()["instruments"] if i["underlying"] == "NIFTY"]
    pairs = [(r["dhan_segment"], r["security_id"]) for r in rows]
    async with feed_connect(sim.dhan_feed_url()) as ws:
        await dhan_subscribe(ws, "quote", pairs)
        events: list = []
        while len(events) < 3 * len(pairs) - 1:  # snapshot: prev close, quote (+ OI) each
            events.extend(decode_frame(await recv(ws)))
        await asyncio.to_thread(sim.step, 3000)
        live: list = []
        while len(live) < count:
            live.extend(ticks(decode_frame(await recv(ws))))
    return live[:count]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_same_seed_gives_the_same_first_ticks_over_the_wire():
    args = ("--seed", "11", "--ticks-per-second", "0", "--start", "2026-01-07T10:00:00+05:30")
    first, second, other = await asyncio.gather(
        asyncio.to_thread(start_simulator, *args),
        asyncio.to_thread(start_simulator, *args),
        asyncio.to_thread(start_simulator, args[0], "12", *args[2:]),
    )
    try:
        a = await _first_packets(first, 200)
        b = await _first_packets(second, 200)
        c = await _first_packets(other, 200)
    finally:
        for sim in (first, second, other):
            sim.stop()
    assert a == b
    assert a != c
    assert a[0].exchange_time.date() == datetime(2026, 1, 7, tzinfo=UTC).date()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_approved_v3_token_request_reaches_the_notifier():
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sim = await asyncio.to_thread(
        start_simulator, "--upstox-notifier-url", f"http://127.0.0.1:{port}/hook"
    )
    try:
        async with sim.upstox_rest as client:
            pending = await client.request_token(
                client_id=DEMO.upstox_api_key, client_secret=DEMO.upstox_api_secret
            )
        assert pending.notifier_url == f"http://127.0.0.1:{port}/hook"
        async with httpx.AsyncClient(base_url=sim.url) as http:
            listed = (await http.get("/sim/token-requests", params={"format": "json"})).json()
            page = await http.get("/sim/token-requests")
            request_id = listed["pending"][0]["id"]
            approved = (await http.post(f"/sim/token-requests/{request_id}/approve")).json()
            again = await http.post(f"/sim/token-requests/{request_id}/approve")
        assert request_id in page.text and "Approve" in page.text
        assert approved["delivered"] is True and again.status_code == 404
        token = parse_notifier_payload(received[0])
        assert token.client_id == DEMO.upstox_api_key and token.expires_at > datetime.now(UTC)
        assert json.loads(received[0])["access_token"] == approved["access_token"]
    finally:
        sim.stop()
        await runner.cleanup()
