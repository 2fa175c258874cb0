"""Encryption of broker secrets at rest (Fernet, keys from settings.FIELD_ENCRYPTION_KEYS).

The first key encrypts; every key decrypts, so a key can be rotated by prepending a new one and
re-saving accounts (``python manage.py rotatesecrets``).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from .exceptions import SecretDecryptionError


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    """Return the Fernet token (ASCII text) for ``plaintext``."""
    return _current().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str, *, label: str) -> str:
    """Return the plaintext of ``token``.

    Raises SecretDecryptionError (naming ``label``, e.g. "the access token of broker account
    'main'", never the value) when no configured key decrypts it: FIELD_ENCRYPTION_KEY was
    changed without keeping the old key.
    """
    try:
        return _current().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise SecretDecryptionError(undecryptable_message(label)) from None


def undecryptable_message(label: str) -> str:
    """What to do about the secret ``label`` that no configured key decrypts."""
    return (
        f"{label[:1].upper()}{label[1:]} was encrypted with a key that is not in "
        "FIELD_ENCRYPTION_KEY: add the old key back (keys are listed comma-separated, the new "
        "key first), or enter the secret again in admin → Broker accounts."
    )


def rotate(token: str, *, label: str) -> str:
    """Return ``token`` re-encrypted with the first key of FIELD_ENCRYPTION_KEY (the same
    plaintext). Raises SecretDecryptionError (naming ``label``) when no configured key
    decrypts it."""
    try:
        return _current().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise SecretDecryptionError(undecryptable_message(label)) from None


def encrypted_with_first_key(token: str) -> bool:
    """True when the first key of FIELD_ENCRYPTION_KEY decrypts ``token``."""
    first = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].encode())
    try:
        first.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True
