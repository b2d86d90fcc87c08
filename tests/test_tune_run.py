"""`bnn tune` end to end on real MNIST with a tiny model: a study that prunes a trial behind
the median and writes best.yaml and its report, continued with more trials; a study killed
outright in the middle of a trial and started again; the same study on a local Ray cluster;
and the CLI's bad requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bnn_cli.config import load_config
from bnn_cli.runs import read_status
from bnn_cli.tune import study as studies
from tests.tune_helpers import TINY, write_tune

GOOD = {"inference.learning_rate": 0.01, "prior.gain": 1.0}
# A step so small the net barely moves: its validation NLL stays near log(10), far behind.
BAD = {"inference.learning_rate": 1e-5, "prior.gain": 1.0}


def tune_command(tune: Path, runs: Path, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "bnn_cli.cli", "tune", str(tune), "--runs-dir", str(runs),
            "--data-dir", str(data_dir)]  # fmt: skip


def two_trials_to_cut(tmp_path: Path) -> Path:
    """A study of two trials long enough (20 validations) to be cut in the middle of trial 1."""
    body = {
        "set": {**TINY, "inference.iterations": 400, "inference.eval_every": 20},
        "enqueue": [GOOD, {**GOOD, "prior.gain": 2.0}],
        "pruner": "none",
        "trials": 2,
    }
    return write_tune(tmp_path, body)


def load(runs: Path, name: str = "tune"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = studies.default_storage(runs / "tunes" / name)
    return optuna.load_study(study_name=name, storage=url)


@pytest.mark.slow
def test_a_study_prunes_the_trial_behind_writes_best_yaml_and_continues(
    tmp_path, real_data_dir, bnn_here
):
    tune = write_tune(
        tmp_path,
        {
            "enqueue": [GOOD, {**GOOD, "inference.learning_rate": 0.005}, BAD],
            "pruner": {"kind": "median", "startup_trials": 2},
        },
    )
    runs = tmp_path / "runs"
    common = ("--runs-dir", str(runs), "--data-dir", str(real_data_dir))
    done = bnn_here("tune", tune, *common)
    assert done.returncode == 0, done.stderr
    best = Path(done.stdout.strip().splitlines()[-1])
    assert best == runs / "tunes" / "tune" / "best.yaml"
    study = load(runs)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned = Path(study.trials[2].user_attrs["run_dir"])
    status = read_status(pruned)
    assert status["state"] == "pruned" and status["iterations_done"] == 10
    assert status["message"].startswith("trial 2 pruned at iteration 10: val_nll ")
    assert "trial 2 pruned in" in done.stderr and "3/3 finished, 1 pruned" in done.stderr
    for trial in study.trials:  # ordinary runs, validated only: no test-split evaluation
        run = Path(trial.user_attrs["run_dir"])
        assert (run / "approx.npz").is_file() and not (run / "metrics.json").exists()
    config = load_config(best)
    assert config.inference.learning_rate == study.best_trial.params["inference.learning_rate"]
    assert config.model.hidden == tuple(TINY["model.hidden"])
    assert "| 2 | pruned |" in (runs / "tunes" / "tune" / "report.md").read_text()
    compared = bnn_here("compare", "--runs-dir", runs, "--format", "json")
    rows = {r["run"]: r for r in json.loads(compared.stdout)}
    assert rows[pruned.name]["state"] == "pruned"

    # Again with a larger budget: the three trials are kept, one more runs (two at a time).
    values = [t.value for t in study.trials]
    again = bnn_here("tune", tune, *common, "--trials", "4", "--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert "continuing study 'tune': 3 of 4 trials finished" in again.stderr
    study = load(runs)
    assert len(study.trials) == 4 and [t.value for t in study.trials[:3]] == values
    assert study.trials[3].state in (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.mark.slow
def test_a_study_killed_mid_trial_loses_no_finished_trial_and_resumes_the_cut_one(
    tmp_path, real_data_dir, bnn_here
):
    tune, runs = two_trials_to_cut(tmp_path), tmp_path / "runs"
    command = tune_command(tune, runs, real_data_dir)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        # Until trial 1 is past its second checkpoint, read from its status.json: opening the
        # study took seconds under load, and the tiny fit could end before the kill.
        while time.monotonic() < deadline:
            cut = list(runs.glob("*-tune-t0001-*"))
            if cut and (read_status(cut[0], missing_ok=True) or {}).get("iterations_done", 0) >= 40:
                break
            assert proc.poll() is None, "bnn tune ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("trial 1 never reached its second checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = load(runs).trials[0]
    assert first.state == TrialState.COMPLETE
    cut_run = next(runs.glob("*-tune-t0001-*"))
    deadline = time.monotonic() + 30  # the trial's fit dies with its tuner
    while time.monotonic() < deadline and read_status(cut_run).get("pid") and _alive(cut_run):
        time.sleep(0.2)
    assert not _alive(cut_run)

    done = bnn_here("tune", tune, "--runs-dir", runs, "--data-dir", real_data_dir)
    assert done.returncode == 0, done.stderr
    assert "1 cut-off trial(s) to retry" in done.stderr
    trials = load(runs).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].value == first.value and trials[0].datetime_complete == first.datetime_complete
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    assert trials[2].user_attrs["run_dir"] == str(cut_run), done.stderr  # resumed, not redone
    assert sorted(trials[2].intermediate_values) == list(range(20, 401, 20))  # earlier ones too
    assert read_status(cut_run)["state"] == "complete"
    assert len(list(runs.glob("*-tune-t*"))) == 2


def _alive(run: Path) -> bool:
    pid = read_status(run).get("pid")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_a_study_on_a_local_ray_cluster(tmp_path, real_data_dir, local_ray):
    from bnn_cli.tune import load_tune, run_tune
    from tests.sweep_helpers import quiet

    spec = load_tune(write_tune(tmp_path, {"trials": 2, "pruner": "none"}))
    result = run_tune(spec, tmp_path / "runs", str(real_data_dir), quiet(), executor="ray", jobs=2)
    assert local_ray.is_initialized()
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(read_status(Path(t.user_attrs["run_dir"]))["state"] == "complete" for t in trials)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--address", "x:1"), "error: --address needs --executor ray"),
        (("--storage", "nosuchdb://x"), "error: --storage 'nosuchdb://x' cannot be opened: "),
    ],
)
def test_bad_requests_are_one_error_line_with_exit_2(tmp_path, args, message, bnn_here):
    tune = write_tune(tmp_path, {})
    done = bnn_here("tune", tune, "--runs-dir", tmp_path / "runs", *args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(message)


def test_an_unknown_space_key_is_refused_before_anything_is_written(tmp_path, bnn_here):
    space = {"prior.gian": {"type": "float", "low": 0.5, "high": 2}}
    tune = write_tune(tmp_path, {"space": space})
    done = bnn_here("tune", tune, "--runs-dir", tmp_path / "runs")
    assert done.returncode == 2
    assert "unknown key 'prior.gian' — did you mean 'prior.gain'?" in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_tuners_on_one_study_share_it_without_running_a_trial_twice(tmp_path, real_data_dir):
    tune = write_tune(tmp_path, {"trials": 3, "pruner": "none"})
    runs = tmp_path / "runs"
    command = tune_command(tune, runs, real_data_dir)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60  # the first creates the study; the second joins it
    while time.monotonic() < deadline and not (runs / "tunes" / "tune" / "study.db").is_file():
        time.sleep(0.2)
    time.sleep(1)
    second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for proc in (first, second):
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()
    trials = [t for t in load(runs).trials if not t.user_attrs.get("surplus")]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    owners = {t.user_attrs["pid"] for t in trials}
    assert owners == {first.pid, second.pid}
    run_dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(run_dirs)) == 3 and len(list(runs.glob("*-tune-t*"))) == 3


@pytest.mark.slow
def test_an_interrupted_study_tells_the_cut_trial_and_resumes_it(tmp_path, real_data_dir, bnn_here):
    tune, runs = two_trials_to_cut(tmp_path), tmp_path / "runs"
    command = tune_command(tune, runs, real_data_dir)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until trial 1 has a checkpoint
        cut = list(runs.glob("*-tune-t0001-*"))
        if cut and (read_status(cut[0], missing_ok=True) or {}).get("iterations_done", 0) >= 20:
            break
        assert proc.poll() is None, "bnn tune ended before it could be interrupted"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # as Ctrl-C, a scheduler or `timeout` would
    assert proc.wait(timeout=120) == 130
    stderr = proc.stderr.read().decode()
    assert "trial 1 interrupted: bnn tune was interrupted" in stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted by SIGTERM"
    trials = load(runs).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs["retry"] is True
    assert read_status(cut[0])["state"] == "interrupted"

    done = bnn_here("tune", tune, "--runs-dir", runs, "--data-dir", real_data_dir)
    assert done.returncode == 0, done.stderr
    trials = load(runs).trials
    assert trials[2].state == TrialState.COMPLETE and trials[2].user_attrs["run_dir"] == str(cut[0])
    assert read_status(cut[0])["state"] == "complete"


@pytest.mark.slow
def test_a_study_with_no_complete_trial_exits_5_with_its_report_and_no_best_yaml(
    tmp_path, real_data_dir, bnn_here
):
    diverging = {"type": "float", "low": 1e6, "high": 1e7, "log": True}  # NaN at once
    tune = write_tune(tmp_path, {"space": {"inference.learning_rate": diverging}, "trials": 1})
    runs = tmp_path / "runs"
    done = bnn_here("tune", tune, "--runs-dir", runs, "--data-dir", real_data_dir)
    assert done.returncode == 5, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no trial completed: no best.yaml")
    folder = runs / "tunes" / "tune"
    assert (folder / "report.html").is_file() and not (folder / "best.yaml").exists()
    (trial,) = load(runs).trials
    assert trial.state == TrialState.FAIL and "diverged" in trial.user_attrs["error"]
