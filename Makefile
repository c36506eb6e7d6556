# kbayes: `make demo` and `make test` are all a new machine needs.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

# Python 3.12 preferred, else a newer one that actually runs: PATH, then pyenv installs (their shims fail unselected).
FIND_PYTHON := for p in python3.12 python3.13 python3.14 \
	$$(ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do \
	  "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v "$$p" || echo "$$p"; } && break; \
	done

.PHONY: demo test test-slow test-sbc bench lint format clean chromium

$(VENV)/.installed: pyproject.toml
	@py="$$($(FIND_PYTHON))"; \
	if [ -z "$$py" ]; then echo "kbayes needs Python >= 3.12 and none was found (looked on PATH and under pyenv)." >&2; exit 1; fi; \
	echo "Using $$py ($$("$$py" --version))"; \
	[ -x $(PY) ] || "$$py" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/kbayes demo

test: $(VENV)/.installed chromium
	$(PY) -m pytest -m "not slow" -q

# Headless Chromium for the report rendering test (tests/test_reporting.py). Installed only when
# missing, as root, with apt-get; otherwise (or if the install fails) that test skips, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium (apt-get) for the report rendering test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium install failed: the report rendering test will skip"; \
	  else \
	    echo "chromium not found and not installable here (needs root and apt-get): the report rendering test will skip"; \
	  fi; }

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow -q

# Reduced simulation-based calibration of every built-in spec (docs/calibration.md).
test-sbc: $(VENV)/.installed
	$(PY) -m pytest -m slow -q tests/test_calibration.py

bench: $(VENV)/.installed
	$(PY) benchmarks/fit.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
