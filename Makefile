# Two commands from a fresh clone: `make run` (the demo on embedded SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve test lint bench install openapi contract

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

install: $(STAMP)

# The demo needs the gateway's own requirements only (no test tools, no PostgreSQL driver).
RUN_STAMP := $(VENV)/.installed-run
$(RUN_STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/gateway demo

# The plain gateway, on whatever GATEWAY_* says (no demo data, no child processes).

serve: $(STAMP)
	$(BIN)/gateway serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

.PHONY: bench-readings
bench-readings: $(STAMP)
	$(BIN)/python bench/site_readings.py

# The committed API spec, regenerated from the routes and schemas (a test fails when it is stale).
openapi: $(STAMP)
	$(BIN)/python -m openapi

# The contract suite alone; against another deployment: make contract ARGS='--base-url URL --api-key K --site-id S'
contract: $(STAMP)
	$(BIN)/python -m pytest tests/contract -p no:cacheprovider -rs $(ARGS)

.PHONY: bench-schemathesis
bench-schemathesis: $(STAMP)
	$(BIN)/python bench/schemathesis_stateful.py
