# The one entry point for routine commands; CI calls the same targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install up test lint fmt bench clean alerts reindex cleanup scale-test

install: $(VENV)/.installed

# torch first, pinned, so pip takes the CPU build and sentence-transformers keeps it.
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import torch; assert torch.version.cuda is None, 'a CUDA torch was installed'"
	touch $@

up: install
	$(BIN)/octavius up

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core tasks flows deployments api

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Prefect automations (crash detection, queue backlog, failures) on the server of PREFECT_API_URL.
alerts: install
	$(BIN)/python -m deployments.automations

reindex: install
	$(BIN)/octavius reindex

cleanup: install
	$(BIN)/octavius cleanup

# The scale-out topology on loopback (PostgreSQL, Prefect server, 2 workers, 2 APIs, Dask):
# 100 tasks at once, each must complete exactly once, every document stored once, no process
# left (scripts/scale_test.py, docs/deployment.md). CI runs it after `test` (.ci/run, 13-19 min
# here). Options: make scale-test SCALE_TEST_ARGS='--keep --tasks 20'.
scale-test: install
	$(BIN)/python scripts/scale_test.py $(SCALE_TEST_ARGS)

bench: install
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/fusion.py

clean:
	rm -rf $(VENV) .octavius .pytest_cache
