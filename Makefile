# The whole set-up on a fresh machine: `make run` and `make test`.
# Each target creates .venv if missing and (re)installs when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
PEERS  ?= ../shared/peers
CONFIG ?= config/gateway.toml

.PHONY: run test lint bench peers clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/smsgw run -c $(CONFIG)

# node-smpp for the SMSC simulator the interop tests run against (skipped when absent).
# The physical path: npm mistakes a symlinked --prefix for a linked package.
peers:
	@if [ -d $(PEERS) ]; then npm ci --prefix "$$(cd $(PEERS) && pwd -P)" --no-audit --no-fund --loglevel=error; \
	else echo "note: $(PEERS) not found; simulator interop tests will be skipped"; fi

test: $(STAMP) peers
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway rules tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/encoding.py
	$(PY) bench/rules.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
