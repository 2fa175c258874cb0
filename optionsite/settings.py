"""Settings for optionsite, read from the environment only (see README "Configuration").

Every variable is read and validated here. A bad value stops startup with
``ImproperlyConfigured`` naming the variable and saying what to do.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"  # git-ignored: demo database, generated demo key, redis files

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    """Return the variable, or ``default`` when it is unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean variable; anything but a clear yes/no is an error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return an integer variable (optionally bounded below)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}.")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """Return a number variable (seconds, say), at least ``minimum``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if not value >= minimum:  # also refuses NaN
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated list variable (blank items dropped)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# --- core -----------------------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off: set it to a "
            "long random string (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    SECRET_KEY = "django-insecure-development-only-key-never-used-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS is empty while DJANGO_DEBUG is off: list the host names this site "
        "is served under, comma-separated (e.g. options.example.com)."
    )
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if urlsplit(_origin).scheme not in {"http", "https"}:
        raise ImproperlyConfigured(
            f"DJANGO_CSRF_TRUSTED_ORIGINS entry {_origin!r} must start with http:// or https://."
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # login throttling (see "login throttling" below)
    "csp",  # Content-Security-Policy header
    "django_otp",  # two-factor admin login, when ADMIN_REQUIRE_OTP is on
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "brokers",
    "chains",
]
# The exchange simulator (runsim, simaccounts) is a development and test tool: production does
# not install it (nor its aiohttp dependency) unless OPTIONSITE_SIMULATOR=1 asks for it.
SIMULATOR_INSTALLED = env_bool("OPTIONSITE_SIMULATOR", DEBUG)
if SIMULATOR_INSTALLED:
    INSTALLED_APPS.append("brokers.simulator")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chains.middleware.StoreUnavailableMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

# django-axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "optionsite.urls"
ASGI_APPLICATION = "optionsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------

_DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{LOCAL_DIR / 'db.sqlite3'}"
try:
    _database = dj_database_url.parse(_DATABASE_URL, conn_max_age=60, conn_health_checks=True)
except ValueError as exc:
    raise ImproperlyConfigured(
        f"DATABASE_URL is not a database URL this site can use: {exc}"
    ) from exc
if _database["ENGINE"] not in {
    "django.db.backends.sqlite3",
    "django.db.backends.postgresql",
}:
    raise ImproperlyConfigured(
        f"DATABASE_URL uses {_database['ENGINE']}: optionsite supports sqlite:/// and "
        "postgres:// (postgresql://) URLs."
    )
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["CONN_MAX_AGE"] = 0
    _database.setdefault("OPTIONS", {})["timeout"] = 20
    _db_name = str(_database["NAME"])
    if _db_name != ":memory:":
        Path(_db_name).parent.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: channel layer, cache, celery ------------------------------------------------------

REDIS_URL = env_str("REDIS_URL") or "redis://127.0.0.1:6379/0"
if urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured(
        f"REDIS_URL={REDIS_URL!r} is not a Redis URL: use redis://HOST:PORT/DB, rediss:// or unix://."
    )

CHANNEL_LAYER_BACKEND = env_str("CHANNEL_LAYER", "redis")
if CHANNEL_LAYER_BACKEND == "redis":
    # Waiting for a message is not an error. channels-redis 4.3 waits with a blocking pop
    # (BZPOPMIN) of RedisChannelLayer.brpop_timeout = 5 s and loops; redis-py's default read
    # timeout is 5 s too, so a quiet chain's read raced its own pop and raised TimeoutError
    # (every viewer closed 1011 and reconnected every ~5 s). Reads here wait 3x the pop; a
    # connection still fails fast and an idle one is pinged before use (a restarted Redis is
    # reconnected, not an error). Consumers re-add their group every 10 s
    # (chains.consumers.GROUP_REFRESH_SECONDS), so group_expiry only has to outlive that: the
    # channels of a crashed web process leave their groups within minutes instead of a day.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15.0,
                        "socket_connect_timeout": 2.0,
                        "health_check_interval": 10,
                    }
                ],
                "capacity": 1000,
                "expiry": 30,
                "group_expiry": 300,
            },
        }
    }
elif CHANNEL_LAYER_BACKEND == "memory":
    # Only for a single-process development run: the system check optionsite.E004 refuses it
    # outside DEBUG because feed workers and web processes could not reach each other.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    raise ImproperlyConfigured(
        f"CHANNEL_LAYER={CHANNEL_LAYER_BACKEND!r} is unknown: use 'redis' (default) or 'memory'."
    )

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "optionsite",
        "TIMEOUT": None,
    }
}

# Sessions live in the database and are read from Redis (chains.sessions, like Django's cached_db:
# a Redis restart logs nobody out; while Redis does not answer they are read from the database).
# A session's copy in Redis lives at most SESSION_CACHE_SECONDS (the bound for a copy Redis
# failed to mark ended at logout). The API's login check caches a user's state (active,
# password) SESSION_USER_CACHE_SECONDS; saving or deleting the user drops it at once, so only a
# change that bypasses save() (a queryset update) takes up to that long to refuse the sessions.
SESSION_ENGINE = "chains.sessions"
SESSION_CACHE_SECONDS = env_int("SESSION_CACHE_SECONDS", 300, minimum=1)
SESSION_USER_CACHE_SECONDS = env_int("SESSION_USER_CACHE_SECONDS", 60, minimum=1)

# The Celery broker may live in its own Redis database (the test suite flushes REDIS_URL's).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
if urlsplit(CELERY_BROKER_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r} is not a Redis URL: use redis://HOST:PORT/DB."
    )
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "Asia/Kolkata"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Periodic tasks (celery -A optionsite beat), in Indian time. Each records its last outcome
# (chains.TaskOutcome), shown on /status/.
REPOPULATE_EVERY_MINUTES = env_int("REPOPULATE_EVERY_MINUTES", 1, minimum=1)
TOKEN_CHECK_EVERY_MINUTES = env_int("TOKEN_CHECK_EVERY_MINUTES", 15, minimum=1)
# Intraday history: minute bars kept HISTORY_DAYS days, daily closes (IV rank) HISTORY_DAILY_DAYS.
HISTORY_DAYS = env_int("HISTORY_DAYS", 30, minimum=1)
HISTORY_DAILY_DAYS = env_int("HISTORY_DAILY_DAYS", 365, minimum=1)
for _name, _every in (
    ("REPOPULATE_EVERY_MINUTES", REPOPULATE_EVERY_MINUTES),
    ("TOKEN_CHECK_EVERY_MINUTES", TOKEN_CHECK_EVERY_MINUTES),
):
    if _every > 59:
        raise ImproperlyConfigured(f"{_name}={_every}: use 1 to 59 minutes.")
_TRADING_DAYS = "mon-fri"
CELERY_BEAT_SCHEDULE = {
    # REST chains for chains whose feed is not live, through market hours.
    "repopulate chains": {
        "task": "chains.repopulate_chains",
        "schedule": crontab(
            minute=f"*/{REPOPULATE_EVERY_MINUTES}", hour="9-15", day_of_week=_TRADING_DAYS
        ),
        # The exchange calendar (holidays, 09:15-15:30 IST) decides per chain.
        "kwargs": {"calendar": True},
        "options": {"expires": REPOPULATE_EVERY_MINUTES * 60},
    },
    # Every tracked chain from REST at the open and after the close, live feed or not.
    "repopulate chains at the open": {
        "task": "chains.repopulate_chains",
        "schedule": crontab(minute=15, hour=9, day_of_week=_TRADING_DAYS),
        "kwargs": {"force": True, "calendar": True},
        "options": {"expires": 15 * 60},
    },
    "repopulate chains after the close": {
        "task": "chains.repopulate_chains",
        "schedule": crontab(minute=35, hour=15, day_of_week=_TRADING_DAYS),
        "kwargs": {"force": True, "calendar": True},
        "options": {"expires": 15 * 60},
    },
    # Validate tokens, renew DhanHQ tokens before expiry, mark Upstox tokens expired at 03:30.
    "check tokens": {
        "task": "brokers.check_tokens",
        "schedule": crontab(minute=f"*/{TOKEN_CHECK_EVERY_MINUTES}"),
        "options": {"expires": TOKEN_CHECK_EVERY_MINUTES * 60},
    },
    # Intraday history past HISTORY_DAYS (whole days) and daily closes past HISTORY_DAILY_DAYS.
    "prune history": {
        "task": "chains.prune_history",
        "schedule": crontab(minute=0, hour=5),
        "options": {"expires": 3 * 3600},
    },
    # Instrument masters, after the brokers publish them (~06:00 IST).
    "refresh instruments": {
        "task": "brokers.refresh_instruments",
        "schedule": crontab(minute=30, hour=6),
        "options": {"expires": 3 * 3600},
    },
}

# --- secrets at rest ----------------------------------------------------------------------------

_DEMO_KEY_FILE = LOCAL_DIR / "field_encryption.key"
_keys_raw = env_str("FIELD_ENCRYPTION_KEY") or ""
if not _keys_raw and DEBUG and _DEMO_KEY_FILE.exists():
    _keys_raw = _DEMO_KEY_FILE.read_text().strip()
if not _keys_raw:
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEY is not set. Broker secrets are encrypted with it: set it to a "
        "Fernet key (python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'). `make demo` generates a local one."
    )
FIELD_ENCRYPTION_KEYS: list[str] = [k.strip() for k in _keys_raw.split(",") if k.strip()]
for _position, _key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key.encode())
    except ValueError:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEY key #{_position} is not a valid Fernet key (32 url-safe "
            "base64-encoded bytes). Several keys may be given comma-separated: the first "
            "encrypts, all decrypt (key rotation)."
        ) from None

# --- auth, i18n, static -----------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-in"
TIME_ZONE = "Asia/Kolkata"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# node_modules/: the browser libraries of package.json (`make` runs npm ci), served under
# static/vendor/ by the site itself.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist"),
]
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or BASE_DIR / ".local" / "staticfiles")
# daphne serves /static/ itself unless a proxy in front does (then set this to 0).
SERVE_STATIC = env_bool("DJANGO_SERVE_STATIC", True)

# --- production hardening (python manage.py check --deploy is clean) ---------------------------

SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
# includeSubDomains commits every subdomain of the site's domain to https, and preload asks the
# browsers to hard-code that for years (undoing it takes months): both are a decision about the
# whole domain, so they are opt-in, and check --deploy is not asked to recommend them.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
BEHIND_TLS_PROXY = env_bool("DJANGO_BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies of this site's own append the client's address to X-Forwarded-For. Login
# throttling counts the address the outermost of them saw (chains.origin.client_ip); 0 = the
# header is ignored (anyone can send one), the connection's address counts.
CLIENT_IP_PROXY_COUNT = env_int("DJANGO_PROXY_COUNT", 1 if BEHIND_TLS_PROXY else 0, minimum=0)
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp) on every page Django renders, admin included: scripts,
# styles, images and connections from this site only (no inline script or style: templates
# load them from static/), no framing, no plugins, forms post to this site only. 'self' in
# connect-src covers the page's own ws:// or wss:// origin (CSP Level 3), the live chain socket.
# The favicon is an empty data: URL, the only image not served from static/.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- login throttling (django-axes) ---------------------------------------------------------
#
# Failed logins on /accounts/login/ and /admin/login/ are counted per client address and per
# user name, in the database (admin → Axes → Access attempts). AXES_FAILURE_LIMIT failures lock
# that address, or that user name from any address, out for AXES_COOLOFF_MINUTES; the correct
# password is refused too meanwhile. An admin unlocks in admin (delete the access attempts) or
# with `python manage.py axes_reset_username NAME` / `axes_reset_ip ADDRESS` / `axes_reset`.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either one reaching the limit locks
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# The lockout lasts the cool-off from the failure that reached the limit: attempts during it
# are refused without extending it, so the page can say when to come back.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "chains.origin.client_ip"
AXES_VERBOSE = False  # no configuration banner on every manage.py command; failures still log

# Two-factor admin (django-otp): with ADMIN_REQUIRE_OTP on, admin asks staff for a one-time code
# from an authenticator app (TOTP) or a recovery code after the password, and a staff user
# without a confirmed device cannot open admin. Add each staff user's device (admin → TOTP
# devices, scan the QR code; a recovery code: `python manage.py addstatictoken NAME`) before
# turning it on.
ADMIN_REQUIRE_OTP = env_bool("ADMIN_REQUIRE_OTP", False)
OTP_TOTP_ISSUER = "optionsite"
# Admin shows a device's seed (its QR code, for enrolment) and recovery codes only to the device's
# own user and to superusers (brokers.staff_devices).

# --- product settings -------------------------------------------------------------------------

# Which instrument-master rows are kept: index rows, index futures, index options. A
# comma-separated list of underlyings narrows it further (blank = every index).
INSTRUMENT_KINDS = env_list("INSTRUMENT_KINDS", ["index", "future", "option"])
for _kind in INSTRUMENT_KINDS:
    if _kind not in {"index", "future", "option"}:
        raise ImproperlyConfigured(
            f"INSTRUMENT_KINDS contains {_kind!r}: allowed are index, future, option."
        )
INSTRUMENT_UNDERLYINGS = [u.upper() for u in env_list("INSTRUMENT_UNDERLYINGS", [])]
# Instrument-master limits (MB): a download as sent, and what a file holds after gzip is
# undone. The real masters are far smaller: DhanHQ's CSV ~200k rows of ~130 bytes (~30 MB),
# Upstox's complete.json.gz a few hundred thousand records of ~550 bytes (~150-200 MB unpacked).
# One record (JSON item, CSV row) may not exceed 64 KB (brokers/masters.py MAX_RECORD_BYTES).
INSTRUMENT_MASTER_MAX_DOWNLOAD_BYTES = (
    env_int("INSTRUMENT_MASTER_MAX_DOWNLOAD_MB", 200, minimum=1) * 1024 * 1024
)
INSTRUMENT_MASTER_MAX_BYTES = env_int("INSTRUMENT_MASTER_MAX_MB", 500, minimum=1) * 1024 * 1024

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
# The address people reach this site at (scheme, host and port; no path): the Upstox redirect
# and notifier URLs to register with the broker are built from it, and WebSockets are accepted
# only from it and DJANGO_CSRF_TRUSTED_ORIGINS (chains.origin). Outside debug it is required and
# must be https://, but for a loopback address (reachable from this machine only).
_public_base_url = env_str("PUBLIC_BASE_URL") or ""
if not _public_base_url:
    if not DEBUG:
        raise ImproperlyConfigured(
            "PUBLIC_BASE_URL is not set. It is required when DJANGO_DEBUG is off: set it to the "
            "https:// address people reach this site at, e.g. https://options.example.com"
        )
    _public_base_url = "http://127.0.0.1:8000"
PUBLIC_BASE_URL = _public_base_url.rstrip("/")
_public = urlsplit(PUBLIC_BASE_URL)
try:
    _public_port = _public.port  # ValueError for a port that is not a number
except ValueError:
    _public_port = -1
if (
    _public.scheme not in {"http", "https"}
    or not _public.hostname
    or _public_port == -1
    or _public.path
    or _public.query
    or _public.fragment
):
    raise ImproperlyConfigured(
        f"PUBLIC_BASE_URL={PUBLIC_BASE_URL!r} must be an https:// address with no path, e.g. "
        "https://options.example.com"
    )
if not DEBUG and _public.scheme != "https" and _public.hostname not in _LOOPBACK_HOSTS:
    raise ImproperlyConfigured(
        f"PUBLIC_BASE_URL={PUBLIC_BASE_URL!r} must start with https:// when DJANGO_DEBUG is off: "
        "the login, the session cookie and the Upstox redirect must not cross the network in "
        "clear. Serve the site over TLS (a proxy in front: see DJANGO_BEHIND_TLS_PROXY)."
    )

# The only hosts broker credentials and downloads may go to (REST, feed, login, instrument
# master, and the feed address a broker hands out). An entry is an exact host name or IP, or
# ".example.com" for that domain and its subdomains (as in ALLOWED_HOSTS; no "*" wildcard).
# Blank URLs in an account mean the broker's real hosts, which the default lists. Outside DEBUG
# every broker URL must also be https:// (wss:// for the feed), except to a loopback host
# (127.0.0.1, ::1, localhost) listed here. The demo and the tests add the simulator's loopback
# address. Rules and enforcement: brokers/endpoints.py.
BROKER_HOST_ALLOWLIST = [
    h.lower()
    for h in env_list(
        "BROKER_HOST_ALLOWLIST",
        [".dhan.co", ".upstox.com"],
    )
]

# Chain pages, the JSON API and the WebSocket need a login unless this is on.
CHAINS_PUBLIC = env_bool("CHAINS_PUBLIC", False)
# Seconds without an update before a chain page shows the stale banner.
CHAIN_STALE_SECONDS = env_int("CHAIN_STALE_SECONDS", 10, minimum=1)
# Live WebSocket limits (chains.socket_limits). Open sockets per logged-in user, counted in Redis
# across every web process (0 = no cap); sockets without a login (CHAINS_PUBLIC) are counted per
# client address instead (behind proxies, the address DJANGO_PROXY_COUNT says, as for login
# throttling: chains.origin.client_ip). A socket beyond its cap is closed with code 4429.
WS_MAX_SOCKETS_PER_USER = env_int("WS_MAX_SOCKETS_PER_USER", 20, minimum=0)
WS_MAX_SOCKETS_PER_IP = env_int("WS_MAX_SOCKETS_PER_IP", 50, minimum=0)
# Seconds between checks that a socket's session still holds an active user (and at every resync
# a client asks for); a socket whose session ended is closed with code 4401.
WS_SESSION_CHECK_SECONDS = env_float("WS_SESSION_CHECK_SECONDS", 30.0, minimum=0.05)

# /metrics (Prometheus, chains.metrics): who may read it. METRICS_ALLOW lists "staff" (a logged-in
# staff user) and client addresses or networks (10.0.0.5, 10.0.0.0/8, ::1; behind proxies the
# address DJANGO_PROXY_COUNT says, as for login throttling); a request with
# "Authorization: Bearer <METRICS_TOKEN>" is let in when METRICS_TOKEN is set. Default: staff
# only, nothing public. Prometheus scrapes each web process at its internal address over plain
# HTTP: /metrics is exempt from the HTTPS redirect (a staff session cookie is https-only anyway).
METRICS_ALLOW = env_list("METRICS_ALLOW", ["staff"])
METRICS_ALLOW_NETWORKS: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
for _entry in METRICS_ALLOW:
    if _entry == "staff":
        continue
    try:
        METRICS_ALLOW_NETWORKS.append(ipaddress.ip_network(_entry, strict=False))
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOW entry {_entry!r} is neither 'staff' nor an address or network "
            "(e.g. METRICS_ALLOW=staff,127.0.0.1,10.0.0.0/8)."
        ) from None
METRICS_TOKEN = env_str("METRICS_TOKEN") or ""
if METRICS_TOKEN and len(METRICS_TOKEN) < 24:
    raise ImproperlyConfigured(
        "METRICS_TOKEN is shorter than 24 characters: use a long random value, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
    )
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]

# Feed worker timings (seconds). Flushes coalesce ticks into one message per chain.
FEED_SETTINGS = {
    "flush_interval": env_float("FEED_FLUSH_INTERVAL", 0.25, minimum=0.01),
    "liveness_timeout": env_float("FEED_LIVENESS_TIMEOUT", 60.0, minimum=1),
    "quiet_after": env_float("FEED_QUIET_AFTER", 5.0, minimum=0.1),
    "persist_interval": env_float("FEED_PERSIST_INTERVAL", 300.0, minimum=1),
    "ping_interval": env_float("FEED_PING_INTERVAL", 10.0, minimum=0.1),
    "backoff_cap": env_float("FEED_BACKOFF_CAP", 30.0, minimum=0.1),
    # A saved account is announced over Redis at once; this slow re-read is only a fallback.
    "token_poll_interval": env_float("FEED_TOKEN_POLL_INTERVAL", 30.0, minimum=0.1),
    # Intraday history: the feed worker records a minute bar per chain (off: nothing recorded).
    "history_recording": env_bool("HISTORY_RECORDING", True),
}

# DhanHQ tokens live 24 h: the token check renews one that expires within this many hours.
DHAN_RENEW_MARGIN_HOURS = env_int("DHAN_RENEW_MARGIN_HOURS", 2, minimum=1)
if DHAN_RENEW_MARGIN_HOURS >= 24:
    raise ImproperlyConfigured(
        f"DHAN_RENEW_MARGIN_HOURS={DHAN_RENEW_MARGIN_HOURS}: DhanHQ tokens live 24 hours; use "
        "1 to 23 (default 2)."
    )

# --- logging ----------------------------------------------------------------------------------

LOG_LEVEL = (env_str("LOG_LEVEL") or "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r}: use DEBUG, INFO, WARNING or ERROR.")
_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _at_least(floor: str) -> str:
    """LOG_LEVEL, but never below ``floor``."""
    return max(LOG_LEVEL, floor, key=_LEVELS.index)


# Every handler carries the "redact" filter (brokers.logredact): tokens, OAuth and feed codes,
# API secrets and the notifier path secret are masked in every record, whatever library wrote
# it. A handler added here must list it too (tests/brokers/test_logredact.py checks).
# LOGGING_CONFIG also routes daphne's access lines, which daphne writes to stdout itself,
# through logging (logger "daphne.access", INFO) so that they are masked as well.
LOGGING_CONFIG = "brokers.logredact.configure_logging"
# LOG_FORMAT=json writes one JSON object a line (timestamp, level, logger, message, and any
# extra fields or exception), for log collectors; plain (default) one line of text.
LOG_FORMAT = (env_str("LOG_FORMAT") or "plain").lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain (default) or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "brokers.logredact.RedactingFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "brokers.logredact.RedactingJsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": "INFO"},
        # Django's own default handler for runserver lines: dropped, they go to "console".
        "django.server": {"handlers": [], "propagate": True},
        "httpx": {"level": "WARNING"},  # httpx logs request URLs at INFO; ours redact, its don't
        "httpcore": {"level": "WARNING"},
        # Protocol libraries are capped whatever LOG_LEVEL is: at DEBUG they log every frame
        # and the handshake (request line and headers: the DhanHQ feed URL carries the token,
        # the Upstox one a code), which floods the log and is the likeliest place for a
        # secret the filter does not know the shape of. LOG_LEVEL=DEBUG is for our code.
        "websockets": {"level": _at_least("WARNING")},
        "asyncio": {"level": _at_least("WARNING")},
        "aiohttp": {"level": _at_least("INFO")},  # the simulator's access lines at INFO
        "daphne": {"level": _at_least("INFO")},  # access lines ("daphne.access") at INFO
        "twisted": {"level": _at_least("INFO")},  # daphne's server library
    },
}
# Celery's worker keeps the handlers above (its own would not redact).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
