# The single entry point for people and CI. Everything runs from .venv, which the
# targets create and keep in step with pyproject.toml (and the C fax coder's source).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/gatewayd.toml
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.py gatewayd/render/_fax.c | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,postgres]'
	touch $(STAMP)

install: $(STAMP)

## make run: install, then start the daemon on the embedded defaults, with the SMSC
## simulator the shipped config binds to (faxes go to the spool directory var/fax)
run: $(STAMP)
	@$(BIN)/gatewayd smsc-sim --listen 127.0.0.1:2775 & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	$(BIN)/gatewayd run --config $(CONFIG)

## make test: install, then run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest

## make lint: ruff, mypy (strict) on gatewayd/, and the import contracts (lint-imports)
lint: $(STAMP)
	$(BIN)/ruff check gatewayd tests bench
	$(BIN)/ruff format --check gatewayd tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## make bench: the benchmarks, reports in bench/results/
bench: $(STAMP)
	$(BIN)/python bench/mailbox.py
	$(BIN)/python bench/smtp_ingest.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/smpp.py
	$(BIN)/python bench/fax_spool.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/idle_connections.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
