# bnn: `make demo` runs the main job, `make test` the tests. Both set up .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MNIST_MIRROR ?=
DEMO_RUNS ?= runs
MIRROR_FLAG := $(if $(MNIST_MIRROR),--mirror $(MNIST_MIRROR),)

.PHONY: setup test test-fast lint demo bench clean

$(BIN)/bnn: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test,ray]'
	touch $(BIN)/bnn

setup: $(BIN)/bnn

test: $(BIN)/bnn
	$(BIN)/pytest -q

test-fast: $(BIN)/bnn
	$(BIN)/pytest -q -m "not slow"

lint: $(BIN)/bnn
	$(BIN)/ruff check bnn_cli tests bench
	$(BIN)/ruff format --check bnn_cli tests bench

demo: $(BIN)/bnn
	$(BIN)/bnn download-mnist $(MIRROR_FLAG)
	$(BIN)/bnn train configs/smoke.yaml --runs-dir $(DEMO_RUNS)

bench: $(BIN)/bnn
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
