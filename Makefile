# bnn: `make demo` runs the main job, `make test` the tests. Both set up .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MNIST_MIRROR ?=
DEMO_RUNS ?= runs
MIRROR_FLAG := $(if $(MNIST_MIRROR),--mirror $(MNIST_MIRROR),)
# The exact versions of every dependency (with the test and ray extras) for Python 3.11 on Linux,
# installed by `make setup`; `make setup LOCK=` installs the newest versions pyproject.toml allows.
LOCK ?= requirements.lock
# uv installs the lock (here 23 s with the bytecode, where pip took about 55 s: it downloads in
# parallel and links from its cache); it is itself pinned and installed on demand into build/,
# with pip.
UV_VERSION := 0.13.9
UV_TOOL := build/uv
UV := $(UV_TOOL)/bin/uv

.PHONY: setup check test pytest test-fast lint demo bench bench-quick bench-gpu clean lock

$(UV):
	$(PYTHON) -m venv $(UV_TOOL)
	$(UV_TOOL)/bin/pip install -q uv==$(UV_VERSION)

# The venv keeps its own pip, for installs by hand (a CUDA build of JAX, say): uv seeds it (0.5 s,
# where `python -m venv` took 3.6). The bytecode is compiled at install, as pip does: where
# PYTHONDONTWRITEBYTECODE is set (as on CI images), every process would otherwise compile the
# modules it imports anew, each time.
$(BIN)/bnn: pyproject.toml $(LOCK) | $(UV)
	$(UV) venv -q --seed --allow-existing --python $(PYTHON) $(VENV)
ifeq ($(LOCK),)
	$(UV) pip install --compile-bytecode -e '.[test,ray]' --python $(BIN)/python
else
	$(UV) pip install --compile-bytecode -r $(LOCK) --python $(BIN)/python
	$(UV) pip install --no-deps -e . --python $(BIN)/python
	$(UV) pip check --python $(BIN)/python
endif
	$(BIN)/python -m compileall -q bnn_cli  # the package's own, left out of an editable install
	touch $(BIN)/bnn

setup: $(BIN)/bnn

# Two test processes more than cores (pytest-xdist): each spends part of its time waiting on
# the processes it starts (CLI runs, Ray nodes). The Ray tests share one of them.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 2 )))
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

# The import contracts (.importlinter: the pipeline's layers point down) and the type checker
# ([tool.mypy] in pyproject.toml); `make test` runs them beside the tests, and so does CI:
# mypy keeps one core busy for about 15 s, while the test workers start up.
check: $(BIN)/bnn
	$(BIN)/lint-imports
	$(BIN)/mypy

test: $(BIN)/bnn
	@$(MAKE) --no-print-directory -j 2 check pytest

pytest: $(BIN)/bnn
	$(PYTEST)

test-fast: $(BIN)/bnn
	$(PYTEST) -m "not slow"

lint: $(BIN)/bnn
	$(BIN)/ruff check bnn_cli tests bench
	$(BIN)/ruff format --check bnn_cli tests bench

demo: $(BIN)/bnn
	$(BIN)/bnn download-mnist $(MIRROR_FLAG)
	$(BIN)/bnn train configs/smoke.yaml --runs-dir $(DEMO_RUNS)

bench: $(BIN)/bnn
	$(BIN)/python bench/run.py

# The GPU path end to end (K = 100 against the JAX anchor, the shipped configs, Ctrl-C); on a
# machine without a GPU the same suite runs on the CPU, cut short. Needs JAX's CUDA build there.
bench-gpu: $(BIN)/bnn
	$(BIN)/python bench/run.py --suite gpu --rounds 2

# One round, JAX only, 20-draw evaluations: a few minutes, for the edit-measure loop.
bench-quick: $(BIN)/bnn
	$(BIN)/python bench/run.py --rounds 1 --backends jax --cpu-k 0 --seed-iters 100 --eval-draws 20

# Refresh requirements.lock to the newest versions pyproject.toml allows (with uv, installed on
# demand into build/); `make lock UPGRADE=` only re-resolves after a change to pyproject.toml,
# keeping the other pins.
UPGRADE ?= --upgrade
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra test --extra ray \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu $(UPGRADE) \
		--custom-compile-command "make lock" --annotation-style line -o requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
