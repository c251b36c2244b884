# Set-up is two commands: `make run` and `make test`. Both create .venv and install pinned deps.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: install browser run worker demo test unit lint typecheck bench bench-smoke bench-load bench-embedded clean container-test

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml requirements.lock requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## run: the HTTP service on an embedded SQLite file (./var/geekblog.db unless GEEKBLOG_DB_PATH); prints its URL
##      and how to reach it with the CLI from another terminal (geekblog is in .venv/bin, not on PATH)
run: install
	@echo "CLI: in another terminal, 'source $(abspath $(VENV))/bin/activate' (or run $(abspath $(VENV))/bin/geekblog), then:"
	@echo "       GEEKBLOG_URL=$$($(PY) -c 'from entrypoints.client.arguments import default_url; print(default_url())') geekblog jobs"
	$(VENV)/bin/geekblog serve

## worker: the engine without HTTP (geekblog worker): beside `make run` on one PostgreSQL database (GEEKBLOG_DATABASE_URL)
worker: install
	$(VENV)/bin/geekblog worker

## demo: a workflow run in-process on its own SQLite file (./var/demo.db: never the one `make run` holds), its
##       progress printed as it happens (no server)
demo: install
	$(PY) -m entrypoints.demo

## test: lint, type-check, then the whole suite (unit, contract, integration, e2e) on TEST_WORKERS processes
##       (pytest-xdist; TEST_WORKERS=0 runs it in this one). Bytecode is cached even where the environment
##       says PYTHONDONTWRITEBYTECODE: each worker and each service the e2e tests start would else compile the
##       test modules (with pytest's assertion rewriting) and the project's modules from source again.
##       The tests marked serial (they compare CPU times they measure) run afterwards, with no other worker.
TEST_WORKERS ?= 2
test: install lint typecheck browser
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -n $(TEST_WORKERS) -m "not serial"
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -m serial

## browser: Debian's chromium for the dashboard's browser tests (tests/browser), installed when missing and
##          apt-get is usable (never Playwright's own download, which cannot reach its hosts); else they skip
browser:
	sh scripts/install-chromium.sh

unit: install
	$(PY) -m pytest tests/unit tests/contract -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

## bench: GeekBlog (service and embedded on SQLite; on PostgreSQL: the service with 1, 2 and 3 engine processes, a Python client beside one worker, and the engine embedded in one process)
##        side by side with Celery + Redis, Huey, procrastinate, PgQueuer and DBOS on ../shared/peers
##        (RUNS=2 runs each, medians and ratios); writes docs/benchmarks.md. Never fails on a timing.
bench: install
	BENCH_COMMAND="make bench RUNS=$${RUNS:-2}" $(PY) bench/compare.py --runs $${RUNS:-2} --doc docs/benchmarks.md

## bench-smoke: the SQLite comparison and GeekBlog on PostgreSQL (1 engine) with a few hundred jobs: checks it
##              still works (CI runs it)
bench-smoke: install
	$(PY) bench/compare.py --smoke

## bench-load: HTTP submissions under fixed offered loads from a separate load process, and 20 article pipelines
bench-load: install
	$(PY) bench/http_load.py

## bench-embedded: throughput and latency of the embedded engine alone, in-process on SQLite
bench-embedded: install
	$(PY) bench/embedded_throughput.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

## container-test: build the image (Containerfile) with podman and check it end to end (needs ../shared/container)
container-test:
	bash scripts/container-test.sh
