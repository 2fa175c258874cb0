"""Settings for the test suite: the project's settings under a test environment.

pytest-django imports this module (DJANGO_SETTINGS_MODULE in pyproject.toml) before any
conftest, so the variables are in place when optionsite.settings reads them; subprocesses
started by tests (simulator, feed, web) inherit them. Only clearly fake secrets here.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("OPTIONSITE_SIMULATOR", "1")  # runsim and simaccounts
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-" + "x" * 40)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("DJANGO_HSTS_SECONDS", "0")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# The Celery broker apart: tests flush REDIS_URL's database, which would drop Celery's bindings.
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
# A valid Fernet key that is obviously not a production secret (base64 of a readable phrase).
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "dGVzdC1vbmx5LWtleS1ub3QtYS1zZWNyZXQtISEhISE=")

from optionsite.settings import *  # noqa: F403

# Subprocesses started by tests (runfeed, the Celery worker, daphne) must see the test
# database: SQLite's test database is a file here, not pytest-django's in-memory default.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # One file per test run, so concurrent runs on one machine never share a database.
    _test_db = LOCAL_DIR / f"test-db-{os.getpid()}.sqlite3"  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(_test_db)}  # noqa: F405
