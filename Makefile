# Two commands on a fresh machine: `make serve` (main job) and `make test` (what CI runs).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On this machine torch==2.13.0 is a local CPU wheel; elsewhere see README "Installing torch".
TORCH ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000

$(BIN)/wavestream: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/wavestream

serve: install
	$(BIN)/wavestream serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/step_overhead.py

.PHONY: install serve test lint bench
