from __future__ import annotations

from django.db import migrations, models

import brokers.models


def fill_notifier_secrets(apps, schema_editor):
    account_model = apps.get_model("brokers", "BrokerAccount")
    for account in account_model.objects.filter(notifier_secret__isnull=True):
        account.notifier_secret = brokers.models.new_notifier_secret()
        account.save(update_fields=["notifier_secret"])


class Migration(migrations.Migration):
    dependencies = [("brokers", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="brokeraccount",
            name="upstox_user_id",
            field=models.CharField(
                blank=True,
                help_text="Upstox user id (filled by the admin login): token notifications for "
                "another user are refused.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="brokeraccount",
            name="notifier_secret",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(fill_notifier_secrets, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="brokeraccount",
            name="notifier_secret",
            field=models.CharField(
                default=brokers.models.new_notifier_secret,
                editable=False,
                help_text="The unguessable part of this account's Upstox notifier URL.",
                max_length=64,
                unique=True,
            ),
        ),
    ]
