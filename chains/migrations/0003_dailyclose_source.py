from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chains", "0002_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="dailyclose",
            name="source",
            field=models.CharField(default="live", max_length=32),
        ),
    ]
