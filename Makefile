# The one entry point for routine commands; CI calls the same targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install up test lint fmt bench clean

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

bench: install
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/fusion.py

clean:
	rm -rf $(VENV) .octavius .pytest_cache
