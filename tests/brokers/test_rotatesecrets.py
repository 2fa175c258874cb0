"""``rotatesecrets`` re-encrypts every stored secret with the first key, all or nothing."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from brokers.models import BrokerAccount

from .factories import (
    FAKE_DHAN_TOKEN,
    FAKE_UPSTOX_SECRET,
    FAKE_UPSTOX_TOKEN,
    dhan_account,
    upstox_account,
)

pytestmark = pytest.mark.django_db


def raw_rows() -> dict[str, tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, access_token, api_secret FROM brokers_brokeraccount")
        return {name: (token, secret) for name, token, secret in cursor.fetchall()}


def rotate() -> str:
    out = io.StringIO()
    call_command("rotatesecrets", stdout=out)
    return out.getvalue()


def only_key(key: str, settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [key]


def test_rotation_reencrypts_every_secret_with_the_first_key(settings):
    dhan_account()
    upstox_account()
    BrokerAccount.objects.create(name="bare", kind="dhan", client_id="1")
    old = settings.FIELD_ENCRYPTION_KEYS[0]
    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    before = raw_rows()
    report = rotate()
    assert "Re-encrypted 3 secret(s)" in report and "0 already used it" in report
    assert "3 empty" in report  # main's API secret and bare's two
    after = raw_rows()
    assert after["main"][0] != before["main"][0] and after["bare"] == ("", "")
    only_key(new, settings)  # the old key can go now
    main, ux = BrokerAccount.objects.get(name="main"), BrokerAccount.objects.get(name="ux")
    assert main.access_token.reveal() == FAKE_DHAN_TOKEN
    assert ux.access_token.reveal() == FAKE_UPSTOX_TOKEN
    assert ux.api_secret.reveal() == FAKE_UPSTOX_SECRET


def test_rotation_is_idempotent(settings):
    dhan_account()
    settings.FIELD_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    assert "Re-encrypted 1 secret(s)" in rotate()
    rows = raw_rows()
    report = rotate()
    assert "Re-encrypted 0 secret(s)" in report and "1 already used it" in report
    assert raw_rows() == rows  # nothing rewritten


def test_rotation_names_what_no_key_decrypts_and_changes_nothing(settings):
    dhan_account()  # encrypted with the old key, which is then dropped
    new = Fernet.generate_key().decode()
    only_key(new, settings)
    upstox_account()  # encrypted with `new`
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), new]
    before = raw_rows()
    with pytest.raises(CommandError) as err:
        rotate()
    message = str(err.value)
    assert message.startswith("Nothing was changed: 1 secret(s) cannot be decrypted")
    assert "The access token of broker account 'main' was encrypted with a key" in message
    assert "'ux'" not in message
    assert FAKE_DHAN_TOKEN not in message
    assert raw_rows() == before  # ux was not rotated either


def test_rotation_does_not_touch_updated_at(settings):
    account = dhan_account()
    settings.FIELD_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    rotate()
    assert BrokerAccount.objects.get(pk=account.pk).updated_at == account.updated_at


def test_with_a_single_key_nothing_changes_and_the_report_says_how_to_rotate(settings):
    dhan_account()
    upstox_account()
    assert len(settings.FIELD_ENCRYPTION_KEYS) == 1
    before = raw_rows()
    report = rotate()
    assert "Re-encrypted 0 secret(s)" in report and "3 already used it" in report
    assert "FIELD_ENCRYPTION_KEY holds a single key: there was nothing to rotate" in report
    assert "FIELD_ENCRYPTION_KEY=NEW,OLD" in report  # what to do to rotate
    assert raw_rows() == before  # nothing rewritten, nothing lost
    main, ux = BrokerAccount.objects.get(name="main"), BrokerAccount.objects.get(name="ux")
    assert main.access_token.reveal() == FAKE_DHAN_TOKEN
    assert ux.api_secret.reveal() == FAKE_UPSTOX_SECRET
    assert settings.FIELD_ENCRYPTION_KEYS[0] not in report  # never a key in the output


def test_with_a_single_key_that_does_not_decrypt_a_secret_nothing_changes(settings):
    dhan_account()  # encrypted with the configured key, which is then replaced
    only_key(Fernet.generate_key().decode(), settings)
    upstox_account()
    before = raw_rows()
    with pytest.raises(CommandError) as err:
        rotate()
    message = str(err.value)
    assert message.startswith("Nothing was changed: 1 secret(s) cannot be decrypted")
    assert "'main'" in message and FAKE_DHAN_TOKEN not in message
    assert raw_rows() == before
