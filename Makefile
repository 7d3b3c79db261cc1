# stream-forecaster developer commands. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
KAFKA_LOCAL := deploy/kafka/kafka-local

.PHONY: help install test test-unit lint format docs run bench kafka-start kafka-stop kafka-status clean

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

test: install ## the whole test suite, what CI runs (starts its own Kafka broker)
	$(BIN)/python -m pytest

test-unit: install ## the fast loop: no broker, no TensorFlow (about a minute)
	$(BIN)/python -m pytest -m "not kafka and not slow" --no-tensorflow -q

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: install ## regenerate the reference pages and build the docs site (strict) into site/
	$(BIN)/python -m stream_forecaster.reference docs/reference
	$(BIN)/mkdocs build --strict --site-dir site

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis models .run site dist deploy/kafka/.data
