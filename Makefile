# The two commands: `make run` (the whole service on this machine) and `make test`.
# Both bootstrap everything from the package index on a machine that has only Python 3.11+ and make.

PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
# Prefer a uv already on PATH; otherwise install a pinned one into .tools/ with plain pip.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON := $(shell command -v $(PYTHON))
export UV_PYTHON_DOWNLOADS := never

# Tests run on two pytest-xdist workers, each with a database, a job stream, mail and SMS servers
# of its own (tests/conftest.py): most of a test's time is spent waiting on servers, so two
# workers on two cores halve the run. PYTEST_WORKERS="-n 0" runs them in one process.
PYTEST_WORKERS ?= -n 2

.PHONY: run test test-fast lint typecheck bench-catalog bench bench-scale clean help

help:
	@echo "make run        start PostgreSQL, NATS, the API on http://127.0.0.1:$${LMS_PORT:-8000} and a worker"
	@echo "make test       run the whole test suite (fault tests included)"
	@echo "make test-fast  the suite without the slow fault tests"
	@echo "make lint       ruff and mypy"
	@echo "make bench      every scenario against lms and its peers, wrk + pgbench (BENCH_QUICK=1: under ten minutes)"
	@echo "make bench-scale  lms's catalog p99 at 10,000 vs 1,000,000 courses"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# The environment is rebuilt only when the lock or the project metadata change.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

run: $(VENV)/.synced
	$(VENV)/bin/lms dev

test: $(VENV)/.synced
	@command -v chromium >/dev/null 2>&1 || echo "note: chromium is not installed (apt-get install chromium): the certificate page's browser tests will be skipped"
	@command -v wrk >/dev/null 2>&1 || echo "note: wrk is not installed (apt-get install wrk): the bench pacing tests will be skipped"
	$(VENV)/bin/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: $(VENV)/.synced
	$(VENV)/bin/python -m pytest $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# Benchmarks (bench/README.md): need wrk (apt-get installs it when run as root) and pgbench,
# checked before anything is seeded; the peers' environments and the chart's
# (bench/.report-venv) are installed on first use, never into $(VENV).
bench: $(VENV)/.synced | $(UV)
	$(VENV)/bin/python -m bench.suite

bench-scale: $(VENV)/.synced | $(UV)
	$(VENV)/bin/python -m bench.suite --scale

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
