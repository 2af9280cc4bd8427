# The whole set-up on a fresh machine: `make run` and `make test`.
# Each target creates .venv if missing and (re)installs when pyproject.toml changes.
# The interpreter of .venv: the distribution's CPython 3.11 where there is one (Debian's and
# Ubuntu's are built with PGO and LTO, libpython linked in: the gateway's Python code runs
# 14-30 % faster on it than on a default source or pyenv build, ~5-15 % less CPU per message
# end to end; bench/RESULTS.md "session 5"), else python3. `make PYTHON=...` chooses; an
# existing .venv is kept (`make clean` first).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3)
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
PEERS  ?= ../shared/peers
CONFIG ?= config/gateway.toml

.PHONY: run test lint bench peers clean

$(PY):
	$(PYTHON) -m venv $(VENV) || { echo "note: $(PYTHON) -m venv failed; using python3"; \
		rm -rf $(VENV); python3 -m venv $(VENV); }

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
