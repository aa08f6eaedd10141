# The front door: `make demo`, `make test`, `make bench`, `make lint`. CI runs `make test` (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# the interpreter .venv is built from: the OS's optimised CPython when it matches python3 (scripts/ci/python.sh)
PYTHON ?= $(shell scripts/ci/python.sh)
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

# The install is redone when pyproject.toml or the C extensions' source changes (by content, not mtime, which a
# checkout resets): the extension is compiled by that install.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml storage/*.c storage/codecs/*.c | sha256sum | cut -c1-16)

# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k migrations -x'
PYTEST_ARGS ?=

.PHONY: help venv demo test lint ruff imports mypy pytest postgres format bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install the project with its dev extras

$(STAMP): pyproject.toml
	@# made again when it has no pip (a venv command that failed half-way leaves one)
	@$(PY) -m pip --version >/dev/null 2>&1 || { echo "==> creating $(VENV) from $(PYTHON)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	@scripts/ci/compiler.sh $(PY)  # the codec's C extension: a compiler and Python.h, installed if missing
	@# torch first, pinned exactly: pip takes this CPU build from local disk. Left to the resolver,
	@# another package's bare `torch` requirement could pull a multi-GB CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	@# bytecode for the project's own modules, as pip writes for installed packages: an environment that sets
	@# PYTHONDONTWRITEBYTECODE would otherwise recompile them on every command (~0.3 s of start-up)
	$(PY) -m compileall -q modelarc storage archive registry cli api migrations >/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: venv ## a short tour of the main commands
	$(PY) scripts/demo.py

# -k: every check runs even when an earlier one fails, so one CI run reports them all.
test: venv ## ruff, import layers, mypy, then the whole suite on SQLite and PostgreSQL
	@$(MAKE) --no-print-directory -k ruff imports mypy pytest

lint: venv ## ruff, import layers, mypy
	@$(MAKE) --no-print-directory -k ruff imports mypy

ruff: venv
	@echo "==> ruff check"
	$(BIN)/ruff check .

imports: venv
	@echo "==> lint-imports: layers point down ([tool.importlinter] in pyproject.toml)"
	$(PY) scripts/ci/lint_imports.py

mypy: venv
	@echo "==> mypy"
	$(BIN)/mypy storage archive

# The PostgreSQL case of the `database_url` fixture needs MODELARC_TEST_POSTGRES_URL; unless it is
# already set, scripts/ci/postgres.sh starts (or reuses) a throwaway server and prints its URL.
# The browser tests need Chromium: scripts/ci/chromium.sh installs Debian's package if missing and prints its path.
# Two workers when pytest-xdist is installed (it is in the dev extras), one otherwise. Temporary files go to a
# tmpfs when one has room (scripts/ci/test_tmp.sh; MODELARC_TEST_TMP= for pytest's default).
pytest: venv
	@echo "==> pytest"
	@url="$${MODELARC_TEST_POSTGRES_URL:-$$(scripts/ci/postgres.sh)}"; \
	  browser="$$(scripts/ci/chromium.sh)"; \
	  xdist="$$($(PY) -c 'import xdist' 2>/dev/null && echo '-n 2' || true)"; \
	  tmp="$$(scripts/ci/test_tmp.sh)"; basetemp="$${tmp:+--basetemp=$$tmp}"; \
	  echo "MODELARC_TEST_POSTGRES_URL=$$url MODELARC_TEST_CHROMIUM=$$browser $(PY) -m pytest $$xdist $$basetemp $(PYTEST_ARGS)"; \
	  MODELARC_TEST_POSTGRES_URL="$$url" MODELARC_TEST_CHROMIUM="$$browser" $(PY) -m pytest $$xdist $$basetemp $(PYTEST_ARGS)

postgres: ## start (or reuse) the test PostgreSQL server and print its URL
	@scripts/ci/postgres.sh

format: venv ## rewrite the code with ruff's import sorting and formatter
	$(BIN)/ruff check --select I --fix .
	$(BIN)/ruff format .

bench: venv ## speed, as ratios against a baseline measured in the same run
	@$(PY) -m compileall -q modelarc storage archive registry cli api migrations >/dev/null
	$(PY) bench/run.py
	@# both catalog databases; PostgreSQL is the server at MODELARC_TEST_POSTGRES_URL, else scripts/ci/postgres.sh's
	$(PY) bench/catalog.py --database both
	$(PY) bench/load.py
	$(PY) bench/http_pull.py
	$(PY) bench/serve.py
	$(PY) bench/sharded.py
	$(PY) bench/s3.py
	@# parallel Hub downloads (`push hf://`, --jobs 1 vs 4) from the Hub imitation on 127.0.0.1
	$(PY) bench/hf_parallel.py
	@# a family stored with deltas (issue 15): through `push --parent`, and at the store (ObjectStore.put_delta)
	$(PY) bench/family.py
	$(PY) bench/family.py --store-level
	$(PY) bench/delta_entropy.py

clean: ## remove the venv, caches and build output (not the PostgreSQL cluster in /tmp)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f storage/codecs/*.so
