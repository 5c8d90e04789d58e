# sact-pipeline: the two set-up commands are `make run` and `make test` (see README "Quick start").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

export SACT_HOME ?= $(CURDIR)/.sact
export DAGSTER_HOME ?= $(SACT_HOME)/dagster

.PHONY: run test ui up down bench bench-sensor bench-england clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when setup.py changes; the package is installed editable, so code edits need nothing.
$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

## run: generate sample submissions if the landing zone is empty, then refresh everything (SQLite default)
run: $(VENV)/.installed
	SACT_DEMO_MODE=$${SACT_DEMO_MODE:-1} $(BIN)/sact-pipeline generate --if-empty
	SACT_DEMO_MODE=$${SACT_DEMO_MODE:-1} $(BIN)/sact-pipeline refresh

CHROMIUM ?= /usr/bin/chromium

# The UI tests drive Debian's chromium headless (no browser download from the test tooling).
$(CHROMIUM):
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

TEST_WORKERS ?= 2

## test: the full test suite (needs the local PostgreSQL; see SACT_TEST_DATABASE_URL) on TEST_WORKERS processes
## (pytest-xdist; a test file stays on one worker, so its module fixtures are built once; conftest groups files)
test: $(VENV)/.installed-test | $(CHROMIUM)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup sact_pipeline_tests

## ui: the Dagster UI on the same instance and warehouse as `make run`
ui: $(VENV)/.installed
	$(BIN)/python -c 'import os, pathlib; from sact_pipeline.refreshing import prepare_dagster_home; prepare_dagster_home(pathlib.Path(os.environ["DAGSTER_HOME"]))'
	SACT_DEMO_MODE=$${SACT_DEMO_MODE:-1} $(BIN)/dagster dev -w workspace.yaml

## up: dagster-webserver + dagster-daemon on the local PostgreSQL with the repository's dagster.yaml
## (instance and logs in $(SACT_HOME)/deploy; UI on http://127.0.0.1:$${SACT_UI_PORT:-3000}); see README
up: $(VENV)/.installed
	SACT_DEMO_MODE=$${SACT_DEMO_MODE:-1} $(BIN)/python -m sact_pipeline.deploy up

## down: stop what `make up` started
down: $(VENV)/.installed
	$(BIN)/python -m sact_pipeline.deploy down

## clean-data: remove the local sample data, warehouse and Dagster instance under .sact
clean-data:
	rm -rf $(SACT_HOME)

## bench: time a refresh on generated data against a bare floor (not part of the tests)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/refresh_benchmark.py --trusts 20 --months 3 --patients 200

## bench-sensor: the UI path: a deployment (`make up` on fresh databases) and its sensor at the shipped
## interval, from 32 files landing to every month published, then a late correction (about 5 minutes)
bench-sensor: $(VENV)/.installed
	$(BIN)/python benchmarks/sensor_benchmark.py

## bench-england: BENCHMARKS.md's tables: one England month (medians of 3) on SQLite and on the local
## PostgreSQL, with the default workers and with one process, then the scaling series 0.25-2 on SQLite
## (about 20 minutes on 2 cores)
BENCH_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
bench-england: $(VENV)/.installed
	$(BIN)/python benchmarks/refresh_benchmark.py --scale 1 --repeat 3
	$(BIN)/python benchmarks/refresh_benchmark.py --scale 1 --repeat 3 --warehouse-url $(BENCH_POSTGRES_URL)
	$(BIN)/python benchmarks/refresh_benchmark.py --scale 1 --repeat 3 --workers 1
	$(BIN)/python benchmarks/refresh_benchmark.py --scale 1 --repeat 3 --workers 1 --warehouse-url $(BENCH_POSTGRES_URL)
	$(BIN)/python benchmarks/refresh_benchmark.py --series 0.25,0.5,1,2
