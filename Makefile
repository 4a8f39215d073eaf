# Two commands from a fresh clone: `make run` (the demo on embedded SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve test lint bench install openapi contract lock

# The whole dependency tree from the hashed lock (reproducible), then this checkout on top of it.
$(STAMP): setup.cfg pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The demo needs the gateway's own requirements only (no test tools): the deployment lock.
RUN_STAMP := $(VENV)/.installed-run
$(RUN_STAMP): setup.cfg pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/gateway demo

# The plain gateway, on whatever GATEWAY_* says (no demo data, no child processes).

serve: $(STAMP)
	$(BIN)/gateway serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two test processes (pytest-xdist; up to four on bigger machines), each module's tests in one of
# them, so that a module's browser or server fixture starts once: 4.5 min instead of 8 on 2 cores.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --numprocesses auto --maxprocesses 4 --dist loadscope

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

# Re-pin every dependency (with hashes) after changing setup.cfg: requirements.lock is what a
# deployment installs (core + postgres), requirements-dev.lock what `make` and CI install.
LOCK_TOOLS := .venv-tools
PIP_COMPILE := $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || ($(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install --quiet pip-tools)
	$(PIP_COMPILE) --extra postgres --output-file requirements.lock setup.cfg
	$(PIP_COMPILE) --extra postgres --extra test --output-file requirements-dev.lock setup.cfg
