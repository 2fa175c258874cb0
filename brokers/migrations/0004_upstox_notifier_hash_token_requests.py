"""The Upstox notifier's path secret is kept only as its SHA-256; the stored token's issue time;
the token requests made from admin that the notifier accepts one token for.

Existing notifier URLs are retired, not hashed: before this release their secrets were written
in plain text to access logs (daphne's, a proxy's) and error logs, so anyone who read a log
could use them. After upgrading, an admin runs "Create a new Upstox notifier URL" and registers
the new URL with the Upstox app."""

from __future__ import annotations

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import brokers.models


def retire_notifier_secrets(apps, schema_editor):
    account_model = apps.get_model("brokers", "BrokerAccount")
    account_model.objects.update(notifier_secret=None)


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
        migrations.RunPython(retire_notifier_secrets, new_notifier_secrets),
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
