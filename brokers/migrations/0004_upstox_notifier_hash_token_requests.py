"""The Upstox notifier's path secret is kept only as its SHA-256 (existing secrets are hashed,
so registered notifier URLs keep working); the stored token's issue time; the token requests
made from admin that the notifier accepts one token for."""

from __future__ import annotations

import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import brokers.models


def hash_notifier_secrets(apps, schema_editor):
    account_model = apps.get_model("brokers", "BrokerAccount")
    for account in account_model.objects.exclude(notifier_secret__isnull=True):
        account.notifier_secret_hash = hashlib.sha256(account.notifier_secret.encode()).hexdigest()
        account.notifier_secret = None
        account.save(update_fields=["notifier_secret_hash", "notifier_secret"])


def new_notifier_secrets(apps, schema_editor):
    # Going back: a hash cannot be undone, so every account gets a new notifier URL.
    account_model = apps.get_model("brokers", "BrokerAccount")
    for account in account_model.objects.all():
        account.notifier_secret = brokers.models.new_notifier_secret()
        account.save(update_fields=["notifier_secret"])


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0003_exchange_holidays"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="brokeraccount",
            name="notifier_secret_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name="brokeraccount",
            name="notifier_secret",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(hash_notifier_secrets, new_notifier_secrets),
        migrations.RemoveField(model_name="brokeraccount", name="notifier_secret"),
        migrations.AlterField(
            model_name="brokeraccount",
            name="notifier_secret_hash",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="SHA-256 (hex) of the unguessable part of this account's Upstox notifier URL; the URL itself is shown once, when admin creates it (action 'Create a new Upstox notifier URL'). Empty: no notifier URL, every notification is refused.",
                max_length=64,
                null=True,
                unique=True,
            ),
        ),
        migrations.AddField(
            model_name="brokeraccount",
            name="token_issued_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When the broker issued the stored token, when it said so (an older token sent to the Upstox notifier is refused); empty: unknown.",
                null=True,
            ),
        ),
        migrations.CreateModel(
            name="TokenRequest",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("requested_at", models.DateTimeField()),
                (
                    "valid_until",
                    models.DateTimeField(
                        help_text="The end of the approval window the broker gave (authorization_expiry)."
                    ),
                ),
                (
                    "consumed_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="When a notification was accepted for it (or it was superseded by a newer request); empty: pending.",
                        null=True,
                    ),
                ),
                (
                    "notification_sha256",
                    models.CharField(
                        blank=True,
                        help_text="SHA-256 (hex) of the accepted notification's body, to name a replay.",
                        max_length=64,
                    ),
                ),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="token_requests",
                        to="brokers.brokeraccount",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        help_text="The admin user who asked for the token.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-requested_at"],
                "indexes": [
                    models.Index(fields=["account", "consumed_at"], name="token_request_pending")
                ],
            },
        ),
    ]
