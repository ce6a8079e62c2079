# Two commands on a fresh clone: `make run` and `make test`.
# Everything else (virtualenv, packages, the embedded PostgreSQL 18) is set
# up on demand by these targets.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt whenever pyproject.toml changes.
INSTALLED := $(VENV)/.installed

.PHONY: run test bench lint stop clean help

help:
	@echo "make run    migrate, seed, and serve the admin on http://127.0.0.1:8000/admin/"
	@echo "make test   run the whole test suite on a separate test database"
	@echo "make bench  benchmarks against raw asyncpg, written to docs/benchmarks.md"
	@echo "make lint   ruff, mypy, and squawk over the SQL each migration runs"
	@echo "make stop   stop the embedded PostgreSQL servers"
	@echo "make clean  remove the virtualenv and all local data (asks first)"

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run: $(INSTALLED)
	$(BIN)/python -m conference run

test: $(INSTALLED)
	$(BIN)/pytest

# The data layer against raw asyncpg (writes docs/benchmarks.md), the
# webhook endpoint, and analytics vs a range-partitioned copy (its own
# cluster under /tmp, ~1M events; --meetings 242000 for 10M), and schema
# changes on 1M analytics rows under 100 webhooks/s, conference migrate vs
# stock piccolo (its own cluster .local/bench-issue11-pgdata; --rows 10000000
# for the documented larger run), and retention's delete rate and webhook
# p99 while it runs (its own cluster .local/bench-issue14-pgdata, ~1.5M
# events; --meetings 242000 for 10M), and failover: synchronous commit's
# cost, RTO and RPO per standby setup (its own clusters under /tmp), and
# what conference.db adds to one statement over asyncpg's pool; see
# benchmarks/.
bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.data_layer
	$(BIN)/python -m benchmarks.webhooks
	$(BIN)/python -m benchmarks.partitioning
	$(BIN)/python -m benchmarks.migrations --stop
	$(BIN)/python -m benchmarks.failover
	$(BIN)/python -m benchmarks.lifecycle
	$(BIN)/python -m benchmarks.db_overhead

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m conference.migrations.lint

stop: $(INSTALLED)
	$(BIN)/python -m conference.embedded stop
	@# Every other cluster under .local: the tests' and each benchmark's own.
	@for dir in .local/*pgdata; do \
		[ "$$dir" = .local/pgdata ] || [ ! -d "$$dir" ] || $(BIN)/python -m conference.embedded stop --data-dir "$$dir"; \
	done

clean: stop
	@read -p "Delete $(VENV) and .local (all embedded databases)? [y/N] " answer; \
	  [ "$$answer" = y ] && rm -rf $(VENV) .local || echo "kept"
