# Two commands on a fresh machine with Python 3.10+:  make demo  /  make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint bench bench-instructions clean

install: $(STAMP)

# setup.py builds the optional C accelerator: a change to it, or to its source, reinstalls.
$(STAMP): pyproject.toml setup.py sanic_wsauth/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[redis,test,bench,dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m sanic_wsauth demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m benchmarks $(ARGS)

bench-instructions: $(STAMP)
	$(PY) -m benchmarks.instructions $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
	rm -f sanic_wsauth/_speedups*.so
