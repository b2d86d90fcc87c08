"""Fault injection through the real command line: every bad input and every fault ends with one
`error:` line on stderr, the documented exit code and no traceback, and leaves run directories
that tell the truth (no earlier run is ever modified).

A case runs `python -m bnn_cli.cli ...` in a subprocess where the process is what it is about
(a signal, a kill, two trainings at once, what a process writes to stderr); the rest run the
same `main` in this process (`here`): the three tables of bad input (configs, data files, run
directories: 64 cases), of which one case each also runs as a process whose stderr must be that
one line and nothing else, and the commands a fault test runs after its fault. Where a fault
cannot be produced from outside (a full disk, a bug, Ctrl-C at a given point), the test injects
it: with `monkeypatch` in this process, or in a process with a few lines run before the CLI's
`main` (`patched`: a download onto a full disk, a bug and its `--debug` traceback, an
evaluation killed while it writes).
The tests that train are marked slow; they share one module-wide runs directory whose first,
complete run must stay byte-identical to the end.

Running as root, `chmod` does not make a directory unwritable; the cases use a path below a
regular file (no directory can be made there) and `/proc/self` (a directory in which no one,
root included, can create entries) instead.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bnn_cli import atomic, runs
from bnn_cli.config import config_yaml, load_config
from bnn_cli.data.datasets import DATASETS
from bnn_cli.data.idx import idx_bytes
from bnn_cli.errors import RunError
from bnn_cli.fit import steppers
from bnn_cli.models.architecture import param_specs
from bnn_cli.posterior import params
from bnn_cli.posterior.evaluate import PosteriorPredictive, evaluate_run
from bnn_cli.runs import store
from tests.conftest import REAL_DATA_DIR
from tests.download_helpers import FILES, cli_env, wait_for_partial

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
# Fast training on the real data (see the slow tests).
TINY = [
    "inference.iterations=50",
    "inference.eval_every=25",
    "model.hidden=[16]",
    "data.train_size=5000",
    "data.val_size=1000",
    "evaluate.draws=5",
]
LONG = [*TINY, "inference.iterations=1000000"]  # runs until a signal stops it
# Sizes that fit the synthetic 30 + 12 image dataset of conftest.
SYNTHETIC = ["data.train_size=20", "data.val_size=5", "inference.batch_size=10"]
ENOSPC = "import errno, os\nFULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"


# --- running the CLI -----------------------------------------------------------------------


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one `error:` line; fails the test on a traceback or on more than one."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, self.stderr
        return lines[0]


# What the CLI sees of the environment beyond the suite's own, in a process or in this one
# (`here`): no runs or data directory of the user's, and a wide terminal. None: unset.
CLI_ENV: dict[str, str | None] = {"BNN_RUNS_DIR": None, "BNN_DATA_DIR": None, "COLUMNS": "200"}


def env(**extra: str) -> dict[str, str]:
    merged = {**os.environ, **CLI_ENV, **extra}
    return {k: v for k, v in merged.items() if v is not None}


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "bnn_cli.cli", *map(str, args)]


def bnn(*args: object, timeout: float = 300, cwd: Path = ROOT, **extra: str) -> Result:
    done = subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env(**extra),
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def here(bnn_here) -> Callable[..., Result]:
    """`bnn()` in this process: the same `main`, arguments, working directory and environment
    (`extra`: variables set for the one call)."""

    def run(*args: object, cwd: Path = ROOT, **extra: str) -> Result:
        done = bnn_here(*args, cwd=cwd, **{**CLI_ENV, **extra})
        return Result(done.returncode, done.stdout, done.stderr)

    return run


def patched(code: str, *args: object, timeout: float = 300) -> Result:
    """The CLI with a fault injected by `code`, run before its `main`."""
    program = (
        f"import sys\n{code}\nsys.argv = ['bnn', *{[str(a) for a in args]!r}]\n"
        "from bnn_cli.cli import main\nraise SystemExit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env(),
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def start(*args: object, sigint=signal.SIG_DFL, **extra_env: str) -> subprocess.Popen:
    """The CLI as a terminal starts it: with Ctrl-C's default handling even where this suite
    runs in the background, whose shell has SIGINT ignored (children inherit that); or with
    `sigint=signal.SIG_IGN`, as a background shell starts it."""
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env(**extra_env),
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> Result:
    stdout, stderr = process.communicate(timeout=timeout)
    return Result(process.returncode, stdout, stderr)


def snapshot(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file below `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def status_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


# --- configuration: exit 2, one line naming the key and the value ----------------------------

CONFIG_CASES = [
    # (id, config file text or None for configs/smoke.yaml, --set items, the error line)
    (
        "unknown-key",
        "name: x\nmodel: {hiden: [16]}\n",
        [],
        "error: unknown key 'model.hiden' — did you mean 'model.hidden'?",
    ),
    (
        "unknown-key-in-set",
        None,
        ["inference.lerning_rate=0.1"],
        "error: unknown key 'inference.lerning_rate' — did you mean 'inference.learning_rate'?",
    ),
    (
        "unknown-section",
        "zzz: 1\n",
        [],
        "error: unknown key 'zzz'; valid keys: name, seed, data, model, prior, inference, evaluate",
    ),
    (
        "integer-expected",
        None,
        ["inference.iterations=many"],
        "error: inference.iterations: expected an integer, got 'many'",
    ),
    (
        "integer-not-float",
        None,
        ["inference.iterations=1.5"],
        "error: inference.iterations: expected an integer, got 1.5",
    ),
    ("integer-not-bool", None, ["seed=true"], "error: seed: expected an integer, got True"),
    (
        "list-expected",
        None,
        ["model.hidden=16"],
        "error: model.hidden: expected a non-empty list of integers, got 16",
    ),
    (
        "number-expected",
        None,
        ["inference.learning_rate=fast"],
        "error: inference.learning_rate: expected a number, got 'fast'",
    ),
    (
        "finite-expected",
        None,
        ["inference.learning_rate=.nan"],
        "error: inference.learning_rate: expected a finite number, got nan",
    ),
    ("section-expected", "data: 3\n", [], "error: 'data' must be a mapping, got int 3"),
    (
        "batch-size-zero",
        None,
        ["inference.batch_size=0"],
        "error: inference.batch_size: got 0, expected a value greater than 0",
    ),
    (
        "batch-size-negative",
        None,
        ["inference.batch_size=-500"],
        "error: inference.batch_size: got -500, expected a value greater than 0",
    ),
    (
        "iterations-zero",
        None,
        ["inference.iterations=0"],
        "error: inference.iterations: got 0, expected a value greater than 0",
    ),
    (
        "learning-rate-zero",
        None,
        ["inference.learning_rate=0"],
        "error: inference.learning_rate: got 0.0, expected a value greater than 0",
    ),
    (
        "learning-rate-negative",  # also: `-1e-3` is a number, though YAML 1.1 says text
        None,
        ["inference.learning_rate=-1e-3"],
        "error: inference.learning_rate: got -0.001, expected a value greater than 0",
    ),
    (
        "train-size-zero",
        None,
        ["data.train_size=0"],
        "error: data.train_size: got 0, expected a value greater than 0",
    ),
    (
        "hidden-size-zero",
        None,
        ["model.hidden=[16, 0]"],
        "error: model.hidden: got 0, expected a value greater than 0",
    ),
    (
        "draws-negative",
        None,
        ["evaluate.draws=-1"],
        "error: evaluate.draws: got -1, expected a value greater than 0",
    ),
    (
        "seed-too-large",
        None,
        ["seed=4294967296"],
        "error: seed: got 4294967296, expected a value from 0 to 4294967295",
    ),
    (
        "train-plus-val-too-large",
        None,
        ["data.train_size=55000"],
        "error: data.train_size + data.val_size = 65000 exceeds the 60000 training images of mnist",
    ),
    (
        "batch-larger-than-train",
        None,
        ["data.train_size=100"],
        "error: inference.batch_size: got 500, expected at most data.train_size (100)",
    ),
    (
        "unknown-architecture",
        None,
        ["model.architecture=resnet"],
        "error: model.architecture: got 'resnet', expected one of mlp, conv",
    ),
    (
        "unknown-prior",
        None,
        ["prior.kind=flat"],
        "error: prior.kind: got 'flat', expected one of fixed, hierarchical",
    ),
    (
        "unknown-early-stopping-metric",
        None,
        ["inference.early_stopping=loss"],
        "error: inference.early_stopping: got 'loss', expected one of none, val_nll, val_accuracy",
    ),
    (
        "zero-kl-weight",
        None,
        ["inference.kl_weight=0"],
        "error: inference.kl_weight: got 0.0, expected a value greater than 0",
    ),
    (
        "zero-prior-gain",
        None,
        ["prior.sd=fan_in", "prior.gain=0"],
        "error: prior.gain: got 0.0, expected a value greater than 0",
    ),
    (
        "name-with-slash",
        None,
        ["name=a/b"],
        "error: name: got 'a/b', expected a non-empty name without '/' (at most 100 printable "
        "characters, not starting with '.')",
    ),
    (
        "conv-too-deep",
        None,
        ["model.architecture=conv", "model.filters=[8, 8, 8]"],
        "error: model.filters: conv block 3 leaves no pixels with kernel_size 5 and pool_size 2;"
        " use fewer blocks or smaller kernels",
    ),
    (
        "empty-file",
        "",
        [],
        "error: config file '{path}' is empty (see configs/ for examples)",
    ),
    (
        "comments-only",
        "# nothing here\n",
        [],
        "error: config file '{path}' is empty (see configs/ for examples)",
    ),
    (
        "not-yaml",
        "name: [unclosed\n",
        [],
        "error: config file '{path}' is not valid YAML at line 2: expected ',' or ']', but got "
        "'<stream end>'",
    ),
    (
        "not-a-mapping",
        "- a\n- b\n",
        [],
        "error: config file '{path}' must hold a mapping of sections, got list ['a', 'b']",
    ),
    ("not-utf8", b"name: \xff\xfe\n", [], "error: config file '{path}' is not UTF-8 text"),
    (
        "nested-too-deeply",
        "data: " + "[" * 2000 + "]" * 2000 + "\n",
        [],
        "error: config file '{path}' is nested too deeply",
    ),
    (
        "set-without-equals",
        None,
        ["inference.iterations"],
        "error: --set expects dotted.key=value, got 'inference.iterations'",
    ),
    ("set-without-key", None, ["=3"], "error: --set expects dotted.key=value, got '=3'"),
    (
        "set-empty-part",
        None,
        ["model..hidden=[1]"],
        "error: --set expects dotted.key=value, got 'model..hidden=[1]'",
    ),
    (
        "set-unparsable-value",
        None,
        ["model.hidden=[16"],
        "error: --set model.hidden: cannot parse value '[16'",
    ),
    (
        "set-into-a-value",
        None,
        ["name.first=x"],
        "error: --set name.first: 'name' is not a section",
    ),
]


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [case[1:] for case in CONFIG_CASES],
    ids=[case[0] for case in CONFIG_CASES],
)
def test_a_bad_config_exits_2_with_one_line(request, tmp_path, here, text, overrides, expected):
    path = SMOKE
    if text is not None:
        path = tmp_path / "config.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    # How deep YAML may nest is Python's recursion limit, which importing PyTensor raises (this
    # process has): that case runs as a fresh process, as a user's `bnn train` reads its config.
    cli = bnn if request.node.callspec.id == "nested-too-deeply" else here
    result = cli("train", path, *sets(*overrides), "--runs-dir", tmp_path / "runs")
    assert (result.rc, result.error) == (2, expected.format(path=path))
    assert result.stdout == ""
    assert not (tmp_path / "runs").exists()  # nothing was created


def test_a_missing_config_file(tmp_path, here):
    result = here("train", tmp_path / "nope.yaml")
    assert result.rc == 2
    assert result.error == (
        f"error: config file '{tmp_path / 'nope.yaml'}' not found (give the path to a YAML file,"
        " e.g. configs/smoke.yaml)"
    )


def test_yaml_python_tags_never_execute(tmp_path, here):
    # Relative to the working directory: short enough that the message shows it whole.
    command_text = "!!python/object/apply:os.system ['touch pwned']"
    config = tmp_path / "evil.yaml"
    config.write_text(f"name: {command_text}\n")
    result = here("train", config, cwd=tmp_path)
    assert result.rc == 2
    assert result.error == (
        f"error: config file '{config}' is not valid YAML at line 1: could not determine a "
        "constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    )
    result = here("train", SMOKE, "--set", f"name={command_text}", cwd=tmp_path)
    assert result.rc == 2
    assert result.error == f"error: --set name: cannot parse value {command_text!r}"
    assert not (tmp_path / "pwned").exists()


# --- data: exit 3 ---------------------------------------------------------------------------


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_gzip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:10] + b"\xff" * (len(data) - 10))


DATA_CASES: list[tuple[str, str, Callable[[Path], None], str]] = [
    # (id, file to damage, how, the error line: {file} the resolved file, {folder} mnist/)
    (
        "truncated-file",
        "train-images-idx3-ubyte.gz",
        truncate_half,
        "error: cannot read '{file}': truncated gzip stream (it ends before the end-of-stream "
        "marker; an interrupted download?)",
    ),
    (
        "wrong-magic-number",
        "train-labels-idx1-ubyte.gz",
        lambda p: p.write_bytes(b"\x08\x01\x00\x00\x00\x1e" + bytes(30)),
        "error: cannot read '{file}': not an IDX file: the magic number must start with two "
        "zero bytes, found 0x08 0x01",
    ),
    (
        "unknown-type-code",
        "train-labels-idx1-ubyte.gz",
        lambda p: p.write_bytes(gz(b"\x00\x00\x07\x01\x00\x00\x00\x1e" + bytes(30))),
        "error: cannot read '{file}': unknown IDX data type code 0x07 (known: 0x08 ubyte, "
        "0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double)",
    ),
    (
        "payload-too-short",
        "t10k-images-idx3-ubyte.gz",
        lambda p: p.write_bytes(gz(idx_bytes(np.zeros((12, 28, 28), np.uint8))[:-100])),
        "error: cannot read '{file}': payload too short: the header declares shape "
        "(12, 28, 28) of ubyte = 9408 bytes after the header, the file has 9308",
    ),
    (
        "counts-disagree",
        "train-labels-idx1-ubyte.gz",
        lambda p: p.write_bytes(gz(idx_bytes(np.zeros(29, np.uint8)))),
        "error: '{folder}/train-images-idx3-ubyte.gz' has 30 images but "
        "'{folder}/train-labels-idx1-ubyte.gz' has 29 labels",
    ),
    (
        "wrong-image-shape",
        "train-images-idx3-ubyte.gz",
        lambda p: p.write_bytes(gz(idx_bytes(np.zeros((30, 8, 8), np.uint8)))),
        "error: '{folder}/train-images-idx3-ubyte.gz' holds uint8 images of shape (30, 8, 8); "
        "expected uint8 (n, 28, 28)",
    ),
    (
        "label-out-of-range",
        "t10k-labels-idx1-ubyte.gz",
        lambda p: p.write_bytes(gz(idx_bytes(np.full(12, 10, np.uint8)))),
        "error: '{folder}/t10k-labels-idx1-ubyte.gz' has label 10; mnist has 10 classes (0 to 9)",
    ),
    (
        "a-file-missing",
        "t10k-labels-idx1-ubyte.gz",
        lambda p: p.unlink(),
        "error: '{folder}/t10k-labels-idx1-ubyte.gz' is missing (run 'bnn download-mnist "
        "--data-dir {base}' first, or pass --data-dir pointing to the folder that holds mnist/)",
    ),
]


@pytest.fixture
def data_dir(tmp_path, make_synthetic_dataset) -> Path:
    """A data directory with tiny synthetic MNIST files (30 training, 12 test images)."""
    make_synthetic_dataset(tmp_path / "data" / "mnist")
    return tmp_path / "data"


def train_on(cli: Callable[..., Result], data_dir: Path, runs_dir: Path, *overrides: str) -> Result:
    return cli(
        "train",
        SMOKE,
        *sets(*SYNTHETIC, *overrides),
        "--data-dir",
        data_dir,
        "--runs-dir",
        runs_dir,
    )


@pytest.mark.parametrize(
    ("name", "damage", "expected"),
    [case[1:] for case in DATA_CASES],
    ids=[case[0] for case in DATA_CASES],
)
def test_damaged_data_exits_3(tmp_path, data_dir, here, name, damage, expected):
    folder = data_dir / "mnist"
    damage(folder / name)
    result = train_on(here, data_dir, tmp_path / "runs")
    line = expected.format(
        file=(folder / name).resolve(), folder=folder, base=shlex.quote(str(data_dir))
    )
    assert (result.rc, result.error) == (3, line)
    assert not (tmp_path / "runs").exists()


def test_a_corrupt_gzip_stream_exits_3(tmp_path, data_dir, here):
    path = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    corrupt_gzip(path)
    result = train_on(here, data_dir, tmp_path / "runs")
    assert result.rc == 3
    assert result.error.startswith(f"error: cannot read '{path.resolve()}': corrupt gzip stream (")


def test_no_data_directory_points_to_download(tmp_path, here):
    missing = tmp_path / "no-data"
    result = train_on(here, missing, tmp_path / "runs")
    assert result.rc == 3
    assert result.error == (
        f"error: no mnist data in '{missing / 'mnist'}' (run 'bnn download-mnist --data-dir "
        f"{shlex.quote(str(missing))}' first, or pass --data-dir pointing to the folder that "
        "holds mnist/)"
    )


def test_the_dataset_folder_itself_as_data_dir(tmp_path, data_dir, here):
    result = train_on(here, data_dir / "mnist", tmp_path / "runs")
    assert result.rc == 3
    assert result.error == (
        f"error: no mnist data in '{data_dir / 'mnist' / 'mnist'}'; '{data_dir / 'mnist'}' "
        f"holds the files itself, so pass its parent: --data-dir {shlex.quote(str(data_dir))}"
    )


def test_train_plus_validation_larger_than_the_data(tmp_path, data_dir, here):
    result = train_on(here, data_dir, tmp_path / "runs", "data.val_size=20")
    assert result.rc == 3
    assert result.error == (
        "error: train_size + val_size = 20 + 20 exceeds the 30 training images of mnist in "
        f"'{data_dir / 'mnist'}'"
    )


def test_download_into_an_unwritable_place(tmp_path, real_data_dir, here):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    mirror = real_data_dir / "mnist"
    result = here("download-mnist", "--data-dir", blocker / "data", "--mirror", mirror)
    assert result.rc == 3
    assert result.error == (
        f"error: cannot create data directory '{blocker / 'data' / 'mnist'}': Not a directory "
        "(choose another with --data-dir or $BNN_DATA_DIR)"
    )
    if Path("/proc/self").is_dir():  # a directory no one, root included, can write into
        result = here("download-mnist", "--mirror", mirror, BNN_DATA_DIR="/proc/self")
        assert result.rc == 3
        assert result.error == (
            "error: cannot create data directory '/proc/self/mnist': No such file or directory "
            "(choose another with --data-dir or $BNN_DATA_DIR)"
        )


def test_download_onto_a_full_disk(tmp_path, real_data_dir):
    result = patched(
        ENOSPC + "def full(fd):\n    raise FULL\nos.fsync = full\n",
        "download-mnist",
        "--data-dir",
        tmp_path,
        "--mirror",
        real_data_dir / "mnist",
    )
    assert result.rc == 3
    assert result.error == (
        f"error: cannot write to data directory '{tmp_path / 'mnist'}': No space left on device "
        "(free some space or choose another with --data-dir or $BNN_DATA_DIR)"
    )
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == [".download.lock"]


def test_a_download_killed_midway_is_recovered_by_the_next(tmp_path, server, real_data_dir, here):
    server.files = {name: (real_data_dir / "mnist" / name).read_bytes() for name in FILES}
    target = tmp_path / "mnist"
    process = subprocess.Popen(
        command("download-mnist", "--data-dir", tmp_path, "--mirror", server.url("trickle")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=ROOT,
    )
    try:
        partial = wait_for_partial(target, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert partial.exists() and not (target / FILES[0]).exists()
    # No clean-up by hand: the next download removes the partial file and completes.
    result = here("download-mnist", "--data-dir", tmp_path, "--mirror", real_data_dir / "mnist")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == str(target)
    assert sorted(p.name for p in target.iterdir()) == sorted([".download.lock", *FILES])
    for name in FILES:
        assert (target / name).read_bytes() == (real_data_dir / "mnist" / name).read_bytes()


# --- runs: exit 4 (or 2 for a usage error); a failed evaluate changes nothing ----------------


def fake_run(folder: Path, state: str = "complete", **status: object) -> Path:
    """A run directory as `bnn train` leaves it (without training): the TINY model on the
    synthetic data, with small finite parameters."""
    config = load_config(SMOKE, [*TINY, *SYNTHETIC])
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config_yaml(config))
    arrays = {}
    for spec in param_specs(config.model):
        arrays[params.key(params.MU, spec.name)] = np.full(spec.shape, 0.01, np.float32)
        arrays[params.key(params.RHO, spec.name)] = np.full(spec.shape, -5.0, np.float32)
    np.savez(folder / "approx.npz", **arrays)
    (folder / "status.json").write_text(json.dumps({"state": state, **status}))
    return folder


def rewrite_npz(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays.update({key.replace("__", "/"): value for key, value in changes.items()})
    np.savez(path, **arrays)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


RUN_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    # (id, how to damage the run, the error line: {run} its path, {name} its name)
    (
        "no-status",
        lambda r: (r / "status.json").unlink(),
        "error: '{run}' has no status.json: not a bnn run directory",
    ),
    (
        "corrupt-status",
        lambda r: (r / "status.json").write_text("{"),
        "error: '{run}/status.json' is corrupt (not JSON)",
    ),
    (
        "unknown-state",
        lambda r: (r / "status.json").write_text('{"state": "done"}'),
        "error: '{run}/status.json' is corrupt (no valid 'state')",
    ),
    (
        "interrupted",
        lambda r: (r / "status.json").write_text('{"state": "interrupted"}'),
        "error: run '{name}' is interrupted, not complete (use --allow-incomplete to evaluate "
        "the parameters it saved)",
    ),
    (
        "interrupted-before-saving",
        lambda r: (
            (r / "status.json").write_text('{"state": "interrupted"}'),
            r.joinpath("approx.npz").unlink(),
        ),
        "error: run '{name}' is interrupted, not complete (it saved no parameters)",
    ),
    (
        "failed",
        lambda r: (r / "status.json").write_text(
            json.dumps({"state": "failed", "message": "the loss became nan at iteration 3"})
        ),
        "error: run '{name}' is failed, not complete: the loss became nan at iteration 3 (use "
        "--allow-incomplete to evaluate the parameters it saved)",
    ),
    (
        "running-elsewhere",  # a live process: ours
        lambda r: (r / "status.json").write_text(
            json.dumps({"state": "running", "pid": os.getpid(), "host": platform.node()})
        ),
        "error: run '{name}' is running, not complete: it may still be training (pid "
        f"{os.getpid()}); wait for it to finish, or use --allow-incomplete to evaluate the "
        "parameters saved so far",
    ),
    (
        "no-approx",
        lambda r: (r / "approx.npz").unlink(),
        "error: run '{name}' has no approx.npz (the fit saved no parameters)",
    ),
    (
        "truncated-approx",
        lambda r: truncate_half(r / "approx.npz"),
        "error: '{run}/approx.npz' is corrupt or truncated (File is not a zip file); train the "
        "run again",
    ),
    (
        "empty-approx",
        lambda r: (r / "approx.npz").write_bytes(b""),
        "error: '{run}/approx.npz' is corrupt or truncated (No data left in file); train the run "
        "again",
    ),
    (
        "approx-wrong-shape",
        lambda r: rewrite_npz(r / "approx.npz", mu__out_w=np.zeros((3, 3), np.float32)),
        "error: '{run}/approx.npz': 'mu/out_w' has shape (3, 3), the model in config.yaml needs "
        "(16, 10)",
    ),
    (
        "approx-nan",
        lambda r: rewrite_npz(r / "approx.npz", rho__dense1_b=np.full(16, np.nan, np.float32)),
        "error: '{run}/approx.npz': 'rho/dense1_b' holds NaN or infinite values; the fit "
        "diverged — train again with a lower learning rate",
    ),
    (
        "approx-text",
        lambda r: rewrite_npz(r / "approx.npz", mu__out_b=np.array(list("abcdefghij"))),
        "error: '{run}/approx.npz': 'mu/out_b' holds <U1 values, not real numbers",
    ),
    (
        "approx-pickle",  # never unpickled
        lambda r: rewrite_npz(r / "approx.npz", mu__out_b=np.array([print], dtype=object)),
        "error: '{run}/approx.npz' is corrupt or truncated (Object arrays cannot be loaded when "
        "allow_pickle=False); train the run again",
    ),
    (
        "config-invalid",
        lambda r: (r / "config.yaml").write_text("model: {hidden: [0]}\n"),
        "error: run '{name}' has an invalid config.yaml: model.hidden: got 0, expected a value "
        "greater than 0",
    ),
    (
        "config-not-yaml",
        lambda r: (r / "config.yaml").write_text("model: [\n"),
        "error: '{run}/config.yaml' is corrupt (not YAML)",
    ),
    (
        "config-missing",
        lambda r: (r / "config.yaml").unlink(),
        "error: run '{name}' has no config.yaml",
    ),
]


@pytest.mark.parametrize(
    ("damage", "expected"), [case[1:] for case in RUN_CASES], ids=[case[0] for case in RUN_CASES]
)
def test_evaluating_a_bad_run_exits_4_and_changes_nothing(
    tmp_path, data_dir, here, damage, expected
):
    run_dir = fake_run(tmp_path / "runs" / "20260101-000000-smoke-abcdef")
    damage(run_dir)
    before = snapshot(run_dir)
    result = here("evaluate", run_dir, "--data-dir", data_dir)
    assert (result.rc, result.error) == (4, expected.format(run=run_dir, name=run_dir.name))
    assert result.stdout == ""
    assert snapshot(run_dir) == before


def test_one_case_of_each_table_as_a_process_writes_its_line_and_nothing_else(tmp_path, data_dir):
    """The tables above run in this process; a process's stderr would also hold what the CLI's
    own consoles never see (a library's warning, a stray log line): here it is the one line."""
    _, text, overrides, config_line = CONFIG_CASES[0]
    config = tmp_path / "config.yaml"
    config.write_text(text)
    _, name, damage, data_line = DATA_CASES[0]
    file = data_dir / "mnist" / name
    _, damage_run, run_line = RUN_CASES[0]
    run_dir = fake_run(tmp_path / "runs" / "20260101-000000-smoke-abcdef")
    damage_run(run_dir)
    expected = [
        (bnn("train", config, *sets(*overrides)), 2, config_line.format(path=config)),
        (bnn("evaluate", run_dir, "--data-dir", data_dir), 4, run_line.format(run=run_dir)),
    ]
    damage(file)
    data = train_on(bnn, data_dir, tmp_path / "new-runs")
    expected.append((data, 3, data_line.format(file=file.resolve())))
    for result, rc, line in expected:
        assert (result.rc, result.stdout, result.stderr) == (rc, "", line + "\n")


def test_a_killed_run_is_named_killed(tmp_path, data_dir, here):
    pid = dead_pid()
    run_dir = fake_run(tmp_path / "run", "running", pid=pid, host=platform.node())
    result = here("evaluate", run_dir, "--data-dir", data_dir)
    assert result.rc == 4
    assert result.error == (
        f"error: run 'run' is running, not complete, but its process (pid {pid}) is gone: it was "
        "killed (use --allow-incomplete to evaluate the parameters it saved)"
    )


def test_a_missing_run_and_a_file(tmp_path, here):
    result = here("evaluate", tmp_path / "nope")
    assert (result.rc, result.error) == (4, f"error: run directory '{tmp_path / 'nope'}' not found")
    result = here("evaluate", SMOKE)
    assert (result.rc, result.error) == (4, f"error: run directory '{SMOKE}' is not a directory")


@pytest.mark.parametrize("option", [["--draws", "0"], ["--split", "train"]])
def test_evaluate_usage_errors_exit_2(tmp_path, option, here):
    run_dir = fake_run(tmp_path / "run")
    before = snapshot(run_dir)
    result = here("evaluate", run_dir, *option)
    assert result.rc == 2
    assert result.stderr.startswith(f"error: invalid value for '{option[0]}'")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert snapshot(run_dir) == before


def test_an_unwritable_runs_directory(tmp_path, data_dir, here):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = train_on(here, data_dir, blocker / "runs")
    assert result.rc == 4
    assert result.error == (
        f"error: cannot create runs directory '{blocker / 'runs'}': Not a directory (choose "
        "another with --runs-dir or $BNN_RUNS_DIR)"
    )
    if Path("/proc/self").is_dir():
        result = here(
            "train", SMOKE, *sets(*SYNTHETIC), "--data-dir", data_dir, BNN_RUNS_DIR="/proc/self"
        )
        assert result.rc == 4
        assert result.error == (
            "error: runs directory '/proc/self' is not writable (choose another with --runs-dir "
            "or $BNN_RUNS_DIR)"
        )


def test_evaluation_stopped_by_ctrl_c_leaves_the_run_as_it_was(
    tmp_path, data_dir, here, monkeypatch
):
    run_dir = fake_run(tmp_path / "run")
    before = snapshot(run_dir)

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(PosteriorPredictive, "__call__", stop)
    result = here("evaluate", run_dir, "--data-dir", data_dir)
    assert (result.rc, result.error) == (130, "error: interrupted")
    assert snapshot(run_dir) == before


def without_staging(files: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in files.items() if not k.startswith(".report-")}


def test_an_evaluation_killed_while_it_writes_keeps_the_earlier_report(tmp_path, data_dir, here):
    run_dir = fake_run(tmp_path / "run")
    # The earlier report, written in this process: the cases are the evaluations after it.
    evaluate_run(run_dir, None, "test", str(data_dir), False, Console(file=io.StringIO()))
    before = snapshot(run_dir)
    assert {"metrics.json", "report.md", "report.html", "per_class.csv"} <= set(before)
    # Killed half-way through writing the new report (its markdown is written, not its html).
    for sig in ("SIGKILL", "SIGTERM"):
        result = patched(
            "import os, signal\nimport bnn_cli.atomic as a\nwrite = a._atomic_write\n"
            "def kill(path, data):\n"
            "    if path.name == 'report.html' and '.report-tmp-' in str(path):\n"
            f"        os.kill(os.getpid(), signal.{sig})\n"
            "    write(path, data)\n"
            "a._atomic_write = kill\n",
            "evaluate",
            run_dir,
            "--draws",
            "3",
            "--data-dir",
            data_dir,
        )
        assert result.rc == (-9 if sig == "SIGKILL" else 130), result.stderr
        assert without_staging(snapshot(run_dir)) == before, sig  # byte-identical
    assert snapshot(run_dir) == before  # and SIGTERM's cleanup took SIGKILL's staging folder too
    # A finished evaluation replaces the report as a whole: nothing of the earlier one is left.
    (run_dir / "plots" / "stale.png").write_bytes(b"from an earlier evaluation")
    assert here("evaluate", run_dir, "--draws", "3", "--data-dir", data_dir).rc == 0
    after = snapshot(run_dir)
    assert set(after) == set(before) and after != before
    assert json.loads((run_dir / "metrics.json").read_text())["draws"] == 3
    assert not list(run_dir.glob(".report-*"))


# --- in-process faults: the same rules where a subprocess cannot reach ----------------------


def test_two_runs_in_the_same_second_get_distinct_directories(tmp_path, monkeypatch):
    class FrozenClock:
        @staticmethod
        def now(tz=None):
            from datetime import datetime

            return datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    tokens = iter(["aaaaaa", "aaaaaa", "bbbbbb"])  # the second draw collides with the first
    monkeypatch.setattr(store, "datetime", FrozenClock)
    monkeypatch.setattr(store.secrets, "token_hex", lambda n: next(tokens))
    first = runs.create_run_dir(tmp_path, "smoke")
    (first / "marker").write_text("first")
    second = runs.create_run_dir(tmp_path, "smoke")
    assert (first.name, second.name) == (
        "20260102-030405-smoke-aaaaaa",
        "20260102-030405-smoke-bbbbbb",
    )
    assert [p.name for p in first.iterdir()] == ["marker"]
    assert list(second.iterdir()) == []


def test_hierarchical_parameters_are_checked(tmp_path):
    from bnn_cli.posterior.params import load as load_params

    config = load_config(SMOKE, [*TINY, "prior.kind=hierarchical"])
    arrays = {}
    for spec in param_specs(config.model):
        name = f"{spec.name}_raw"
        for kind in ("mu", "rho"):
            arrays[f"{kind}/{name}"] = np.zeros(spec.shape, np.float32)
            arrays[f"{kind}/{spec.name}_scale_log__"] = np.zeros((), np.float32)
    np.savez(tmp_path / "approx.npz", **arrays)
    assert sorted(load_params(tmp_path, config)) == sorted(arrays)
    arrays["rho/out_b_scale_log__"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "approx.npz", **arrays)
    with pytest.raises(RunError) as caught:
        load_params(tmp_path, config)
    assert str(caught.value) == (
        f"'{tmp_path / 'approx.npz'}': 'rho/out_b_scale_log__' has shape (3,), the model in "
        "config.yaml needs ()"
    )
    del arrays["mu/dense1_w_scale_log__"]
    np.savez(tmp_path / "approx.npz", **arrays)
    with pytest.raises(RunError, match="has no 'mu/dense1_w_scale_log__': it does not match"):
        load_params(tmp_path, config)


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115


@pytest.mark.parametrize(
    ("fault", "state", "message"),
    [
        (
            KeyboardInterrupt(),
            "interrupted",
            "stopped by Ctrl-C before the first checkpoint; no parameters saved",
        ),
        (
            KeyboardInterrupt("SIGTERM"),
            "interrupted",
            "stopped by SIGTERM before the first checkpoint; no parameters saved",
        ),
        (RuntimeError("boom"), "failed", "RuntimeError: boom"),
    ],
    ids=["ctrl-c", "sigterm", "bug"],
)
def test_a_fault_during_the_compile_is_recorded_honestly(
    tmp_path, data_dir, monkeypatch, fault, state, message
):
    def compile_step_function(*args, **kwargs):
        raise fault

    # the one compile both steppers (one step per call and K per call) go through
    monkeypatch.setattr(steppers, "compile_step_function", compile_step_function)
    from bnn_cli.train import train

    config = load_config(SMOKE, [*TINY, *SYNTHETIC])
    with pytest.raises(type(fault)):
        train(config, tmp_path / "runs", str(data_dir), quiet())
    (run_dir,) = runs.list_runs(tmp_path / "runs")
    status = status_of(run_dir)
    assert (status["state"], status["message"]) == (state, message)
    assert not (run_dir / "approx.npz").exists()
    with pytest.raises(RunError, match=f"is {state}, not complete"):
        runs.open_run(run_dir)


def test_an_unexpected_error_exits_1_pointing_to_debug(tmp_path):
    bug = (
        "import bnn_cli.report.compare\n"
        "def boom(*args, **kwargs):\n    raise RuntimeError('boom\\nwith a second line')\n"
        "bnn_cli.report.compare.compare_runs = boom\n"
    )
    result = patched(bug, "compare", tmp_path)
    assert result.rc == 1
    assert result.error == (
        "error: unexpected RuntimeError: boom (run again with --debug for the traceback)"
    )
    result = patched(bug, "--debug", "compare", tmp_path)
    assert result.rc == 1
    assert "Traceback" in result.stderr and "RuntimeError: boom" in result.stderr


# --- process faults and numerics: real training, real signals (slow) -------------------------


@dataclass
class Trained:
    runs_dir: Path
    first: Path  # complete; must stay byte-identical through every test below
    second: Path
    digests: dict[str, str]

    def new_runs(self, before: set[Path]) -> list[Path]:
        return sorted(set(runs.list_runs(self.runs_dir)) - before)

    def assert_first_untouched(self) -> None:
        assert snapshot(self.first) == self.digests

    def train(self, cli: Callable[..., Result], *overrides: str, no_eval: bool = False) -> Result:
        """A TINY training (with `overrides`) into the shared runs directory."""
        flags = ("--no-eval",) if no_eval else ()
        runs_dir = ("--runs-dir", self.runs_dir, "--data-dir", REAL_DATA_DIR)
        return cli("train", SMOKE, *sets(*TINY, *overrides), *flags, *runs_dir)


# The tests on `trained` share its runs directory, in this file's order, on one test worker
# (pytest-xdist's loadgroup): one pair of trainings, and the last test sees what all did. The
# fixture lives for the session: a worker that runs other files' tests between these keeps it.
# (pytest 9.2.0 makes pytest-xdist ignore the group, pytest-dev/pytest-xdist#1386, which is why
# pyproject.toml leaves it out: each worker that got one of these tests would train its own pair.)
ON_THE_TRAINED_RUNS = pytest.mark.xdist_group("faults-trained")


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """Two tiny trainings started together into one runs directory."""
    if not all((REAL_DATA_DIR / "mnist" / f.name).is_file() for f in DATASETS["mnist"].files):
        pytest.skip(f"real MNIST files not found in {REAL_DATA_DIR / 'mnist'}")
    runs_dir = tmp_path_factory.mktemp("runs")
    args = ("train", SMOKE, *sets(*TINY), "--runs-dir", runs_dir, "--data-dir", REAL_DATA_DIR)
    processes = [start(*args, "--no-eval") for _ in range(2)]
    results = [finish(p, timeout=300) for p in processes]
    for result in results:
        assert result.rc == 0, result.stderr
    first, second = (Path(r.stdout.strip().splitlines()[-1]) for r in results)
    return Trained(runs_dir, first, second, snapshot(first))


def wait_for_progress(trained: Trained, before: set[Path], process: subprocess.Popen) -> Path:
    """The new run's directory, once it has saved parameters after some iterations."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        for run_dir in trained.new_runs(before):
            try:
                done = status_of(run_dir).get("iterations_done", 0)
            except (OSError, ValueError):
                continue  # not written yet
            if done > 0 and (run_dir / "approx.npz").is_file():
                return run_dir
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"training made no progress: {process.communicate()}")


@ON_THE_TRAINED_RUNS
@pytest.mark.slow
def test_two_trainings_at_once_get_distinct_complete_runs(trained):
    assert trained.first != trained.second
    assert trained.first.name.split("-")[2] == "smoke"
    for run_dir in (trained.first, trained.second):
        assert status_of(run_dir)["state"] == "complete"
        assert (run_dir / "approx.npz").is_file()


@ON_THE_TRAINED_RUNS
@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "line", "cause", "inherited"),
    [
        (signal.SIGINT, "error: interrupted", "Ctrl-C", signal.SIG_DFL),
        (signal.SIGTERM, "error: interrupted by SIGTERM", "SIGTERM", signal.SIG_DFL),
        # A sweep's child, with SIGINT ignored by the background shell that started the sweep:
        # the sweep forwards its Ctrl-C, so the child heeds it.
        (signal.SIGINT, "error: interrupted", "Ctrl-C", signal.SIG_IGN),
    ],
    ids=["sigint", "sigterm", "sigint-forwarded-by-a-sweep"],
)
def test_a_signal_during_training_saves_an_interrupted_run(
    trained, here, sig, line, cause, inherited
):
    from bnn_cli.errors import SIGINT_FROM_PARENT

    before = set(runs.list_runs(trained.runs_dir))
    extra = {SIGINT_FROM_PARENT: "1"} if inherited is signal.SIG_IGN else {}
    process = start(
        "train",
        SMOKE,
        *sets(*LONG),
        "--runs-dir",
        trained.runs_dir,
        "--data-dir",
        REAL_DATA_DIR,
        sigint=inherited,
        **extra,
    )
    run_dir = wait_for_progress(trained, before, process)
    process.send_signal(sig)
    result = finish(process)
    assert (result.rc, result.error) == (130, line)
    status = status_of(run_dir)
    assert status["state"] == "interrupted"
    assert status["message"] == (
        f"stopped by {cause}; the parameters so far are saved (resume with bnn train --resume "
        f"{run_dir}, or evaluate with --allow-incomplete)"
    )
    assert status["iterations_done"] >= 25
    with np.load(run_dir / "approx.npz") as npz:
        assert npz["mu/out_w"].shape == (16, 10)
    result = here("evaluate", run_dir, "--data-dir", REAL_DATA_DIR)
    assert (result.rc, result.error) == (
        4,
        f"error: run '{run_dir.name}' is interrupted, not complete (use --allow-incomplete to "
        "evaluate the parameters it saved)",
    )
    if (
        sig == signal.SIGINT and inherited is signal.SIG_DFL
    ):  # once is enough: evaluating what an interrupted run saved
        result = here(
            "evaluate", run_dir, "--allow-incomplete", "--draws", "2", "--data-dir", REAL_DATA_DIR
        )
        assert result.rc == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == str(run_dir / "report.html")
        assert json.loads((run_dir / "metrics.json").read_text())["draws"] == 2
        assert status_of(run_dir)["state"] == "interrupted"
    trained.assert_first_untouched()


@ON_THE_TRAINED_RUNS
@pytest.mark.slow
def test_sigkill_during_training_never_reads_complete(trained, here):
    before = set(runs.list_runs(trained.runs_dir))
    process = start(
        "train", SMOKE, *sets(*LONG), "--runs-dir", trained.runs_dir, "--data-dir", REAL_DATA_DIR
    )
    killed = wait_for_progress(trained, before, process)
    process.send_signal(signal.SIGKILL)
    assert finish(process).rc == -signal.SIGKILL
    status = status_of(killed)
    assert status["state"] == "running"
    left = snapshot(killed)
    result = here("evaluate", killed, "--data-dir", REAL_DATA_DIR)
    assert (result.rc, result.error) == (
        4,
        f"error: run '{killed.name}' is running, not complete, but its process (pid "
        f"{process.pid}) is gone: it was killed (use --allow-incomplete to evaluate the "
        "parameters it saved)",
    )
    # The next training is unaffected (PyTensor's compile lock, the runs directory).
    before = set(runs.list_runs(trained.runs_dir))
    result = trained.train(here, "inference.iterations=10", no_eval=True)
    assert result.rc == 0, result.stderr
    (new,) = trained.new_runs(before)
    assert status_of(new)["state"] == "complete"
    assert snapshot(killed) == left
    trained.assert_first_untouched()


DIVERGED = re.compile(
    r"the loss became (nan|inf|-inf) at iteration \d+: the fit diverged\. Lower "
    r"inference\.learning_rate \(now 0\.003\) or inference\.start_sigma \(now 1000\.0\) and "
    r"train again"
)


@ON_THE_TRAINED_RUNS
@pytest.mark.slow
def test_a_diverging_fit_is_failed_with_advice(trained, here):
    # A huge initial spread of the weights makes the very first ELBO estimate NaN.
    before = set(runs.list_runs(trained.runs_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = trained.train(here, "inference.start_sigma=1000.0")
    # The error line is all the user sees: no NumPy overflow warning printed before it.
    assert not [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert result.rc == 2  # a diverged fit: change the configuration
    assert DIVERGED.fullmatch(result.error.removeprefix("error: ")), result.error
    (run_dir,) = trained.new_runs(before)
    status = status_of(run_dir)
    assert status["state"] == "failed"
    assert status["iterations_done"] == 1  # the iteration that diverged, not the last checkpoint
    assert f"error: {status['message']}" == result.error
    result = here("evaluate", run_dir, "--data-dir", REAL_DATA_DIR)
    assert (result.rc, result.error) == (
        4,
        f"error: run '{run_dir.name}' is failed, not complete: {status['message']} (it saved no "
        "parameters)",
    )
    trained.assert_first_untouched()


@ON_THE_TRAINED_RUNS
@pytest.mark.slow
def test_a_full_disk_during_training_fails_the_run(trained, here, monkeypatch):
    write = atomic._atomic_write

    def full(path: Path, data: bytes) -> None:
        if path.name == "approx.npz":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(path, data)

    monkeypatch.setattr(atomic, "_atomic_write", full)
    before = set(runs.list_runs(trained.runs_dir))
    result = trained.train(here)
    (run_dir,) = trained.new_runs(before)
    message = f"cannot write '{run_dir / 'approx.npz'}': No space left on device"
    assert (result.rc, result.error) == (4, f"error: {message}")
    status = status_of(run_dir)
    assert (status["state"], status["message"]) == ("failed", message)
    trained.assert_first_untouched()


@ON_THE_TRAINED_RUNS
@pytest.mark.slow
def test_the_first_run_is_still_byte_identical(trained, here):
    """Last in this file: nothing above changed a byte of the first, complete run. Run on its
    own it still checks something of its own: commands that read the runs directory, and a
    refused resume of the complete run, leave it as it was."""
    listed = here("compare", "--runs-dir", trained.runs_dir, "--format", "csv")
    assert listed.rc == 0 and trained.first.name in listed.stdout
    refused = here("train", "--resume", trained.first, "--data-dir", REAL_DATA_DIR)
    assert refused.rc == 4, refused.stderr
    trained.assert_first_untouched()
