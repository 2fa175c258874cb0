"""Exchange trading holidays: the table, seeded with 2026 (published) and 2027 (provisional).

2026, equity derivatives, from the exchanges' circulars:
- NSE/FAOP/71777 of 12 Dec 2025 (F&O segment; the same days as NSE/CMTR/71775 for the cash
  market) and BSE notice 20251212-8 of 12 Dec 2025 (equity and equity derivatives): 15 weekdays;
- 15 Jan 2026 (Municipal Corporation elections in Maharashtra), added by NSE/FAOP/72262 and
  BSE notice 20260112-8, both of 12 Jan 2026.
Holidays that fall on a weekend (Mahashivratri 15 Feb, Id-Ul-Fitr 21 Mar, Independence Day
15 Aug, Diwali Laxmi Pujan 8 Nov 2026) need no row.

2027: no circular is published yet (the exchanges publish next year's list in December). Only
the days a fixed rule gives and every annual list has closed when they fall on a weekday are
seeded, without a source (provisional): Republic Day (26 Jan), Good Friday (26 Mar 2027,
two days before Western Easter) and Dr. Baba Saheb Ambedkar Jayanti (14 Apr). Festivals of
the lunar calendars (Holi, Diwali, Id, ...) are not guessed: an admin adds 2027 from the
circulars when they appear.
"""

from __future__ import annotations

from datetime import date

from django.db import migrations, models

NSE_2026 = "NSE/FAOP/71777 (12 Dec 2025)"
BSE_2026 = "BSE notice 20251212-8 (12 Dec 2025)"
NSE_2026_ELECTION = "NSE/FAOP/72262 (12 Jan 2026)"
BSE_2026_ELECTION = "BSE notice 20260112-8 (12 Jan 2026)"

# (date, name, NSE source, BSE source); a blank source is provisional.
SEED: list[tuple[date, str, str, str]] = [
    (
        date(2026, 1, 15),
        "Municipal Corporation Election in Maharashtra",
        NSE_2026_ELECTION,
        BSE_2026_ELECTION,
    ),
    (date(2026, 1, 26), "Republic Day", NSE_2026, BSE_2026),
    (date(2026, 3, 3), "Holi", NSE_2026, BSE_2026),
    (date(2026, 3, 26), "Shri Ram Navami", NSE_2026, BSE_2026),
    (date(2026, 3, 31), "Shri Mahavir Jayanti", NSE_2026, BSE_2026),
    (date(2026, 4, 3), "Good Friday", NSE_2026, BSE_2026),
    (date(2026, 4, 14), "Dr. Baba Saheb Ambedkar Jayanti", NSE_2026, BSE_2026),
    (date(2026, 5, 1), "Maharashtra Day", NSE_2026, BSE_2026),
    (date(2026, 5, 28), "Bakri Id", NSE_2026, BSE_2026),
    (date(2026, 6, 26), "Muharram", NSE_2026, BSE_2026),
    (date(2026, 9, 14), "Ganesh Chaturthi", NSE_2026, BSE_2026),
    (date(2026, 10, 2), "Mahatma Gandhi Jayanti", NSE_2026, BSE_2026),
    (date(2026, 10, 20), "Dussehra", NSE_2026, BSE_2026),
    (date(2026, 11, 10), "Diwali-Balipratipada", NSE_2026, BSE_2026),
    (date(2026, 11, 24), "Prakash Gurpurb Sri Guru Nanak Dev", NSE_2026, BSE_2026),
    (date(2026, 12, 25), "Christmas", NSE_2026, BSE_2026),
    (date(2027, 1, 26), "Republic Day (provisional)", "", ""),
    (date(2027, 3, 26), "Good Friday (provisional)", "", ""),
    (date(2027, 4, 14), "Dr. Baba Saheb Ambedkar Jayanti (provisional)", "", ""),
]


def seed_holidays(apps, schema_editor):
    holiday = apps.get_model("brokers", "ExchangeHoliday")
    for day, name, nse, bse in SEED:
        for exchange, source in (("NSE", nse), ("BSE", bse)):
            holiday.objects.get_or_create(
                exchange=exchange, date=day, defaults={"name": name, "source": source}
            )


def unseed_holidays(apps, schema_editor):
    holiday = apps.get_model("brokers", "ExchangeHoliday")
    holiday.objects.filter(date__in=[day for day, *_ in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("brokers", "0002_upstox_login")]

    operations = [
        migrations.CreateModel(
            name="ExchangeHoliday",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "exchange",
                    models.CharField(
                        choices=[("NSE", "NSE"), ("BSE", "BSE")],
                        help_text="NSE and BSE publish their own lists; today they close on the "
                        "same days.",
                        max_length=8,
                    ),
                ),
                ("date", models.DateField()),
                (
                    "name",
                    models.CharField(
                        help_text="As the circular names it, e.g. 'Holi'.", max_length=128
                    ),
                ),
                (
                    "source",
                    models.CharField(
                        blank=True,
                        help_text="The exchange circular that declares this holiday, e.g. "
                        "'NSE/FAOP/71777'. Blank: provisional — confirm it against the "
                        "exchange's circular for the year (NSE and BSE publish next year's list "
                        "in December) and fill this in.",
                        max_length=200,
                    ),
                ),
            ],
            options={
                "ordering": ["date", "exchange"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("exchange", "date"), name="exchange_holiday_unique"
                    )
                ],
            },
        ),
        migrations.RunPython(seed_holidays, unseed_holidays),
    ]
