# Two entry points: `make demo` and `make test`. Both build or refresh .venv.
# `make check` is the edit loop: lint and every test that starts no Flower engine and no
# other process (tests/conftest.py fails one that does without its `slow` mark).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export RAY_DEDUP_LOGS := 0

.PHONY: demo test check lint format

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	rm -rf runs/demo
	$(BIN)/flowerbed simulate --out runs/demo

lint: $(VENV)/.installed
	$(BIN)/ruff check flowerbed tests bench examples
	$(BIN)/ruff format --check flowerbed tests bench examples

format: $(VENV)/.installed
	$(BIN)/ruff format flowerbed tests bench examples
	$(BIN)/ruff check --fix flowerbed tests bench examples

test: lint
	$(BIN)/python -m pytest -q --durations=25

check: lint
	FLOWERBED_CHECK=1 $(BIN)/python -m pytest -q -m "not slow" --durations=10
