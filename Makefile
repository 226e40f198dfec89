# The two commands that count: `make run` and `make test` (both work on a fresh machine).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test test-unit lint format bench clean

$(VENV)/.run-installed: pyproject.toml
	@echo "forgeline: [1/3] creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "forgeline: [2/3] upgrading pip"
	$(PY) -m pip install --quiet --upgrade pip
	@echo "forgeline: [3/3] installing forgeline and its dependencies (about 1 GB the first time, mostly ClickHouse's chDB; a few minutes)"
	$(PY) -m pip install --progress-bar on -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.run-installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

## run: start the whole pipeline on its embedded defaults (gateway :8080, admin :8081, data ./.forgeline);
## other ports: make run PORT=9080 ADMIN_PORT=9081
PORT ?=
ADMIN_PORT ?=
run: $(VENV)/.run-installed
	$(VENV)/bin/forgeline up $(if $(PORT),--port $(PORT)) $(if $(ADMIN_PORT),--admin-port $(ADMIN_PORT))

# The console's browser tests drive Debian's chromium (Playwright never downloads a browser here).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

## test: lint, type-check, then every test (unit, contract, integration) in parallel
test: $(VENV)/.test-installed /usr/bin/chromium
	$(VENV)/bin/ruff check libs services tests
	$(VENV)/bin/mypy libs services
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-unit: $(VENV)/.test-installed
	$(PY) -m pytest -m unit -n 2 $(PYTEST_ARGS)

## bench: every benchmark next to a same-run baseline; prints a table, writes bench/results.json
bench: $(VENV)/.test-installed
	$(VENV)/bin/forgeline bench $(BENCH_ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check libs services tests
	$(VENV)/bin/ruff format --check libs services tests
	$(VENV)/bin/mypy libs services

format: $(VENV)/.test-installed
	$(VENV)/bin/ruff format libs services tests
	$(VENV)/bin/ruff check --fix libs services tests

clean:
	rm -rf $(VENV) .forgeline .pytest_cache .mypy_cache .ruff_cache
