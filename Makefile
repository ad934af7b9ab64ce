# make demo: the paper in miniature on MNIST-1D (ensembles, paths, planes, report), on CPU.
# make test: the whole test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= runs/demo
DEMO_ARGS ?=

.PHONY: install demo test test-fast bench clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# `landscape demo` skips every finished step, so an interrupted demo resumes.
demo: install
	$(BIN)/landscape demo --out $(DEMO) $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/suite.py

clean-demo:
	rm -rf $(DEMO)
