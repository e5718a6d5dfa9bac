# reglink developer commands. `make help` lists them.
# Quick start:  make setup && make test        (needs python3 >= 3.11, Java 17, Maven)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
REGLINK := $(VENV)/bin/reglink
STAMP   := $(VENV)/.reglink-installed
NATIVE  := build/native/manifest.json
NATIVE_SRC := $(wildcard matchers/*.py reglink/core/*.py reglink/core/rules/*.py reglink/stores/*.py)

.PHONY: help setup stack-up stack-down stack-status lint test test-unit test-integration demo clean-state bench

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "Usage: make <target>\n\n"} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) $(NATIVE) ## Create .venv, install reglink with its test extras, build the compiled core (idempotent)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# The compiled core (matchers/native.py): rebuilt when a source of it changes. A failed build
# leaves reglink in pure Python (slower, same outputs); `reglink --version` says which runs.
$(NATIVE): $(STAMP) $(NATIVE_SRC)
	$(PY) -m reglink.devstack.native build || echo "make: running reglink as pure Python"

stack-up: setup ## Start local Kafka (KRaft) + Redis (AOF) and create topics (idempotent)
	$(REGLINK) stack up

stack-down: ## Stop the local stack
	@if test -x $(REGLINK); then $(REGLINK) stack down; else echo "no $(VENV): nothing to stop"; fi

stack-status: setup ## Show whether Kafka and Redis are up and answering
	$(REGLINK) stack status

lint: setup ## Lint (ruff), then type-check (mypy); both configured in pyproject.toml; part of `make test`
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup lint stack-up ## Lint, then every test, unit and integration (starts the stack if needed), then the store contract suite again in pure Python
	$(PY) -m pytest -q tests/
	REGLINK_PURE=1 $(PY) -m pytest -q tests/contract

test-unit: setup ## Run only the tests that need no stack
	$(PY) -m pytest -q -m "not integration" tests/

test-integration: setup stack-up ## Run only the integration tests (real Kafka + Redis)
	$(PY) -m pytest -q -m integration tests/

bench: setup stack-up ## Performance suite (replay, identity store, stream): benchmarks/results/
	$(PY) -m benchmarks all

demo: setup stack-up ## Live demo: simulate, publish, run a worker, print alerts
	$(REGLINK) demo

clean-state: stack-down ## Stop the stack and delete its data (REGLINK_STATE_DIR, default .reglink/)
	rm -rf "$${REGLINK_STATE_DIR:-.reglink}"
