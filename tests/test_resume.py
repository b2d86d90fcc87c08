"""`bnn train --resume RUN_DIR`: a fit cut off and resumed ends with the very parameters of one
that never stopped (one and ten steps per call, early stopping on, a real SIGKILL through the
CLI); Ctrl-C during a resumed fit; the runs it refuses and the command lines it rejects."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bnn_cli import runs
from bnn_cli.config import config_yaml, load_config
from bnn_cli.fit import resume as fit_resume
from bnn_cli.fit import steppers
from bnn_cli.train import resume, train
from tests.test_fit_resume import dead_pid

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
SMALL = [
    "model.hidden=[16]",
    "inference.iterations=60",
    "inference.eval_every=20",
    "data.train_size=2000",
    "data.val_size=500",
    "evaluate.draws=5",
    "evaluate.val_draws=2",
    "evaluate.ood=[]",
]
EARLY = ["inference.eval_every=10", "inference.early_stopping=val_nll", "inference.patience=2"]
# Ten steps per call without early stopping: the Ctrl-C and the SIGKILL tests below.
CASES = {
    "one step per call": ["inference.steps_per_call=1"],
    "ten steps per call, early stopping": ["inference.steps_per_call=10", *EARLY],
    # The per-image noise has a generator of its own, carried through the checkpoint too.
    "collapsed bound, per-image noise": [
        "inference.kl=analytic",
        "inference.gradient=local",
        "prior.kind=hierarchical",
        "prior.hyperprior=collapsed",
        "prior.alpha=0.1",
    ],
}


class Killed(BaseException):
    """Ends a fit as SIGKILL does: no handler of train's runs (neither an Exception nor
    Ctrl-C), so the run keeps saying `running`."""


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115


def killed_run(config, runs_dir: Path, data_dir: Path, at: int) -> Path:
    """A run of `config` stopped dead after its checkpoint at iteration `at`, its process gone
    (status.json names a process that has ended)."""

    def cut(approx, state):
        if state.iteration == at:
            raise Killed

    with pytest.raises(Killed):
        train(config, runs_dir, str(data_dir), quiet(), callbacks=[cut])
    (run_dir,) = runs.list_runs(runs_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "running" and status["iterations_done"] == at
    status["pid"] = dead_pid()
    (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def fit_rows(run_dir: Path) -> list[dict]:
    """elbo.csv without its clock."""
    with open(run_dir / "elbo.csv") as handle:
        return [
            {k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(handle)
        ]


def assert_same_fit(whole: Path, resumed: Path) -> None:
    with np.load(whole / "approx.npz") as a, np.load(resumed / "approx.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key  # bit for bit
    assert fit_rows(resumed) == fit_rows(whole)
    diagnostics = [(run / "diagnostics.csv").read_text() for run in (whole, resumed)]
    assert diagnostics[0] == diagnostics[1]
    a, b = runs.read_status(whole), runs.read_status(resumed)
    assert b["state"] == "complete" and "message" not in b
    for key in ("iterations_done", "kept_iteration", "stopped_early", "val_accuracy"):
        assert a[key] == b[key], key
    assert a["convergence"] == b["convergence"]
    assert not fit_resume.exists(resumed)  # a complete run is not resumed: the file is gone


def nll_by_iteration(monkeypatch, nlls: dict[int, float]) -> None:
    """Real validations, but the validation NLL that early stopping sees is `nlls[iteration]`."""
    from bnn_cli import train
    from bnn_cli.fit import callbacks

    real_call, real_figures, at = callbacks.Validation.__call__, train.validation_figures, {}

    def call(self, approx, state):
        at["iteration"] = state.iteration
        real_call(self, approx, state)

    def figures(*args):
        return {**real_figures(*args), "val_nll": nlls[at["iteration"]]}

    monkeypatch.setattr(callbacks.Validation, "__call__", call)
    monkeypatch.setattr(train, "validation_figures", figures)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_fit_cut_off_and_resumed_ends_as_an_unbroken_one(
    case, real_data_dir, tmp_path, monkeypatch
):
    config = load_config(SMOKE, [*SMALL, *CASES[case]])
    if config.inference.early_stopping != "none":
        # Best at 10, worse at 20 (the cut) and 30: the resumed fit must know both to stop
        # at 30 and keep 10, as the unbroken one does.
        nll_by_iteration(monkeypatch, {10: 0.4, 20: 0.5, 30: 0.6})
    at = 2 * config.inference.eval_every
    whole = train(config, tmp_path / "whole", str(real_data_dir), quiet())
    cut = killed_run(config, tmp_path / "cut", real_data_dir, at)
    assert fit_resume.load(cut).iteration == at

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    assert resume(cut, str(real_data_dir), console, argv=["bnn", "train", "--resume"]) == cut
    assert_same_fit(whole, cut)
    assert f"resuming run {cut} at iteration {at} of 60" in buffer.getvalue()
    (resumed,) = json.loads((cut / "meta.json").read_text())["resumed"]
    assert resumed["iteration"] == at and resumed["command_line"] == ["bnn", "train", "--resume"]
    assert resumed["pytensor"]["steps_per_call"] == steppers.steps_per_call(config.inference)
    status = runs.read_status(cut)
    assert status["train_s"] > 0 and status["pid"] == os.getpid()
    if config.inference.early_stopping != "none":
        assert (status["iterations_done"], status["kept_iteration"]) == (30, 10)


@pytest.mark.slow
def test_ctrl_c_in_a_resumed_fit_leaves_it_interrupted_and_resumable(
    real_data_dir, tmp_path, monkeypatch
):
    """Ctrl-C inside a ten-step call of the resumed fit: approx.npz gets the parameters after
    iteration 50, but the checkpoint stays at 40, the last validation; resuming from there
    still ends as the unbroken fit."""
    config = load_config(SMOKE, [*SMALL, "inference.steps_per_call=10"])
    whole = train(config, tmp_path / "whole", str(real_data_dir), quiet())
    cut = killed_run(config, tmp_path / "cut", real_data_dir, 40)
    real_call = steppers.MultiStep.__call__

    def interrupted_call(self, start):
        if start == 50:
            self.feeder.next_indices()  # as in a real call: the order has moved on already
            raise KeyboardInterrupt
        return real_call(self, start)

    monkeypatch.setattr(steppers.MultiStep, "__call__", interrupted_call)
    with pytest.raises(KeyboardInterrupt):
        resume(cut, str(real_data_dir), quiet())
    status = runs.read_status(cut)
    assert (status["state"], status["iterations_done"]) == ("interrupted", 50)
    assert status["message"] == (
        f"stopped by Ctrl-C; the parameters so far are saved (resume with bnn train --resume "
        f"{cut}, or evaluate with --allow-incomplete)"
    )
    assert fit_resume.load(cut).iteration == 40

    monkeypatch.undo()
    resume(cut, str(real_data_dir), quiet())
    assert_same_fit(whole, cut)
    meta = json.loads((cut / "meta.json").read_text())
    assert [entry["iteration"] for entry in meta["resumed"]] == [40, 40]


@pytest.mark.slow
def test_a_run_killed_by_sigkill_resumes_through_the_cli(real_data_dir, tmp_path, bnn_here):
    """The CLI's own default steps per call; 100 iterations, so that the kill lands well
    before the end. The resumed run is evaluated, as `bnn train` evaluates."""
    settings = [*SMALL, "inference.iterations=100"]
    train_args = ["train", SMOKE, "--data-dir", real_data_dir]
    for setting in settings:
        train_args += ["--set", setting]
    # The unbroken fit to compare with, in this process: what `--no-eval` trains.
    whole = train(load_config(SMOKE, settings), tmp_path / "whole", str(real_data_dir), quiet())

    command = [sys.executable, "-m", "bnn_cli.cli", *map(str, train_args)]
    process = subprocess.Popen(
        [*command, "--runs-dir", str(tmp_path / "cut"), "--no-eval"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    run_dir = None
    while process.poll() is None and time.monotonic() < deadline:
        found = runs.list_runs(tmp_path / "cut")
        if found and runs.read_status(found[0]).get("iterations_done", 0) >= 40:
            process.send_signal(signal.SIGKILL)
            run_dir = found[0]
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert run_dir is not None and process.returncode == -signal.SIGKILL
    status = runs.read_status(run_dir)
    assert status["state"] == "running" and runs.process_gone(status)

    out = bnn_here("train", "--resume", run_dir, "--data-dir", real_data_dir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(run_dir)
    assert_same_fit(whole, run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] > 0.5


def a_run(folder: Path, state: str, **status) -> Path:
    """A run directory as `bnn train` leaves it, without a fit: config.yaml and status.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config_yaml(load_config(SMOKE)))
    runs.write_status(folder, state, **status)
    return folder


def refusals(tmp_path: Path) -> list[tuple[Path, str]]:
    here = {"host": platform.node()}
    complete = a_run(tmp_path / "complete", "complete")
    live = a_run(tmp_path / "live", "running", pid=os.getpid(), **here)
    (tmp_path / "empty").mkdir()
    early = a_run(tmp_path / "early", "running", pid=dead_pid(), **here)
    changed = a_run(tmp_path / "changed", "interrupted")
    meta = {"format": fit_resume.FORMAT, "config_sha256": "0" * 64, "state": {"iteration": 250}}
    np.savez(changed / "checkpoint.npz", meta=np.array(json.dumps(meta)))
    members = a_run(tmp_path / "ensemble", "interrupted")
    (members / "ensemble.json").write_text('{"members": []}')
    return [
        (complete, "run 'complete' is complete: there is nothing to resume"),
        (
            live,
            f"run 'live' is still running (pid {os.getpid()}): wait for it to finish, or stop "
            "it before resuming",
        ),
        (tmp_path / "empty", f"'{tmp_path / 'empty'}' has no status.json: not a bnn run directory"),
        (tmp_path / "nowhere", f"run directory '{tmp_path / 'nowhere'}' not found"),
        (
            early,
            "run 'early' has no checkpoint to resume from: it stopped before its first "
            "validation (iteration 250); train it again",
        ),
        (
            changed,
            "run 'changed': config.yaml is not the configuration its checkpoint was written "
            "with; put it back as it was, or train the new config as a new run",
        ),
        (
            members,
            f"'ensemble' is an ensemble: train its config again to resume it (bnn train "
            f"{members / 'config.yaml'} --runs-dir {tmp_path}); complete members are kept and "
            "cut-off ones resume",
        ),
    ]


def test_runs_that_cannot_be_resumed_are_refused_with_exit_4(tmp_path):
    cases = refusals(tmp_path)
    before = [{p.name: p.read_bytes() for p in run_dir.glob("*")} for run_dir, _ in cases]
    started = [  # all at once: each is a second of Python starting up
        subprocess.Popen(
            [sys.executable, "-m", "bnn_cli.cli", "train", "--resume", str(run_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_dir, _ in cases
    ]
    for (run_dir, message), process, files in zip(cases, started, before, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        assert (process.returncode, stderr, stdout) == (4, f"error: {message}\n", "")
        assert {p.name: p.read_bytes() for p in run_dir.glob("*")} == files  # untouched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [SMOKE, "--resume", "runs/x"],
            "give CONFIG.yaml to train a new run, or --resume RUN_DIR to go on with one that "
            "was cut off, not both (a run keeps its own config.yaml)",
        ),
        (
            ["--resume", "runs/x", "--set", "seed=1"],
            "--set does not apply to --resume: the run's own config.yaml decides its numbers "
            "(train a new run to change them)",
        ),
    ],
)
def test_resume_with_a_config_or_set_is_a_usage_error(args, message, bnn_here):
    out = bnn_here("train", *args)
    assert (out.returncode, out.stderr) == (2, f"error: {message} (see 'bnn train --help')\n")
