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
os.environ.setdefault("PUBLIC_BASE_URL", "http://127.0.0.1:8000")  # the simulator's redirect URI
os.environ.setdefault("BROKER_HOST_ALLOWLIST", ".dhan.co,.upstox.com,127.0.0.1,localhost")
# Redis: databases of the machine's Redis (TEST_REDIS_SERVER) of each pytest-xdist worker's own,
# so that workers never flush or lock each other's keys; a run without xdist takes gw0's. Per
# worker: REDIS_URL (channel layer, cache, snapshots; tests flush it), CELERY_BROKER_URL (apart,
# as a flush would drop Celery's bindings) and TEST_PROCESS_REDIS_URL (for the processes of a
# test that must not share the test's own database: the browser tests, `make demo`). 0 stays the
# demo's and 13 the benchmarks' (bench/_stack.py). The values go into os.environ, so processes
# the tests start inherit them; such a process (same worker) keeps what it is given, e.g. a
# private redis-server's REDIS_URL.
REDIS_DATABASES = {"gw0": (15, 14, 12), "gw1": (11, 10, 9), "gw2": (8, 7, 6), "gw3": (5, 4, 3)}
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
if os.environ.get("TEST_REDIS_WORKER") != _worker:  # this worker's first import, not a child's
    if _worker not in REDIS_DATABASES:
        raise RuntimeError(
            f"pytest-xdist worker {_worker} has no Redis databases: run with -n "
            f"{len(REDIS_DATABASES)} or fewer (tests/settings.py REDIS_DATABASES)"
        )
    _server = os.environ.get("TEST_REDIS_SERVER", "redis://127.0.0.1:6379").rstrip("/")
    _redis, _celery, _processes = REDIS_DATABASES[_worker]
    os.environ["REDIS_URL"] = f"{_server}/{_redis}"
    os.environ["CELERY_BROKER_URL"] = f"{_server}/{_celery}"
    os.environ["TEST_PROCESS_REDIS_URL"] = f"{_server}/{_processes}"
    os.environ["TEST_REDIS_WORKER"] = _worker
# A valid Fernet key that is obviously not a production secret (base64 of a readable phrase).
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "dGVzdC1vbmx5LWtleS1ub3QtYS1zZWNyZXQtISEhISE=")

from optionsite.settings import *  # noqa: E402, F403

# Subprocesses started by tests (runfeed, the Celery worker, daphne) must see the test
# database: SQLite's test database is a file here, not pytest-django's in-memory default.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # One file per test run, so concurrent runs on one machine never share a database.
    _test_db = LOCAL_DIR / f"test-db-{os.getpid()}.sqlite3"  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(_test_db)}  # noqa: F405
