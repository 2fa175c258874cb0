# optionsite — `make demo` runs the whole system on the simulator, `make test` runs every check,
# `make test-fast` the pure and unit tests (no process started) in under a minute.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
KEY_FILE := .local/field_encryption.key

CHROMIUM := /usr/bin/chromium
# pytest-xdist workers of `make test` (each has its own Redis databases, test database and
# simulator: tests/settings.py, tests/conftest.py); a file's tests stay on one worker, so that
# module fixtures (the chaos stack, private redis-servers) start once. PYTEST_WORKERS=0: serial.
# At most 4: Redis has databases for 4 workers (tests/settings.py REDIS_DATABASES).
PYTEST_WORKERS ?= auto
PYTEST := $(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile

.PHONY: demo test test-fast lint typecheck browser pytest pytest-postgres proto bench clean help

help:
	@echo "make demo   — set up and run optionsite on the local simulator"
	@echo "make test   — set up and run lint + the whole test suite"
	@echo "make test-fast — lint + the tests that start no process (pytest -m 'not integration')"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

$(KEY_FILE):
	@mkdir -p .local
	@$(PY) -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())" > $@
	@chmod 600 $@
	@echo "Generated a local demo encryption key in $@ (git-ignored)."

demo: $(STAMP) $(KEY_FILE)
	DJANGO_DEBUG=1 $(PY) manage.py demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy over brokers/ and chains/ ([tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The browser tests drive Debian's Chromium (Playwright cannot download its own here).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
	    echo "Installing Debian's chromium for the browser tests…"; \
	    apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; \
	  else \
	    echo "The browser tests need $(CHROMIUM): sudo apt-get install chromium"; exit 1; \
	  fi; \
	fi

# The suite runs on SQLite always, and again on PostgreSQL when DATABASE_URL points at one.
pytest: $(STAMP)
	env -u DATABASE_URL $(PYTEST)

pytest-postgres: $(STAMP)
	@case "$${DATABASE_URL:-}" in \
	  postgres://*|postgresql://*) echo "== again on PostgreSQL ($${DATABASE_URL%%@*}@…)"; $(PYTEST) ;; \
	  *) echo "== PostgreSQL pass skipped: DATABASE_URL does not point at PostgreSQL" ;; \
	esac

test: lint typecheck browser pytest pytest-postgres

# The pure and unit tests: codecs, book, analytics, Black-76, selectors, API, admin, loaders…
# Every test that starts a process is marked `integration` (tests/process_marker.py fails one
# that is not), so this lane needs only Redis and SQLite.
test-fast: lint
	env -u DATABASE_URL $(PYTEST) -m "not integration"

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. brokers/upstox/MarketDataFeedV3.proto

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
