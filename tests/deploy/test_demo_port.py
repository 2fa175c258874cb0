"""`DEMO_PORT` sets the demo's public address: the Upstox login in the demo works on a port
other than 8000 (the redirect URI the product sends is the one the demo's simulator expects)."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from brokers.models import AccountStatus, BrokerAccount
from chains.management.commands import demo
from tests.sim_process import RunningSimulator, start_simulator

pytestmark = [pytest.mark.django_db, pytest.mark.integration]
DEMO_URL = "http://127.0.0.1:8123"  # a DEMO_PORT that is not 8000


@pytest.fixture
def demo_simulator(settings, monkeypatch) -> Iterator[RunningSimulator]:
    """The demo's public address set as DEMO_PORT=8123 sets it, and a simulator started with
    the redirect URI the demo gives it."""
    monkeypatch.setenv("PUBLIC_BASE_URL", os.environ["PUBLIC_BASE_URL"])  # restored after
    callback = demo.use_public_base_url(DEMO_URL)
    sim = start_simulator("--upstox-redirect-uri", callback)
    yield sim
    sim.stop()


def test_demo_port_sets_the_public_base_url_here_and_for_its_processes(demo_simulator):
    assert django_settings.PUBLIC_BASE_URL == DEMO_URL
    assert os.environ["PUBLIC_BASE_URL"] == DEMO_URL  # what runfeed, Celery, daphne inherit


def test_upstox_login_works_on_a_demo_port_other_than_8000(demo_simulator, client):
    call_command("simaccounts", url=demo_simulator.url, skip_masters=True, stdout=io.StringIO())
    account = BrokerAccount.objects.get(name="sim-upstox")
    account.set_access_token("")
    account.save()
    user = get_user_model().objects.create_superuser("boss", "b@example.invalid", "pw-test-only")
    client.force_login(user)
    dialog = client.get(reverse("upstox-login", args=[account.pk]))["location"]
    assert parse_qs(urlsplit(dialog).query)["redirect_uri"] == [
        f"{DEMO_URL}/brokers/upstox/callback"
    ]
    with httpx.Client(timeout=10) as browser:  # the person at the broker's dialog
        page = browser.get(dialog)
        assert page.status_code == 200, page.text  # the simulator accepts the redirect URI
        form = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert form is not None, page.text
        answer = browser.post(demo_simulator.url + form[1], data={"decision": "approve"})
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == DEMO_URL
    response = client.get(f"{location.path}?{location.query}", follow=True)
    assert "Logged in to Upstox" in response.content.decode()
    account.refresh_from_db()
    assert account.has_token and account.status == AccountStatus.OK
