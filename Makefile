# Payhook: `make run` starts everything, `make test` tests everything. `make help` lists the rest.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist worker processes, each with its own redis-server, SQLite
# files and PostgreSQL databases; a file's tests stay on one worker (docs/testing.md). 0: one process, no xdist.
PYTEST_WORKERS ?= 4

.PHONY: help setup run test test-priority screenshots bench bench-store drills docs clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements-dev.txt constraints.txt shared/pyproject.toml services/*/pyproject.toml cli/pyproject.toml sandbox/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Payhook needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# uv installs the same constrained set as pip would, in seconds rather than 45 (docs/testing.md); compiled
	@# like pip does, since a process may not write its own bytecode (PYTHONDONTWRITEBYTECODE).
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.txt
	@touch $@

setup: $(STAMP) ## Create the virtualenv, install the packages and the tools: redis-server, kubectl, chromium, promtool
	@scripts/ensure-redis.sh
	@scripts/ensure-kubectl.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-tools.sh

run: setup ## Start the whole system (Redis, web, workers, demo receiver) with embedded defaults
	$(PY) scripts/devstack.py

test: setup ## Run the test suite (starts its own Redis; PostgreSQL too when TEST_DATABASE_URL is set)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-priority: setup ## Check priority holds under a LOW backlog on the running stack (starts one if none)
	$(PY) scripts/test_priority.py

screenshots: setup ## Refresh the console screenshots in docs/screenshots/ (browser tests)
	PAYHOOK_SCREENSHOTS=1 $(PY) -m pytest -q tests/webhook_service/console -k browser

bench: setup ## Benchmarks on a stack of its own: table, var/bench/results.json and results.png (BENCH_DATABASE_URL)
	@scripts/ensure-bench-tools.sh
	$(PY) -m bench.run

bench-store: setup ## The store at scale: 1,000,000 events on PostgreSQL, query p95s, ingest full vs empty, purge
	@scripts/ensure-bench-tools.sh
	$(PY) -m bench.store

drills: setup ## Fault drills (kill worker, restart Redis, stop database, receiver down): nothing accepted is lost
	@scripts/ensure-bench-tools.sh
	$(PY) -m bench.drills

docs: $(STAMP) ## Regenerate docs/configuration.md's settings tables from the services' Settings classes
	$(PY) scripts/gen_configuration.py

clean: ## Remove the virtualenv and local state (var/)
	rm -rf $(VENV) var
