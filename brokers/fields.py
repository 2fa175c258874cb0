"""Model fields for secrets encrypted at rest."""

from __future__ import annotations

from typing import Any

from django.db import models

from . import crypto
from .secret import Secret


class EncryptedSecretField(models.TextField):
    """Stores a ``Secret`` as Fernet ciphertext; the empty string means "no secret".

    Python side: always a ``Secret`` (possibly empty), never a plain ``str``, so the value
    cannot leak through reprs, logs or templates. Database side: ciphertext only.
    """

    description = "A secret encrypted at rest with FIELD_ENCRYPTION_KEY"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs["editable"] = False  # admin uses dedicated write-only form fields
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[Any, ...]:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def _label(self) -> str:
        model = getattr(self, "model", None)
        owner = model.__name__ if model is not None else "secret"
        return f"{owner}.{self.name}"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret:
        if not value:
            return Secret("")
        return Secret(crypto.decrypt(value, label=self._label()))

    def to_python(self, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if value is None:
            return Secret("")
        return Secret(str(value))

    def get_prep_value(self, value: Any) -> str:
        secret = self.to_python(value)
        plaintext = secret.reveal()
        return crypto.encrypt(plaintext) if plaintext else ""

    def value_to_string(self, obj: models.Model) -> str:
        # Secrets never reach fixtures or dumps: serialisation writes "no secret".
        return ""
