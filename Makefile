# optionsite — `make demo` runs the whole system on the simulator, `make test` runs every check,
# `make test-fast` the pure and unit tests (no process started) in under a minute.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every package is installed from a lock file (pinned, with hashes: pip --require-hashes), compiled
# by `make lock` from the top-level requirements: requirements.txt (runtime) → requirements.lock,
# requirements-demo.txt (+ the simulator) → requirements-demo.lock, requirements-dev.txt (+ tests)
# → requirements-dev.lock, requirements-bench.txt (+ the brokers' SDKs, bench/decode.py's
# baselines) → requirements-bench.lock. A stamp named after a lock's hash marks the venv as
# installed from it.
lock_hash = $(shell cat $(1) 2>/dev/null | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-dev-$(call lock_hash,requirements-dev.lock)
DEMO_STAMP := $(VENV)/.installed-demo-$(call lock_hash,requirements-demo.lock)
KEY_FILE := .local/field_encryption.key
# The browser libraries of package.json (uPlot), pinned in package-lock.json and served by the
# site itself from node_modules/ (optionsite/settings.py STATICFILES_DIRS): no CDN.
NODE_STAMP := node_modules/.installed-$(call lock_hash,package-lock.json)

CHROMIUM := /usr/bin/chromium
NGINX := /usr/sbin/nginx
PROMTOOL := /usr/bin/promtool
# pytest-xdist workers of `make test` (each has its own Redis databases, test database and
# simulator: tests/settings.py, tests/conftest.py); a file's tests stay on one worker, so that
# module fixtures (the chaos stack, private redis-servers) start once. PYTEST_WORKERS=0: serial.
# At most 4: Redis has databases for 4 workers (tests/settings.py REDIS_DATABASES).
PYTEST_WORKERS ?= auto
PYTEST := $(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile

.PHONY: demo run deploy-units test test-fast lint typecheck audit lock lock-check browser pytest pytest-postgres proto bench clean help

help:
	@echo "make demo   — set up and run optionsite on the local simulator"
	@echo "make run    — the Procfile in the foreground, production-like (settings from .env)"
	@echo "make deploy-units — regenerate deploy/systemd/ from the Procfile"
	@echo "make test   — set up and run lint + the whole test suite"
	@echo "make test-fast — lint + the tests that start no process (pytest -m 'not integration')"
	@echo "make lock   — recompile the .lock files after a requirements*.txt change"

$(STAMP): requirements-dev.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	@rm -f $(VENV)/.installed-dev-* && touch $@

$(DEMO_STAMP): requirements-demo.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-demo.lock
	@rm -f $(VENV)/.installed-demo-* && touch $@

# pip-tools (pinned in requirements-dev.txt) against PyPI itself, whatever index this machine's
# pip is configured with, so that the hashes are PyPI's. Pins already in a lock are kept (a new
# requirement brings only what it needs); `make lock LOCK_UPGRADE=1` moves every package to its
# newest release the requirements allow. The locks are for CPython 3.11 on Linux.
PIP_COMPILE = env PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= CUSTOM_COMPILE_COMMAND="make lock" \
  $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --index-url https://pypi.org/simple $(if $(LOCK_UPGRADE),--upgrade)

lock: $(STAMP)
	$(PIP_COMPILE) --output-file requirements.lock requirements.txt
	$(PIP_COMPILE) --output-file requirements-demo.lock requirements-demo.txt
	$(PIP_COMPILE) --output-file requirements-dev.lock requirements-dev.txt
	$(PIP_COMPILE) --output-file requirements-bench.lock requirements-bench.txt

# Fails when a requirements*.txt pin is missing from its lock (edited without `make lock`).
lock-check:
	@$(PYTHON) .ci/check_locks.py

# Known vulnerabilities in every locked package (pip-audit, pinned in requirements-dev.txt), from
# PyPI's per-release JSON (pypi.org/pypi/NAME/VERSION/json). --strict: a package that could not
# be audited fails the run too. Where that service does not answer (a network that lets through
# only part of PyPI), AUDIT=auto (the default) says so in a warning and goes on; AUDIT=require
# fails instead.
AUDIT ?= auto
PIP_AUDIT := $(VENV)/bin/pip-audit --strict --disable-pip --require-hashes --progress-spinner off \
  -r requirements-dev.lock
audit: $(STAMP) lock-check
	@if $(PY) -c "import urllib.request as r; r.urlopen('https://pypi.org/pypi/pip/24.0/json', timeout=30)" 2>/dev/null; then \
	  echo "$(PIP_AUDIT)"; $(PIP_AUDIT); \
	elif [ "$(AUDIT)" = require ]; then \
	  echo "make audit: PyPI's vulnerability data (pypi.org/pypi/NAME/VERSION/json) does not answer from here."; exit 1; \
	else \
	  echo "WARNING: make audit: PyPI's vulnerability data (pypi.org/pypi/NAME/VERSION/json) does not answer from here: the locked packages were NOT audited (AUDIT=require makes this an error)."; \
	fi

$(NODE_STAMP): package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

$(KEY_FILE):
	@mkdir -p .local
	@$(PY) -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())" > $@
	@chmod 600 $@
	@echo "Generated a local demo encryption key in $@ (git-ignored)."

demo: $(DEMO_STAMP) $(KEY_FILE) $(NODE_STAMP)
	DJANGO_DEBUG=1 $(PY) manage.py demo

# The Procfile in the foreground (honcho): web ×RUN_WEB daphnes on RUN_PORT, RUN_PORT+1, …, the
# feed, the Celery worker and beat, production-like — settings from .env (deploy/env.example),
# DEBUG off, migrations applied, static files collected. RUN_PROCESSES="web" starts only those
# (e.g. to add broker accounts in admin first); RUN_ENV names another settings file. Ctrl-C
# stops all; one that dies stops the rest.
RUN_PORT ?= 8001
RUN_WEB ?= 2
RUN_PROCESSES ?=
RUN_ENV ?= .env
HONCHO := $(VENV)/bin/honcho -f Procfile -e $(RUN_ENV)
run: $(STAMP) $(NODE_STAMP)
	@test -f $(RUN_ENV) || { echo "make run reads its settings from $(RUN_ENV): cp deploy/env.example .env and fill it in. For a run on this machine without TLS also set PUBLIC_BASE_URL=http://127.0.0.1:$(RUN_PORT) DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost DJANGO_BEHIND_TLS_PROXY=0 DJANGO_PROXY_COUNT=0 DJANGO_SECURE_SSL_REDIRECT=0 DJANGO_SECURE_COOKIES=0 DJANGO_SERVE_STATIC=1."; exit 1; }
	@if grep -Eiq '^DJANGO_DEBUG=(1|true|yes|on)$$' $(RUN_ENV); then echo "make run is production-like: set DJANGO_DEBUG=0 in $(RUN_ENV) (make demo is the development run)."; exit 1; fi
	@mkdir -p .local
	$(HONCHO) run $(PY) manage.py migrate --noinput
	$(HONCHO) run $(PY) manage.py collectstatic --noinput --verbosity 0
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(HONCHO) start -p $(RUN_PORT) -c web=$(RUN_WEB) $(RUN_PROCESSES)

# deploy/systemd/: the units of the Procfile for a server (README "Deploy": checkout in
# /srv/optionsite, user optionsite, web.1 and web.2 on 8001 and 8002 as nginx's upstream in
# deploy/nginx/optionsite.conf says), from the templates in deploy/templates/systemd. No .env
# is read (-e /dev/null): the units read the server's own at start. Generated files are
# committed; tests/deploy/test_units.py fails when they differ from what this makes.
DEPLOY_UNITS_DIR ?= deploy/systemd
deploy-units: $(STAMP)
	@mkdir -p $(DEPLOY_UNITS_DIR) && rm -f $(DEPLOY_UNITS_DIR)/*.service $(DEPLOY_UNITS_DIR)/*.target
	@out=$$($(VENV)/bin/honcho export systemd $(DEPLOY_UNITS_DIR) -f $(CURDIR)/Procfile -e /dev/null \
	  -d /srv/optionsite -a optionsite -u optionsite -p 8001 -c web=2 -t deploy/templates/systemd \
	  2>&1) || { echo "$$out"; exit 1; }
	@echo "Wrote the systemd units of the Procfile to $(DEPLOY_UNITS_DIR)/."

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy over brokers/ and chains/ ([tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The browser tests drive Debian's Chromium (Playwright cannot download its own here).
browser: $(NODE_STAMP)
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
	    echo "Installing Debian's chromium for the browser tests…"; \
	    apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; \
	  else \
	    echo "The browser tests need $(CHROMIUM): sudo apt-get install chromium"; exit 1; \
	  fi; \
	fi
	@if [ ! -x $(NGINX) ] || [ ! -x $(PROMTOOL) ]; then \
	  if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
	    echo "Installing Debian's nginx and prometheus (promtool) for tests/deploy/ and the alert rules…"; \
	    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends nginx prometheus >/dev/null; \
	  else \
	    echo "The deploy tests need $(NGINX) and $(PROMTOOL): sudo apt-get install nginx prometheus"; exit 1; \
	  fi; \
	fi

# The suite runs on SQLite always, and again on PostgreSQL when DATABASE_URL points at one.
pytest: $(STAMP) $(NODE_STAMP)
	env -u DATABASE_URL $(PYTEST)

pytest-postgres: $(STAMP)
	@case "$${DATABASE_URL:-}" in \
	  postgres://*|postgresql://*) echo "== again on PostgreSQL ($${DATABASE_URL%%@*}@…)"; $(PYTEST) ;; \
	  *) echo "== PostgreSQL pass skipped: DATABASE_URL does not point at PostgreSQL" ;; \
	esac

test: lint typecheck audit browser pytest pytest-postgres

# The pure and unit tests: codecs, book, analytics, Black-76, selectors, API, admin, loaders…
# Every test that starts a process is marked `integration` (tests/process_marker.py fails one
# that is not), so this lane needs only Redis and SQLite.
test-fast: lint $(NODE_STAMP)
	env -u DATABASE_URL $(PYTEST) -m "not integration"

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. brokers/upstox/MarketDataFeedV3.proto

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
