"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEY.

Rotation: put the new key first (``FIELD_ENCRYPTION_KEY=new,old``), restart, run this, then
drop the old key (with a single key configured it rewrites nothing and says how to rotate).
All or nothing: when a secret is found that no configured key decrypts, the
command names its account and field and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from brokers import crypto
from brokers.exceptions import SecretDecryptionError
from brokers.fields import EncryptedSecretField, secret_fields
from brokers.secret import Secret


@dataclass
class _Counts:
    rotated: int = 0
    current: int = 0
    empty: int = 0
    unreadable: list[str] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (all models) with the first key of "
        "FIELD_ENCRYPTION_KEY, in one transaction. Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = _Counts()
        with transaction.atomic():
            for model in apps.get_models():
                fields = secret_fields(model)
                if fields:
                    self._rotate_model(model, fields, counts)
            if counts.unreadable:
                transaction.set_rollback(True)
        if counts.unreadable:
            raise CommandError(
                f"Nothing was changed: {len(counts.unreadable)} secret(s) cannot be decrypted "
                "with any key of FIELD_ENCRYPTION_KEY. " + " ".join(counts.unreadable)
            )
        self.stdout.write(
            f"Re-encrypted {counts.rotated} secret(s) with the first key of "
            f"FIELD_ENCRYPTION_KEY; {counts.current} already used it; {counts.empty} empty."
        )
        if len(settings.FIELD_ENCRYPTION_KEYS) == 1:  # a rotation step skipped, most likely
            self.stdout.write(
                "FIELD_ENCRYPTION_KEY holds a single key: there was nothing to rotate. To "
                "rotate, set FIELD_ENCRYPTION_KEY=NEW,OLD (the new key first), restart, run "
                "rotatesecrets again, then drop OLD."
            )

    def _rotate_model(
        self, model: type[models.Model], fields: list[EncryptedSecretField], counts: _Counts
    ) -> None:
        manager = model._default_manager
        for obj in manager.select_for_update().order_by("pk"):
            changes: dict[str, Secret] = {}
            for secret_field in fields:
                secret: Secret = getattr(obj, secret_field.attname)
                token = secret.ciphertext
                if not token:
                    counts.empty += 1
                    continue
                if crypto.encrypted_with_first_key(token):
                    counts.current += 1
                    continue
                try:
                    rotated = crypto.rotate(token, label=secret.label)
                except SecretDecryptionError as exc:
                    counts.unreadable.append(str(exc))
                    continue
                # Sealed, so the field stores this ciphertext as it is.
                changes[secret_field.attname] = Secret.sealed(rotated, _decrypt, label=secret.label)
                counts.rotated += 1
            if changes and not counts.unreadable:
                manager.filter(pk=obj.pk).update(**changes)


def _decrypt(ciphertext: str, label: str) -> str:
    return crypto.decrypt(ciphertext, label=label)
