"""Model fields for secrets encrypted at rest."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from . import crypto
from .secret import Secret


class _SecretAttribute(DeferredAttribute):
    """The field's attribute on an instance: names a stored secret after its row, so that a
    secret no key decrypts says which account and field it is. A data descriptor (it has
    ``__set__``), so that reads come here even when the value is in the instance's dict."""

    field: EncryptedSecretField

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if instance is not None and isinstance(value, Secret) and value.ciphertext is not None:
            value.describe(self.field.label_for(instance))
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedSecretField(models.TextField):
    """Stores a ``Secret`` as Fernet ciphertext; the empty string means "no secret".

    Python side: always a ``Secret`` (possibly empty), never a plain ``str``, so the value
    cannot leak through reprs, logs or templates. Database side: ciphertext only.
    """

    description = "A secret encrypted at rest with FIELD_ENCRYPTION_KEY"
    descriptor_class = _SecretAttribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs["editable"] = False  # admin uses dedicated write-only form fields
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[Any, ...]:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def label_for(self, instance: models.Model | None) -> str:
        """How errors name this field's secret, e.g. "the access token of broker account
        'main'"."""
        model = getattr(self, "model", None)
        owner = str(model._meta.verbose_name) if model is not None else "record"
        if instance is None:
            return f"the {self.verbose_name} of a {owner}"
        return f"the {self.verbose_name} of {owner} '{instance}'"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret:
        # Sealed: decrypted on first reveal(), so a row whose secret no configured key
        # decrypts still loads (lists, admin, status); only using that secret fails.
        if not value:
            return Secret("")
        return Secret.sealed(value, _open, label=self.label_for(None))

    def to_python(self, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if value is None:
            return Secret("")
        return Secret(str(value))

    def get_prep_value(self, value: Any) -> str:
        secret = self.to_python(value)
        if secret.ciphertext is not None:
            return secret.ciphertext  # unchanged since it was read: stored as it was
        plaintext = secret.reveal()
        return crypto.encrypt(plaintext) if plaintext else ""

    def value_to_string(self, obj: models.Model) -> str:
        # Secrets never reach fixtures or dumps: serialisation writes "no secret" (neither
        # plaintext nor ciphertext).
        return ""


def _open(ciphertext: str, label: str) -> str:
    return crypto.decrypt(ciphertext, label=label)


def secret_fields(model: type[models.Model]) -> list[EncryptedSecretField]:
    """The EncryptedSecretFields of ``model``."""
    return [f for f in model._meta.get_fields() if isinstance(f, EncryptedSecretField)]


def unreadable_secrets(instance: models.Model) -> list[str]:
    """One message per secret of ``instance`` that no configured key decrypts (what to do)."""
    problems = []
    for field in secret_fields(type(instance)):
        problem = getattr(instance, field.attname).problem()
        if problem is not None:
            problems.append(problem)
    return problems


def secret_state(secret: Secret) -> str:
    """How pages show a stored secret without its value: "set", "not set", or "unreadable"
    (no configured key decrypts it)."""
    if not secret:
        return "not set"
    if not secret.readable:
        return "unreadable (encrypted with a key not in FIELD_ENCRYPTION_KEY: enter it again)"
    return "set"
