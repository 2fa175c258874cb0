"""Settings come from the environment; a bad value stops startup naming the variable."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "optionsite" / "settings.py"

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "prod-like-secret-" + "k" * 50,
    "DJANGO_ALLOWED_HOSTS": "options.example.com",
    "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
}
VARIABLES = [
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DHAN_RENEW_MARGIN_HOURS",
    "REPOPULATE_EVERY_MINUTES",
    "TOKEN_CHECK_EVERY_MINUTES",
    "FIELD_ENCRYPTION_KEY",
    "CHANNEL_LAYER",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SECURE_COOKIES",
    "DJANGO_HSTS_SECONDS",
    "INSTRUMENT_KINDS",
    "LOG_LEVEL",
]


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**PRODUCTION, **env}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_production_environment_loads(monkeypatch):
    settings = load(monkeypatch)
    assert settings["DEBUG"] is False
    assert settings["TIME_ZONE"] == "Asia/Kolkata"
    assert settings["USE_TZ"] is True
    assert settings["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert (
        settings["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    )
    assert settings["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/0"


def test_missing_secret_key_without_debug_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        load(monkeypatch, DJANGO_SECRET_KEY=None)


def test_debug_runs_without_secret_key(monkeypatch):
    settings = load(monkeypatch, DJANGO_DEBUG="1", DJANGO_SECRET_KEY=None)
    assert settings["SECRET_KEY"].startswith("django-insecure")


def test_bad_boolean_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG='maybe'"):
        load(monkeypatch, DJANGO_DEBUG="maybe")


def test_empty_allowed_hosts_in_production_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_ALLOWED_HOSTS"):
        load(monkeypatch, DJANGO_ALLOWED_HOSTS="")


def test_postgres_database_url_is_used(monkeypatch):
    settings = load(monkeypatch, DATABASE_URL="postgres://user@db.internal:5433/options")
    db = settings["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == (
        "db.internal",
        5433,
        "options",
        "user",
    )


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "nonsense"])
def test_unsupported_database_url_names_variable(monkeypatch, url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        load(monkeypatch, DATABASE_URL=url)


def test_bad_redis_url_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        load(monkeypatch, REDIS_URL="http://127.0.0.1:6379")


def test_redis_url_feeds_channels_cache_and_celery(monkeypatch):
    settings = load(monkeypatch, REDIS_URL="redis://cache.internal:6380/3")
    hosts = settings["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert [host["address"] for host in hosts] == ["redis://cache.internal:6380/3"]
    assert settings["CACHES"]["default"]["LOCATION"] == "redis://cache.internal:6380/3"
    assert settings["CELERY_BROKER_URL"] == "redis://cache.internal:6380/3"


def test_missing_encryption_key_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY is not set"):
        load(monkeypatch, FIELD_ENCRYPTION_KEY=None)


def test_invalid_encryption_key_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY key #2"):
        load(monkeypatch, FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode() + ",not-a-key")


def test_encryption_keys_rotate_comma_separated(monkeypatch):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = load(monkeypatch, FIELD_ENCRYPTION_KEY=f"{first}, {second}")
    assert settings["FIELD_ENCRYPTION_KEYS"] == [first, second]


def test_unknown_channel_layer_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="CHANNEL_LAYER='rabbit'"):
        load(monkeypatch, CHANNEL_LAYER="rabbit")


def test_bad_integer_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_HSTS_SECONDS"):
        load(monkeypatch, DJANGO_HSTS_SECONDS="a year")


def test_unknown_instrument_kind_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="INSTRUMENT_KINDS"):
        load(monkeypatch, INSTRUMENT_KINDS="index,stock")


def test_bad_log_level_names_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="LOG_LEVEL"):
        load(monkeypatch, LOG_LEVEL="LOUD")


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "optionsite.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_check_deploy_is_clean_in_production(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.integration
def test_startup_fails_naming_the_variable(tmp_path):
    result = _manage("check", env={**PRODUCTION, "REDIS_URL": "amqp://x"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "REDIS_URL" in result.stderr


# --- periodic tasks ---------------------------------------------------------------------------


def test_beat_schedule_runs_each_task_in_indian_time(monkeypatch):
    settings = load(monkeypatch)
    assert settings["CELERY_TIMEZONE"] == "Asia/Kolkata"
    schedule = settings["CELERY_BEAT_SCHEDULE"]
    tasks = {entry["task"] for entry in schedule.values()}
    assert tasks == {
        "chains.repopulate_chains",
        "brokers.check_tokens",
        "brokers.refresh_instruments",
        "chains.prune_history",
    }
    assert (
        schedule["prune history"]["schedule"].hour,
        schedule["prune history"]["schedule"].minute,
    ) == ({5}, {0})
    opening = schedule["repopulate chains at the open"]
    assert opening["kwargs"] == {"force": True, "calendar": True}
    # Every repopulate the beat starts asks the exchange calendar first (holidays).
    assert schedule["repopulate chains"]["kwargs"] == {"calendar": True}
    assert (opening["schedule"].hour, opening["schedule"].minute) == ({9}, {15})
    closing = schedule["repopulate chains after the close"]["schedule"]
    assert (closing.hour, closing.minute) == ({15}, {35})
    refresh = schedule["refresh instruments"]["schedule"]
    assert (refresh.hour, refresh.minute) == ({6}, {30})
    assert settings["DHAN_RENEW_MARGIN_HOURS"] == 2


def test_celery_broker_url_may_differ_from_redis_url(monkeypatch):
    settings = load(monkeypatch, CELERY_BROKER_URL="redis://queue.internal:6379/1")
    assert settings["CELERY_BROKER_URL"] == "redis://queue.internal:6379/1"
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL='amqp://x' is not a Redis"):
        load(monkeypatch, CELERY_BROKER_URL="amqp://x")


@pytest.mark.parametrize("hours", ["0", "24", "two"])
def test_a_renewal_margin_outside_a_token_life_is_refused(monkeypatch, hours):
    with pytest.raises(ImproperlyConfigured, match="DHAN_RENEW_MARGIN_HOURS"):
        load(monkeypatch, DHAN_RENEW_MARGIN_HOURS=hours)


@pytest.mark.parametrize("name", ["REPOPULATE_EVERY_MINUTES", "TOKEN_CHECK_EVERY_MINUTES"])
@pytest.mark.parametrize("minutes", ["0", "60"])
def test_task_intervals_outside_an_hour_are_refused(monkeypatch, name, minutes):
    with pytest.raises(ImproperlyConfigured, match=name):
        load(monkeypatch, **{name: minutes})
