"""The chain page's expiry switcher labels each tracked expiry "09 Dec · 3d · W"."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

import pytest

from brokers.exchange import IST
from brokers.models import TrackedChain
from tests.chains.fixtures import EXPIRY, LATER, build_book, publish, tracked

pytestmark = pytest.mark.django_db


def test_the_switcher_shows_days_to_expiry_and_weekly_or_monthly(
    tmp_path, clean_redis, client, django_user_model
):
    account = tracked(tmp_path, "dhan", expiries=2)
    publish(account, build_book(account, EXPIRY), feed_state=None)
    client.force_login(django_user_model.objects.create_user("trader", password="x" * 12))
    page = html.unescape(client.get(f"/chains/NIFTY/{EXPIRY.isoformat()}/").content.decode())
    start = page.index('<nav class="expiries"')
    nav = page[start : page.index("</nav>", start)]
    today = datetime.now(IST).date()
    # the rule: the last listed expiry of a month is its monthly
    first_kind = "W" if LATER.month == EXPIRY.month else "M"
    first = f"{EXPIRY:%d %b} · {(EXPIRY - today).days}d · {first_kind}"
    second = f"{LATER:%d %b} · {(LATER - today).days}d · M"
    assert f'data-kind="{first_kind}"' in nav and f">{first}</a>" in nav
    assert f">{second}</a>" in nav
    assert nav.index(first) < nav.index(second)
    assert 'class="current"' in nav.split(first)[0].rsplit("<a ", 1)[1]


def test_a_listed_expiry_not_tracked_says_so_and_how_to_track_it(
    tmp_path, clean_redis, client, django_user_model
):
    account = tracked(tmp_path, "dhan", expiries=2)
    TrackedChain.objects.filter(account=account).update(expiries=1)  # LATER: listed only
    publish(account, build_book(account, EXPIRY), feed_state=None)
    client.force_login(django_user_model.objects.create_user("trader", password="x" * 12))
    page = html.unescape(client.get(f"/chains/NIFTY/{EXPIRY.isoformat()}/").content.decode())
    start = page.index('<nav class="expiries"')
    nav = page[start : page.index("</nav>", start)]
    later = nav[nav.index(f'data-expiry="{LATER.isoformat()}"') - 200 :]
    assert "untracked" in later.split("data-expiry")[0]  # the switcher offers it, marked
    response = client.get(f"/chains/NIFTY/{LATER.isoformat()}/")
    assert response.status_code == 200
    text = html.unescape(response.content.decode())
    assert f"Expiry {LATER.isoformat()} of NIFTY is listed but not tracked" in text
    assert "set Expiries to 2 or more for NIFTY in admin → Tracked chains" in text
    unlisted = client.get(f"/chains/NIFTY/{(LATER + timedelta(days=1)).isoformat()}/")
    assert unlisted.status_code == 404  # not an expiry at all
    assert "is not tracked. Tracked:" in unlisted.content.decode()
