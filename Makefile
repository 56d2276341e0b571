# Tierra developer entry points. `make demo` runs the main job on the embedded local fleet;
# `make test` runs the whole test suite (lint, types, layers, unit, and cluster tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLEET_DIR ?= .tierra/fleet
export TIERRA_FLEET_DIR := $(abspath $(FLEET_DIR))

.PHONY: setup binaries demo fleet-up fleet-down lint unit test crds clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

binaries: setup  ## build (first time, ~10-20 min) or locate the control-plane binaries
	$(BIN)/tierra fleet build

crds: setup  ## regenerate crds/ and charts/tierra/crds/ from the typed models
	$(BIN)/tierra crds generate

fleet-up: binaries
	$(BIN)/tierra fleet up

fleet-down: setup
	$(BIN)/tierra fleet down

demo: binaries  ## the main job: fleet up, CRDs, example fleet and services, operator
	$(BIN)/python -m tierra.demo

lint: setup
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/tierra crds check
	$(BIN)/python -m tierra.localfleet.chart check
	$(BIN)/python -m tierra.localfleet.dashboard check

unit: setup
	$(BIN)/pytest tests/unit

test: lint binaries
	$(BIN)/pytest tests

clean:
	-$(BIN)/tierra fleet down
	rm -rf $(VENV) .tierra
