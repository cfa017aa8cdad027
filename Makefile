# The two commands a newcomer runs:  make lab  and  make test.
# Each sets up what it needs: a virtual environment in .venv with every extra installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test check lint typecheck unit bench bench-pinned example clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make lab: JupyterLab on the tutorials, everything installed
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

## make test: lint, type check and every test
test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check sage_nb tests bench
	$(VENV)/bin/ruff format --check sage_nb tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest

## make example: the reference's documented example, as a script
example: $(STAMP)
	$(PY) examples/reference_example.py

## make bench: benchmarks, unpinned and pinned to one CPU
bench: $(STAMP)
	$(PY) -m bench
	taskset -c 0 $(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
