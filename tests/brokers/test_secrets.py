"""Secrets are encrypted at rest, never shown, and a wrong key fails loudly."""

from __future__ import annotations

import io
import logging
import pickle

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from brokers.exceptions import SecretDecryptionError
from brokers.models import AccountStatus, BrokerAccount
from brokers.secret import Secret, reveal

from .factories import FAKE_DHAN_TOKEN, FAKE_UPSTOX_SECRET, dhan_account, upstox_account

pytestmark = pytest.mark.django_db


def raw_row(account: BrokerAccount) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, api_secret FROM brokers_brokeraccount WHERE id = %s", [account.pk]
        )
        return cursor.fetchone()


def test_database_holds_ciphertext_only():
    account = upstox_account()
    token_cipher, secret_cipher = raw_row(account)
    assert FAKE_UPSTOX_SECRET not in secret_cipher
    assert "FAKE-UPSTOX-TOKEN" not in token_cipher
    assert token_cipher.startswith("gAAAAA")  # a Fernet token
    assert (
        Fernet(b"dGVzdC1vbmx5LWtleS1ub3QtYS1zZWNyZXQtISEhISE=").decrypt(secret_cipher.encode())
        == FAKE_UPSTOX_SECRET.encode()
    )


def test_secret_round_trips_through_the_database():
    account = dhan_account()
    loaded = BrokerAccount.objects.get(pk=account.pk)
    assert isinstance(loaded.access_token, Secret)
    assert loaded.access_token.reveal() == FAKE_DHAN_TOKEN


def test_empty_secret_is_stored_as_empty_string():
    account = BrokerAccount.objects.create(name="bare", kind="dhan", client_id="1")
    assert raw_row(account) == ("", "")
    assert not BrokerAccount.objects.get(pk=account.pk).has_token


def test_wrong_key_fails_loudly_naming_the_field(settings):
    account = dhan_account()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretDecryptionError) as err:
        BrokerAccount.objects.get(pk=account.pk)
    assert "BrokerAccount.access_token" in str(err.value)
    assert "FIELD_ENCRYPTION_KEY" in str(err.value)
    assert FAKE_DHAN_TOKEN not in str(err.value)


def test_rotated_key_still_decrypts_old_ciphertext(settings):
    account = dhan_account()
    old = settings.FIELD_ENCRYPTION_KEYS[0]
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    loaded = BrokerAccount.objects.get(pk=account.pk)
    assert loaded.access_token.reveal() == FAKE_DHAN_TOKEN
    loaded.save()  # re-encrypts with the new first key
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]
    assert BrokerAccount.objects.get(pk=account.pk).access_token.reveal() == FAKE_DHAN_TOKEN


def test_secret_never_in_repr_str_or_format():
    account = dhan_account()
    for text in (repr(account), str(account), repr(account.access_token), f"{account.access_token}",
                 repr(account.__dict__)):  # fmt: skip
        assert FAKE_DHAN_TOKEN not in text
    assert str(account.access_token) == "Secret('***')"
    assert reveal(account.access_token) == FAKE_DHAN_TOKEN


def test_secret_refuses_pickling():
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(Secret("FAKE"))


def test_secret_wraps_only_text():
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_dumpdata_never_contains_secrets():
    dhan_account()
    upstox_account()
    out = io.StringIO()
    call_command("dumpdata", "brokers.brokeraccount", stdout=out)
    dump = out.getvalue()
    assert "FAKE-" not in dump
    assert "gAAAAA" not in dump  # not even ciphertext


def test_saving_logs_no_secret(caplog):
    caplog.set_level(logging.DEBUG)
    account = dhan_account()
    account.save()
    assert FAKE_DHAN_TOKEN not in caplog.text


def test_new_token_resets_token_status():
    account = dhan_account()
    account.status = AccountStatus.TOKEN_EXPIRED
    account.last_error = "expired"
    account.set_access_token("FAKE-NEW")
    assert account.status == AccountStatus.OK
    assert account.last_error == ""
    account.set_access_token("")
    assert account.status == AccountStatus.TOKEN_MISSING
