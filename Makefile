# Two commands matter: `make demo` (run the store) and `make test` (run every test).
# Both create .venv and install pinned requirements first. With DATABASE_URL and
# REDIS_URL set they use PostgreSQL and Redis; otherwise SQLite and a filesystem
# Celery broker, so a fresh machine needs nothing but Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
export DJANGO_SETTINGS_MODULE ?= config.settings.local

.DEFAULT_GOAL := help
.PHONY: help install install-dev browser-deps demo run seed migrate test test-fast lint format bench screenshots clean

help: ## List every target with what it does
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed ## Create .venv and install the pinned runtime requirements

install-dev: $(VENV)/.installed-dev ## Install runtime and test requirements

browser-deps: ## Install Debian's chromium + chromium-driver for browser tests (needs root or sudo)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "note: chromium/chromedriver not installed and no root: browser tests will be skipped"; \
	fi

migrate: install ## Apply database migrations
	@$(PY) manage.py migrate --noinput --verbosity 0

seed: migrate ## Seed the demo catalog, admin user, simulated history and a trained policy (inline, minutes)
	$(PY) manage.py seed_demo
	$(PY) manage.py seed_history

# The store serves within seconds: the catalog is seeded here, the simulated
# history is queued for the worker, which writes it and trains while the store
# already serves the popularity fallback (the dashboard shows the progress).
demo: migrate ## Install, migrate, seed the catalog, start web + worker + beat; history and training follow in the worker
	@$(PY) manage.py seed_demo
	@$(PY) manage.py seed_history --background
	@DEMO_ADDR=$(HOST):$(PORT) $(BIN)/honcho start -f Procfile.demo

run: migrate ## Start web + worker + beat without seeding
	DEMO_ADDR=$(HOST):$(PORT) $(BIN)/honcho start -f Procfile.demo

test: install-dev browser-deps ## Install everything and run the whole test suite
	@# pytest exits 5 when a selection (-k/-m) collects nothing: report it, don't fail.
	@rc=0; DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; rc=0; fi; exit $$rc

test-fast: install-dev ## Run the tests that need no browser, no services and little time (not slow)
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest -m "not browser and not integration and not slow" $(PYTEST_ARGS)

lint: install-dev ## Lint, check formatting (ruff) and the import contracts (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install-dev ## Format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

screenshots: install-dev browser-deps ## Regenerate docs/screenshots/*.png from a real demo store with a trained policy
	$(PY) -m tests.screenshots

bench: install-dev ## Run every benchmark and record its table in bench/RESULTS.md (ARGS=--quick for a short run)
	$(PY) -m bench.run $(BENCHES) -- $(ARGS)

clean: ## Remove the SQLite database, generated media, broker files and caches
	rm -rf db.sqlite3* media var staticfiles .pytest_cache .ruff_cache .import_linter_cache
