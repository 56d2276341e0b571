# Tierra developer entry points. `make demo` runs the main job on the embedded local fleet;
# `make test` runs the whole test suite (lint, types, layers, unit, and cluster tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLEET_DIR ?= .tierra/fleet
export TIERRA_FLEET_DIR := $(abspath $(FLEET_DIR))
NICE ?=
# (`make test` sets it for the checks it runs while the binaries build, which are its critical path)

.PHONY: setup binaries demo fleet-up fleet-down lint unit checks test crds clean

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
	$(NICE) $(BIN)/ruff check operator tests benchmarks
	$(NICE) $(BIN)/mypy
	$(NICE) $(BIN)/lint-imports
	$(NICE) $(BIN)/tierra crds check
	$(NICE) $(BIN)/python -m tierra.localfleet.chart check
	$(NICE) $(BIN)/python -m tierra.localfleet.dashboard check

unit: setup  ## tests that need no binaries
	$(NICE) $(BIN)/pytest tests/unit

checks: lint unit

# The lint and unit tests need no binaries: on a first run they go while the binaries compile,
# at a lower priority, and the tests that need the fleet or helm follow.
test: setup
	$(MAKE) --no-print-directory -j2 binaries checks NICE="nice -n 10"
	$(BIN)/pytest tests --ignore=tests/unit --durations=15

clean:
	-$(BIN)/tierra fleet down
	rm -rf $(VENV) .tierra
