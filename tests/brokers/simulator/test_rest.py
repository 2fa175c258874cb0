"""Our REST clients against the simulator: chains, quotes, profiles, tokens, every refusal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from brokers.dhan.rest import DhanRestClient
from brokers.exceptions import BrokerError
from brokers.http import IST, NO_RETRY
from brokers.upstox.rest import UpstoxRestClient
from tests.sim_process import DEMO

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


def _expiry(sim, symbol: str = "NIFTY") -> date:
    return date.fromisoformat(sim.state(instruments=False)["market"]["expiries"][symbol][0])


# --- Dhan -----------------------------------------------------------------------------------


async def test_dhan_expiries_and_option_chain_parse_and_match_the_state(sim):
    async with sim.dhan_rest as client:
        expiries = await client.expiry_list(51, "IDX_I")
        chain = await client.option_chain(51, "IDX_I", expiries[0])
    assert expiries[0].weekday() == 3  # SENSEX expires on Thursdays
    assert len(chain.strikes) == 81 and chain.underlying_last_price > 50000
    state = {i["security_id"]: i for i in sim.state()["instruments"]}
    leg = chain.strikes[40].ce
    assert leg is not None and leg.security_id in state
    assert leg.top_bid_price < leg.top_ask_price
    assert 0.03 < leg.implied_volatility < 1.0 and leg.implied_volatility_percent > 3
    assert leg.previous_oi == state[leg.security_id]["prev_oi"]


async def test_dhan_unknown_expiry_is_811_and_unknown_underlying_dh905(sim):
    async with sim.dhan_rest as client:
        with pytest.raises(BrokerError) as bad_expiry:
            await client.option_chain(13, "IDX_I", date(2001, 1, 1))
        with pytest.raises(BrokerError) as bad_scrip:
            await client.expiry_list(99999, "IDX_I")
    assert bad_expiry.value.code == "811" and bad_expiry.value.permanent
    assert bad_scrip.value.code == "DH-905"


async def test_dhan_market_quotes(sim):
    async with sim.dhan_rest as client:
        quotes = await client.market_quote("quote", {"IDX_I": [13, 25], "NSE_FNO": [40000]})
    assert quotes[("IDX_I", 13)].last_price > 10000
    assert quotes[("NSE_FNO", 40000)].fields["depth"]["buy"][0]["quantity"] > 0


@pytest.mark.parametrize(
    ("client_id", "token"),
    [(DEMO.dhan_client_id, "SIM-WRONG-TOKEN"), ("9999999999", DEMO.dhan_token)],
)
async def test_dhan_bad_credentials_get_dh901(sim, client_id, token):
    async with DhanRestClient(f"{sim.url}/dhan", client_id, token, retry=NO_RETRY) as client:
        with pytest.raises(BrokerError) as refused:
            await client.profile()
    assert refused.value.code == "DH-901" and refused.value.http_status == 401


@pytest.mark.parametrize("action", ["expire_token", "revoke_token"])
async def test_dhan_expired_or_revoked_token_gets_dh901(sim, action):
    sim.fault(action=action, broker="dhan")
    async with sim.dhan_rest as client:
        with pytest.raises(BrokerError) as refused:
            await client.expiry_list(13, "IDX_I")
    assert refused.value.code == "DH-901" and refused.value.permanent


async def test_dhan_profile_and_renew_token_replace_the_old_token(sim):
    async with sim.dhan_rest as client:
        profile = await client.profile()
        renewed = await client.renew_token()
        with pytest.raises(BrokerError):
            await client.profile()  # the old token stopped working
    assert profile.client_id == DEMO.dhan_client_id and profile.has_data_plan
    assert profile.token_validity > datetime.now(UTC)
    assert timedelta(hours=23) < renewed.expires_at - datetime.now(UTC) <= timedelta(hours=24)
    client = DhanRestClient(f"{sim.url}/dhan", DEMO.dhan_client_id, renewed.access_token)
    async with client:
        assert (await client.profile()).client_id == DEMO.dhan_client_id


async def test_dhan_renew_token_by_post_is_dh905(sim):
    headers = {"access-token": DEMO.dhan_token, "dhanClientId": DEMO.dhan_client_id}
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{sim.url}/dhan/v2/RenewToken", headers=headers)
    assert answer.status_code == 400 and answer.json()["errorCode"] == "DH-905"


# --- Upstox ---------------------------------------------------------------------------------


async def test_upstox_option_chain_and_contracts_parse(sim):
    expiry = _expiry(sim, "BANKNIFTY")
    async with sim.upstox_rest as client:
        chain = await client.option_chain("NSE_INDEX|Nifty Bank", expiry)
        contracts = await client.option_contracts("NSE_INDEX|Nifty Bank", expiry)
        empty = await client.option_chain("NSE_INDEX|Nifty Bank", date(2001, 1, 1))
    assert len(chain.strikes) == 81 and chain.underlying_spot_price > 40000
    call = chain.strikes[40].call
    assert call is not None and call.instrument_key.startswith("NSE_FO|5")
    assert 0.03 < call.iv < 1.0 and call.iv_percent == pytest.approx(call.iv * 100)
    assert len(contracts) == 162 and {c.lot_size for c in contracts} == {30}
    assert empty.strikes == ()


async def test_upstox_profile_and_bad_tokens(sim):
    async with sim.upstox_rest as client:
        assert (await client.profile()).user_id == "SIM0001"
    async with UpstoxRestClient(f"{sim.url}/upstox", access_token="SIM-WRONG", retry=NO_RETRY) as c:
        with pytest.raises(BrokerError) as refused:
            await c.profile()
    assert refused.value.code == "UDAPI100050" and refused.value.http_status == 401


@pytest.mark.parametrize("action", ["expire_token", "revoke_token"])
async def test_upstox_expired_or_revoked_token_gets_udapi100050(sim, action):
    sim.fault(action=action, broker="upstox")
    async with sim.upstox_rest as client:
        with pytest.raises(BrokerError) as refused:
            await client.option_chain("NSE_INDEX|Nifty 50", _expiry(sim))
    assert refused.value.code == "UDAPI100050" and refused.value.permanent


async def _login(sim, *, decision: str, state: str = "xyz") -> dict[str, list[str]]:
    query = {"response_type": "code", "client_id": DEMO.upstox_api_key,
             "redirect_uri": DEMO.upstox_redirect_uri, "state": state}  # fmt: skip
    async with httpx.AsyncClient(base_url=sim.url) as http:
        page = await http.get("/upstox/v2/login/authorization/dialog", params=query)
        assert page.status_code == 200 and "Approve" in page.text and "Deny" in page.text
        action = page.text.split('action="', 1)[1].split('"', 1)[0]
        answer = await http.post(action, data={"decision": decision})
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(DEMO.upstox_redirect_uri + "?")
    return parse_qs(urlsplit(location).query)


async def test_upstox_login_dialog_code_exchange_and_single_use_code(sim):
    redirect = await _login(sim, decision="approve")
    assert redirect["state"] == ["xyz"]
    code = redirect["code"][0]
    async with UpstoxRestClient(f"{sim.url}/upstox", retry=NO_RETRY) as client:
        token = await client.exchange_code(
            code=code, client_id=DEMO.upstox_api_key, client_secret=DEMO.upstox_api_secret,
            redirect_uri=DEMO.upstox_redirect_uri,
        )  # fmt: skip
        with pytest.raises(BrokerError) as reused:
            await client.exchange_code(
                code=code, client_id=DEMO.upstox_api_key, client_secret=DEMO.upstox_api_secret,
                redirect_uri=DEMO.upstox_redirect_uri,
            )  # fmt: skip
    assert reused.value.http_status == 400
    assert token.expires_at.astimezone(IST).time().isoformat() == "03:30:00"
    async with UpstoxRestClient(f"{sim.url}/upstox", access_token=token.access_token) as client:
        assert (await client.profile()).user_id == "SIM0001"


async def test_upstox_login_denied_redirects_with_error(sim):
    redirect = await _login(sim, decision="deny")
    assert redirect["error"] == ["access_denied"] and "code" not in redirect


async def test_upstox_wrong_secret_consumes_the_code(sim):
    code = (await _login(sim, decision="approve"))["code"][0]
    async with UpstoxRestClient(f"{sim.url}/upstox", retry=NO_RETRY) as client:
        with pytest.raises(BrokerError) as wrong:
            await client.exchange_code(
                code=code, client_id=DEMO.upstox_api_key, client_secret="nope",
                redirect_uri=DEMO.upstox_redirect_uri,
            )  # fmt: skip
        with pytest.raises(BrokerError) as used:
            await client.exchange_code(
                code=code, client_id=DEMO.upstox_api_key, client_secret=DEMO.upstox_api_secret,
                redirect_uri=DEMO.upstox_redirect_uri,
            )  # fmt: skip
    assert wrong.value.code == "UDAPI100016" and used.value.code == "UDAPI100057"


async def test_upstox_dialog_refuses_a_wrong_redirect_uri(sim):
    query = {"response_type": "code", "client_id": DEMO.upstox_api_key,
             "redirect_uri": "http://evil.invalid/cb"}  # fmt: skip
    async with httpx.AsyncClient(base_url=sim.url) as http:
        answer = await http.get("/upstox/v2/login/authorization/dialog", params=query)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["error_code"] == "UDAPI100068"


async def test_upstox_v3_token_request_refuses_a_wrong_secret(sim):
    async with UpstoxRestClient(f"{sim.url}/upstox", retry=NO_RETRY) as client:
        with pytest.raises(BrokerError) as refused:
            await client.request_token(client_id=DEMO.upstox_api_key, client_secret="nope")
    assert refused.value.code == "UDAPI100016"
