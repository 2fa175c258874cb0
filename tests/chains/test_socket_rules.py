"""The rules of ``chains.socket_limits`` without a socket: the resync throttle's arithmetic and
what counts as a session that still holds its user."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from brokers.connections import sync_client
from chains.sessions import copy_key
from chains.socket_limits import ResyncThrottle, holder, session_user_id


def test_a_resync_within_the_second_waits_for_its_end_and_more_meanwhile_are_dropped():
    throttle = ResyncThrottle(interval=1.0)
    assert throttle.ask(5.0) == 0.0  # nothing sent yet: at once
    throttle.sent(10.0)
    assert throttle.ask(10.25) == pytest.approx(0.75)
    assert throttle.ask(10.5) is None and throttle.ask(10.99) is None
    assert throttle.dropped == 2
    throttle.due()
    throttle.sent(11.0)
    assert throttle.ask(12.0) == 0.0  # a second later: at once again


def test_the_holder_is_the_user_when_logged_in_else_the_address(settings, django_user_model):
    settings.WS_MAX_SOCKETS_PER_USER, settings.WS_MAX_SOCKETS_PER_IP = 7, 9
    user = django_user_model(pk=42, username="trader")
    by_user = holder({"user": user, "client": ["192.0.2.1", 4000]})
    assert (by_user.key, by_user.limit) == ("optionsite:ws:user:42", 7)
    assert "WS_MAX_SOCKETS_PER_USER" in by_user.refusal
    by_address = holder({"client": ["192.0.2.1", 4000]})
    assert (by_address.key, by_address.limit) == ("optionsite:ws:ip:192.0.2.1", 9)
    assert "WS_MAX_SOCKETS_PER_IP" in by_address.refusal
    assert holder({}).key == "optionsite:ws:ip:unknown"  # e.g. daphne on a Unix socket


@pytest.mark.django_db
def test_a_session_holds_its_user_until_it_is_deleted_expired_or_the_user_changes(
    django_user_model,
):
    user = django_user_model.objects.create_user("trader", password="pw-test-only")
    client = Client()
    client.force_login(user)
    key = client.cookies["sessionid"].value
    assert session_user_id(key) == user.pk
    assert Session.objects.filter(session_key=key).exists()  # read, never flushed or cycled
    assert session_user_id(None) is None and session_user_id("no-such-session") is None
    user.is_active = False
    user.save()
    assert session_user_id(key) is None
    user.is_active = True
    user.save()
    user.set_password("another-pw-test-only")
    user.save()
    assert session_user_id(key) is None  # a password change ends other sessions
    assert Session.objects.filter(session_key=key).exists()  # …without this check deleting it


@pytest.mark.django_db
def test_an_expired_session_holds_no_user(django_user_model):
    user = django_user_model.objects.create_user("trader", password="pw-test-only")
    client = Client()
    client.force_login(user)
    key = client.cookies["sessionid"].value
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(1))
    # Its copy in Redis expires with it (its TTL is at most the session's remaining age:
    # tests/optionsite/test_sessions.py); the update above skipped that, so drop it here.
    sync_client().delete(copy_key(key))
    assert session_user_id(key) is None
