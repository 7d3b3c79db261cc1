# stream-forecaster developer commands. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
KAFKA_LOCAL := deploy/kafka/kafka-local

.PHONY: help install test lint format run bench kafka-start kafka-stop kafka-status clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(STAMP) ## everything: system packages, venv with the package and dev tools, Kafka jars
	@$(KAFKA_LOCAL) fetch

$(STAMP): pyproject.toml deploy/install-system-deps
	bash deploy/install-system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	touch $@

test: install ## run the whole test suite (starts its own Kafka broker)
	$(BIN)/python -m pytest

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

run: install ## the main job, end to end, on a local Kafka broker (Ctrl-C stops it)
	$(BIN)/python deploy/local/run_local.py

bench: install ## run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m benchmarks

kafka-start: install ## start the local Kafka broker (prints its address)
	@$(KAFKA_LOCAL) start

kafka-stop: ## stop the local Kafka broker
	@$(KAFKA_LOCAL) stop

kafka-status: ## is the local Kafka broker running?
	@$(KAFKA_LOCAL) status

clean: ## remove the venv, caches, local broker data and trained models
	-$(KAFKA_LOCAL) stop
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis models .run deploy/kafka/.data
