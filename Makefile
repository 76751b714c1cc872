# Developer entry points. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
DEBUG ?= 1
PYTEST_ARGS ?=
BENCH_ARGS ?=
export DEBUG

BIN := $(VENV)/bin
LOCK := requirements.lock
# Reinstall only when the dependency spec (or the lock) changes.
STAMP := $(VENV)/.installed

.PHONY: help install run test lint lock bench

help:
	@echo "make install  - create $(VENV) and install the project with dev extras"
	@echo "make run      - migrate, print dev credentials, serve on 127.0.0.1:\$$PORT ($(PORT))"
	@echo "make test     - ensure redis/postgres binaries, run pytest (PYTEST_ARGS=...)"
	@echo "make lint     - ruff check, ruff format --check, mypy"
	@echo "make lock     - write $(LOCK) from the current venv"
	@echo "make bench    - default benchmark suite on 2 spawned servers + Redis (BENCH_ARGS=...)"

install: $(STAMP)

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	@if [ ! -x "$(BIN)/python" ]; then $(PYTHON) -m venv "$(VENV)"; fi
	if [ -f "$(LOCK)" ]; then \
		$(BIN)/pip install --quiet -c "$(LOCK)" -e '.[dev]'; \
	else \
		$(BIN)/pip install --quiet -e '.[dev]'; \
	fi
	@touch "$(STAMP)"

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py devinfo
	exec $(BIN)/uvicorn service.asgi:application --host 127.0.0.1 --port $(PORT) --ws-max-size 65536

# The suite runs on SQLite (the embedded default, with the live multi-process
# tests), then the database tests again on a real PostgreSQL.
test: install
	bash scripts/ensure-system-deps.sh
	$(BIN)/pytest $(PYTEST_ARGS)
	NOTIFY_TEST_DATABASE=postgres $(BIN)/pytest -m "not live" $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy service notifications api

lock: install
	$(BIN)/pip freeze --exclude-editable | LC_ALL=C sort > "$(LOCK).tmp"
	mv "$(LOCK).tmp" "$(LOCK)"
	@touch "$(STAMP)"

# The default benchmark suite (bench/README.md): one JSON line per scenario on
# stdout, also appended to bench/results/results.jsonl. BENCH_ARGS go to every
# run, e.g. BENCH_ARGS="--server-env NOTIFY_REDIS_LAYER=core" or "--quick".
bench: install
	bash scripts/ensure-system-deps.sh
	$(BIN)/python -m bench suite $(BENCH_ARGS)
