"""Shared fixtures: where the real MNIST files are, and tiny synthetic MNIST-like datasets."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from rich.console import Console

from bnn_cli.cli import main
from bnn_cli.config import load_config
from bnn_cli.console import Environment
from bnn_cli.data.datasets import DATASETS, DatasetSpec, FileSpec
from bnn_cli.data.idx import idx_bytes, write_idx
from bnn_cli.train import train_and_evaluate
from tests.download_helpers import MirrorHandler, MirrorServer

# CI runs from a fresh clone with shared/ beside it: <root>/../shared/data holds mnist/.
REAL_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def real_data_dir() -> Path:
    """The folder holding the real `mnist/` files; skips the test where they are absent."""
    missing = [
        f.name for f in DATASETS["mnist"].files if not (REAL_DATA_DIR / "mnist" / f.name).is_file()
    ]
    if missing:
        pytest.skip(f"real MNIST files not found in {REAL_DATA_DIR / 'mnist'}: {missing}")
    return REAL_DATA_DIR


@pytest.fixture
def real_fashion_dir(real_data_dir) -> Path:
    """The folder holding the real `mnist/` and `fashion-mnist/` files (skips without them)."""
    folder = real_data_dir / "fashion-mnist"
    missing = [f.name for f in DATASETS["fashion-mnist"].files if not (folder / f.name).is_file()]
    if missing:
        pytest.skip(f"real Fashion-MNIST files not found in {folder}: {missing}")
    return real_data_dir


JAX_CACHE = "JAX_COMPILATION_CACHE_DIR"
JAX_CACHE_MIN_TIME = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
XLA_CACHE_KEY = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """One persistent XLA compilation cache for the session: its test workers and every CLI
    process they start compile the same small graphs hundreds of times, and XLA's compile is
    most of a tiny fit's time. JAX's own cache (keyed on the graph, the options and the
    versions), in a fresh folder per session, so no run of the suite sees another's. Set on
    the controller before pytest-xdist starts its workers, which inherit the environment."""
    if hasattr(config, "workerinput") or JAX_CACHE in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="bnn-tests-xla-")
    os.environ[JAX_CACHE] = folder
    os.environ[JAX_CACHE_MIN_TIME] = "0"  # tiny graphs too
    config.stash[XLA_CACHE_KEY] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(XLA_CACHE_KEY, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        for name in (JAX_CACHE, JAX_CACHE_MIN_TIME):  # the environment as the session found it
            os.environ.pop(name, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests (real fits, CLI processes) first, each file's in its own order: pytest-xdist
    hands out tests in this order, so the long ones start at once and the short ones fill the
    workers at the end, instead of one long test left running alone. Every worker sorts the
    same collection the same way, as pytest-xdist requires."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


SyntheticFactory = Callable[..., DatasetSpec]


@pytest.fixture
def make_synthetic_dataset() -> SyntheticFactory:
    """A factory writing the four MNIST files, tiny, into `folder`; returns a spec with their
    checksums and no built-in mirrors (so no test ever reaches the internet).

    Image i has pixel [0, 0] = i % 256 and label i % 10, so a test can tell which images a
    split took.
    """

    def make(
        folder: Path, n_train: int = 30, n_test: int = 12, image_shape: tuple[int, int] = (28, 28)
    ) -> DatasetSpec:
        rng = np.random.default_rng(0)
        arrays = {}
        for prefix, count in (("train", n_train), ("t10k", n_test)):
            images = rng.integers(0, 256, size=(count, *image_shape), dtype=np.uint8)
            images[:, 0, 0] = np.arange(count) % 256
            arrays[f"{prefix}-images-idx3-ubyte.gz"] = images
            arrays[f"{prefix}-labels-idx1-ubyte.gz"] = (np.arange(count) % 10).astype(np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for spec in DATASETS["mnist"].files:
            write_idx(folder / spec.name, arrays[spec.name])
            digest = hashlib.sha256(idx_bytes(arrays[spec.name])).hexdigest()
            files.append(FileSpec(spec.name, digest))
        return DatasetSpec(
            name="mnist", files=tuple(files), mirrors=(), class_names=DATASETS["mnist"].class_names
        )

    return make


@pytest.fixture(autouse=True, scope="session")
def _pytensor_backend():
    """Give PyTensor the same BLAS and floatX the CLI uses, once per test session."""
    from bnn_cli.engine import backend

    backend.configure("float32", "c")


# A tiny trained and evaluated run, shared by the tests of the Python API, `bnn predict` and
# predictive.nc: 100 iterations of a 32-unit MLP on the real MNIST files (about 20 s).
TINY_RUN = [
    "inference.iterations=100",
    "inference.eval_every=50",
    "model.hidden=[32]",
    "data.train_size=10000",
    "data.val_size=1000",
    "evaluate.draws=8",
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id) -> Path:
    """The run directory of configs/smoke.yaml trained with `TINY_RUN` and evaluated: once per
    test session, shared by pytest-xdist's workers (the first to get here trains it, the others
    wait on a lock and read its path). The tests only read it; a test that writes into a run
    takes `own_tiny_run`."""
    if not all((REAL_DATA_DIR / "mnist" / f.name).is_file() for f in DATASETS["mnist"].files):
        pytest.skip(f"real MNIST files not found in {REAL_DATA_DIR / 'mnist'}")
    if worker_id == "master":  # not under xdist: this session's own
        return _train_tiny_run(tmp_path_factory.mktemp("tiny-runs"))
    shared = tmp_path_factory.getbasetemp().parent  # this session's, above the workers' own
    with FileLock(str(shared / "tiny-run.lock")):
        made = shared / "tiny-run.path"
        if not made.is_file():
            made.write_text(str(_train_tiny_run(shared / "tiny-runs")), encoding="utf-8")
        return Path(made.read_text(encoding="utf-8"))


def _train_tiny_run(runs_dir: Path) -> Path:
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml", TINY_RUN)
    quiet = Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115
    return train_and_evaluate(config, runs_dir, str(REAL_DATA_DIR), evaluate=True, console=quiet)


@pytest.fixture
def own_tiny_run(tiny_run, tmp_path) -> Path:
    """A copy of `tiny_run` for a test that writes into the run directory, so that the shared
    one stays as the fixture made it whatever order the tests run in."""
    return Path(shutil.copytree(tiny_run, tmp_path / tiny_run.name))


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray (2 CPUs) for the tests that run an ensemble's members or a study's trials
    as Ray tasks: they are in the "ray" xdist group, so on one worker, and starting Ray takes
    seconds. The executors find it initialised and use it as they would a user's."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'bnn[ray]'")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def server(monkeypatch):
    """A misbehaving HTTP mirror on 127.0.0.1 (tests/download_helpers.MirrorServer)."""
    # Never send the test's requests through a proxy the environment may configure.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = MirrorServer(("127.0.0.1", 0), MirrorHandler)
    httpd.files, httpd.requests, httpd.release = {}, [], threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


BnnHere = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def bnn_here(monkeypatch) -> BnnHere:
    """`bnn ARGS...` run through `cli.main` in the test's own process, for a test about what a
    command does rather than about the process (signals, start-up, an installed entry point):
    the same parsing, error boundary and exit codes, without a process that imports PyMC and
    compiles its graphs again (about 5 s of CPU each). `cwd` and keyword environment variables
    (None: unset) hold for the one call. What the command changes in this process is put back:
    PyTensor's backend, the signal handlers `main` installs, the root logger."""

    def run(*args: object, cwd: Path | None = None, **environ: str | None):
        out, err = io.StringIO(), io.StringIO()
        env = Environment(Console(file=out, soft_wrap=True), Console(file=err, soft_wrap=True))
        handlers = {
            sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        root = logging.getLogger()
        logger_state = (root.level, list(root.handlers))
        argv = [str(a) for a in args]
        try:
            with monkeypatch.context() as patch:
                if cwd is not None:
                    patch.chdir(cwd)
                for name, value in environ.items():
                    if value is None:
                        patch.delenv(name, raising=False)
                    else:
                        patch.setenv(name, value)
                code = main(argv, env=env)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            root.setLevel(logger_state[0])
            root.handlers[:] = logger_state[1]
            from bnn_cli.engine import backend  # lazy: imports PyTensor

            backend.configure("float32", "c")  # the suite's, as _pytensor_backend set it
        return subprocess.CompletedProcess(
            ["bnn", *argv], int(code), out.getvalue(), err.getvalue()
        )

    return run
