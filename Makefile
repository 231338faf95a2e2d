# The single entry point for people and CI. Everything runs from .venv, which the
# targets create and keep in step with pyproject.toml (and the C fax coder's source).
# The Debian packages come from packages/debian-*.txt (packages/install-debian
# installs the missing ones, as root or through sudo, or names the command to run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/gatewayd.toml
DEBIAN := packages/install-debian
SOURCES := pyproject.toml setup.py gatewayd/render/_fax.c
RUNTIME := $(VENV)/.installed-runtime
DEVELOP := $(VENV)/.installed-develop
DESTDIR ?=

.PHONY: run test lint bench install install-service clean debian-runtime debian-test

debian-runtime:
	@$(DEBIAN) runtime

debian-test:
	@$(DEBIAN) runtime test

$(BIN)/python: | debian-runtime
	$(PYTHON) -m venv $(VENV)

# make run: the daemon and its runtime dependencies only
$(RUNTIME): $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

# make test, lint, bench: the test, lint and PostgreSQL extras too
$(DEVELOP): $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,postgres]'
	touch $(RUNTIME) $(DEVELOP)

install: debian-test $(DEVELOP)

## make run: install what the daemon needs, then start it on config/gatewayd.toml with
## the SMSC simulator the shipped config binds to (faxes go to the spool directory var/fax)
run: debian-runtime $(RUNTIME)
	@$(BIN)/gatewayd smsc-sim --listen 127.0.0.1:2775 & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	$(BIN)/gatewayd run --config $(CONFIG)

## make test: install what the tests need, then run the whole test suite
test: debian-test $(DEVELOP)
	$(BIN)/python -m pytest

## make lint: ruff, mypy (strict) on gatewayd/, and the import contracts (lint-imports)
lint: debian-runtime $(DEVELOP)
	$(BIN)/ruff check gatewayd tests bench
	$(BIN)/ruff format --check gatewayd tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## make bench: the benchmarks, reports in bench/results/ (sms_vs_kannel.py needs Kannel,
## else it says so in one line and skips; its SMSC peer needs node and npm)
bench: debian-test $(DEVELOP)
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/mailbox.py
	$(BIN)/python bench/smtp_ingest.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/legibility.py
	$(BIN)/python bench/smpp.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/fax_spool.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/sms_vs_kannel.py
	$(BIN)/python bench/idle_connections.py

## make install-service [DESTDIR=/some/root]: gatewayd as a systemd service, as
## docs/install.md describes (run as root; DESTDIR stages it under another root)
install-service:
	DESTDIR=$(DESTDIR) systemd/install-service

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/smsc_peer/node_modules
