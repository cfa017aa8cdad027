# The two commands a newcomer runs:  make lab  and  make test.
# Each sets up what it needs: a virtual environment in .venv with every extra installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test fast check lint typecheck unit bench bench-pinned example clean chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make lab: JupyterLab on the tutorials, everything installed (as root too: containers)
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_ROOT) notebooks/

## make test: lint, type check and every test (the browser tests need Debian's Chromium)
test: $(STAMP) chromium lint typecheck unit

# Playwright drives the system Chromium; its own browser download does not work here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Chromium from Debian's packages (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(VENV)/bin/ruff check sage_nb tests bench notebooks docs
	$(VENV)/bin/ruff format --check sage_nb tests bench notebooks docs

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest

## make fast: the fast lane, every test that starts no kernel, Ray or browser and is not slow
# Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE=1 here):
# compiling the test modules and plugins again costs a few seconds of every inner-loop run.
fast: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -m "not slow and not kernel and not browser and not ray"

## make example: the reference's documented example, as a script
example: $(STAMP)
	$(PY) examples/reference_example.py

## make bench: benchmarks, unpinned and pinned to one CPU, then the Ray backend's
bench: $(STAMP)
	$(PY) -m bench
	taskset -c 0 $(PY) -m bench
	$(PY) -m bench.ray_figures

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
