# One command per task. Everything installs into .venv from pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FOLDERS := platform tenants catalog charging esim provisioning infra
PYTEST_ARGS ?=

.PHONY: install run test lint format db-upgrade db-check migration bench bench-rating bench-charging clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is needed (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install  ## migrate, seed the demo tenant and serve everything on http://127.0.0.1:8000
	$(BIN)/mvne run

test: install  ## the whole suite (on PostgreSQL and Redis when MVNE_TEST_* are set)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy follows `mvne.*` through a tree of links, the same mapping pyproject gives the installer.
build/typecheck/mvne: Makefile
	rm -rf build/typecheck && mkdir -p build/typecheck/mvne
	for d in $(FOLDERS); do ln -s ../../../$$d build/typecheck/mvne/$$d; done

lint: install build/typecheck/mvne  ## ruff and mypy over mvne.*
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPYPATH=build/typecheck $(BIN)/mypy -p mvne

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

db-upgrade: install
	$(BIN)/mvne db upgrade

db-check: install  ## fail if models and migrations disagree
	$(BIN)/mvne db upgrade
	$(BIN)/mvne db check

migration: install  ## make migration m="what changed"
	$(BIN)/python -c "from alembic import command; from mvne.infra.migrate import alembic_config, owner_url; \
	from mvne.infra.settings import load_settings; command.revision(alembic_config(owner_url(load_settings())), \
	message='$(m)', autogenerate=True)"

bench: install  ## activations, usage rating and billing throughput on this machine
	$(BIN)/mvne bench

# The issue's run: make bench-rating RECORDS=1000000 LINES=100000 PREFIXES=50000 (needs MVNE_DATABASE_URL on
# PostgreSQL); the usage file's segments run on WORKERS worker processes, as production runs them.
RECORDS ?= 200000
LINES ?= 20000
PREFIXES ?= 50000
WORKERS ?= 2
bench-rating: install  ## usage rating from a file in storage to PostgreSQL, against COPY; prints the figures
	$(BIN)/mvne bench rating --records $(RECORDS) --lines $(LINES) --prefixes $(PREFIXES) --workers $(WORKERS)

# The issue's run: 100 concurrent sessions over HTTP against gunicorn serving 16 connections (2 processes of 8
# threads); needs MVNE_DATABASE_URL on PostgreSQL and redis-server (a Redis of its own, appendfsync always).
CHARGING_LINES ?= 2000
SESSIONS ?= 100
SECONDS ?= 10
bench-charging: install  ## online charging: the engine, Nchf over HTTP against an empty endpoint, Diameter Gy
	$(BIN)/mvne bench charging --lines $(CHARGING_LINES) --sessions $(SESSIONS) --seconds $(SECONDS)

clean:
	rm -rf $(VENV) build var .pytest_cache .mypy_cache .ruff_cache
