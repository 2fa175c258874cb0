"""Security headers and the settings behind them: a strict Content-Security-Policy on every
page (admin included), HSTS preload and includeSubDomains only on request, PUBLIC_BASE_URL on
https outside debug, and `check --deploy` clean for a production environment."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "optionsite" / "settings.py"
TEMPLATES = ROOT / "templates"

# What a production deployment behind a TLS proxy sets (fake secrets).
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "prod-like-secret-" + "k" * 50,
    "DJANGO_ALLOWED_HOSTS": "options.example.com",
    "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "PUBLIC_BASE_URL": "https://options.example.com",
}
# Every variable these tests set or that the test environment (tests/settings.py) sets.
CLEARED = [
    *PRODUCTION,
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SECURE_COOKIES",
    "DJANGO_HSTS_SECONDS",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_HSTS_PRELOAD",
    "DJANGO_BEHIND_TLS_PROXY",
    "DJANGO_PROXY_COUNT",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "AXES_FAILURE_LIMIT",
    "AXES_COOLOFF_MINUTES",
]


def load(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> dict:
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**PRODUCTION, **env}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


# --- HSTS and PUBLIC_BASE_URL ---------------------------------------------------------------


def test_hsts_preload_and_subdomains_are_opt_in(monkeypatch):
    settings = load(monkeypatch)
    assert settings["SECURE_HSTS_SECONDS"] == 31_536_000
    assert settings["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert settings["SECURE_HSTS_PRELOAD"] is False
    chosen = load(monkeypatch, DJANGO_HSTS_INCLUDE_SUBDOMAINS="1", DJANGO_HSTS_PRELOAD="1")
    assert chosen["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert chosen["SECURE_HSTS_PRELOAD"] is True


@pytest.mark.parametrize(
    "url", ["http://options.example.com", "http://10.0.0.5:8000", "ftp://options.example.com"]
)
def test_public_base_url_must_be_https_outside_debug(monkeypatch, url):
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
        load(monkeypatch, PUBLIC_BASE_URL=url)


def test_public_base_url_is_required_outside_debug(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL is not set"):
        load(monkeypatch, PUBLIC_BASE_URL=None)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000"])
def test_a_loopback_public_base_url_may_be_http(monkeypatch, url):
    """Reachable from this machine only (tests, a local run): nothing crosses a network."""
    assert load(monkeypatch, PUBLIC_BASE_URL=url)["PUBLIC_BASE_URL"] == url


def test_debug_defaults_to_the_local_address(monkeypatch):
    settings = load(monkeypatch, DJANGO_DEBUG="1", PUBLIC_BASE_URL=None)
    assert settings["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert load(monkeypatch, DJANGO_DEBUG="1", PUBLIC_BASE_URL="http://opt.example.test")


def test_public_base_url_with_a_path_is_refused(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
        load(monkeypatch, PUBLIC_BASE_URL="https://options.example.com/options?x=1")


# --- check --deploy -------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "DJANGO_BEHIND_TLS_PROXY": "1",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://options.example.com",
        },
        {"DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1", "DJANGO_HSTS_PRELOAD": "1"},
    ],
)
def test_check_deploy_is_clean_for_a_production_environment(tmp_path, extra):
    clean = {k: v for k, v in os.environ.items() if k not in CLEARED and k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **clean,
            **PRODUCTION,
            **extra,
            "DJANGO_SETTINGS_MODULE": "optionsite.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- Content-Security-Policy ----------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [d.strip().split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def assert_strict(response) -> None:
    csp = policy(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert "'self'" in csp["connect-src"]
    assert not any("unsafe" in source for sources in csp.values() for source in sources)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_pages_carry_a_strict_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_strict(response)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/", "/status/", "/chains/NIFTY/", "/admin/", "/admin/brokers/brokeraccount/add/"],
)
def test_pages_carry_a_strict_policy(admin_client, path, clean_redis):
    response = admin_client.get(path)
    assert response.status_code in (200, 302, 404, 503), response
    assert_strict(response)


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE = re.compile(r"\sstyle\s*=|<style", re.I)


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES))
)
def test_templates_hold_no_inline_script_or_style(template):
    """The policy would block them: scripts and styles live in static/ files."""
    html = template.read_text()
    assert not INLINE_SCRIPT.search(html)
    assert not HANDLER.search(html)
    assert not STYLE.search(html)


@pytest.mark.django_db
def test_admin_pages_load_the_site_admin_stylesheet(client):
    """Admin columns colour state with its classes (style attributes would be refused)."""
    html = client.get("/admin/login/").content.decode()
    assert "optionsite/admin.css" in html
    assert 'rel="icon" href="data:,"' in html  # no favicon.ico request answered 404
