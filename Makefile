# `make bench` and `make test` set up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The default benchmark: one strategy of each family against random, 3 seeds, quick preset, a worker per core.
BENCH_ARGS ?= --strategies random entropy learning-loss core-set --seeds 3

bench: $(STAMP)
	$(PY) run_bench.py $(BENCH_ARGS)

# Tests in parallel, a process per core (at most 4), each torch in it on one thread: two workers of two threads
# on two cores each wait for the other (see docs/performance.md). The reliability tests share background runs,
# so they go to one worker together (their conftest groups them).
test: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
