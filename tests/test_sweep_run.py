"""The sweep loop, its points and manifest: a failing and a killed point, resume, a changed
config, one sweep at a time, and real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnn_cli import sweep as sweeps
from bnn_cli.errors import RunError
from bnn_cli.runs import read_status, write_status
from tests.sweep_helpers import (
    fake_train,  # noqa: F401 (a fixture)
    mnist_only,  # noqa: F401 (a fixture)
    point_runs,
    quiet,
    tiny_sweep,
)


def test_a_killed_and_a_failed_point_do_not_stop_the_others_and_resume(
    tmp_path,
    fake_train,  # noqa: F811
    monkeypatch,
):
    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0, 1, 2, 3]}))
    runs = tmp_path / "runs"
    monkeypatch.setenv("FAKE_KILL", "1")
    monkeypatch.setenv("FAKE_FAIL", "2")
    console = quiet()
    result = sweeps.run_sweep(sweep, runs, None, console, jobs=2)

    states = {e["label"]: e["state"] for e in result.entries.values()}
    assert states == {"seed=0": "complete", "seed=1": "failed", "seed=2": "failed",
                      "seed=3": "complete"}  # fmt: skip
    errors = {e["label"]: e["error"] for e in result.failed()}
    assert errors == {"seed=1": "killed by SIGKILL", "seed=2": "the fit diverged: boom"}
    killed_run = point_runs(runs, sweep, "seed=1")[0]
    assert read_status(killed_run)["state"] == "failed"  # no longer claims to be running
    assert read_status(killed_run)["message"] == "the train process was killed by SIGKILL"
    assert (point_runs(runs, sweep, "seed=0")[0] / "threads").read_text() == str(
        max(1, sweeps.cpu_count() // 2)
    )
    printed = console.export_text()
    assert "seed=1 after" in printed and "killed by SIGKILL" in printed
    assert "4 points, 2 complete (0 already were), 2 failed" in printed
    with pytest.raises(sweeps.SweepFailed) as info:
        sweeps.raise_if_failed(result)
    assert str(info.value) == (
        "2 of 4 points failed: seed=1 (killed by SIGKILL); seed=2 (the fit diverged: boom)"
    )
    assert info.value.exit_code == 5  # a partial result, not a bug (1)

    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    assert manifest["state"] == "failed" and manifest["swept_keys"] == ["seed"]
    entry = manifest["points"][1]
    assert entry["overrides"] == {"seed": 1} and entry["run"] == killed_run.name
    assert entry["state"] == "failed" and entry["attempts"] == 1

    # Resume: the complete points are skipped, the failed ones (and one interrupted) run again.
    monkeypatch.delenv("FAKE_KILL")
    monkeypatch.delenv("FAKE_FAIL")
    write_status(point_runs(runs, sweep, "seed=3")[0], "interrupted")
    console = quiet()
    result = sweeps.run_sweep(sweep, runs, None, console, jobs=2)
    assert not result.failed() and result.skipped == ["seed=0"]
    assert [len(point_runs(runs, sweep, f"seed={s}")) for s in range(4)] == [1, 2, 2, 2]
    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    assert manifest["state"] == "complete"
    assert [p["attempts"] for p in manifest["points"]] == [1, 2, 2, 2]
    assert manifest["points"][1]["previous_runs"] == [killed_run.name]
    assert "skip seed=0: already complete" in console.export_text()

    # A lost manifest: complete runs are found again by their names and configs.
    (runs / "sweeps" / "sweep.json").unlink()
    result = sweeps.run_sweep(sweep, runs, None, quiet(), jobs=2)
    assert len(result.skipped) == 4


def test_a_changed_config_runs_the_point_again(tmp_path, fake_train):  # noqa: F811
    runs = tmp_path / "runs"
    first = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0]}))
    sweeps.run_sweep(first, runs, None, quiet())
    changed = tiny_sweep(tmp_path, {"seed": [0]})
    changed.write_text(changed.read_text().replace("iterations: 60", "iterations: 61"))
    result = sweeps.run_sweep(sweeps.load_sweep(changed), runs, None, quiet())
    assert result.skipped == [] and len(point_runs(runs, first, "seed=0")) == 2


def test_the_same_sweep_twice_at_once_is_refused(tmp_path, fake_train):  # noqa: F811
    from filelock import FileLock

    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0]}))
    runs = tmp_path / "runs"
    (runs / "sweeps").mkdir(parents=True)
    with FileLock(str(runs / "sweeps" / ".sweep.lock")):
        with pytest.raises(RunError, match="sweep 'sweep' is already running on the runs dir"):
            sweeps.run_sweep(sweep, runs, None, quiet())
    assert not list(runs.glob("2*"))


@pytest.mark.slow
def test_local_sweep_two_jobs_with_a_failing_point_then_resume(tmp_path, mnist_only, bnn_here):  # noqa: F811
    path = tiny_sweep(tmp_path, {"seed": [0, 1]}, points=[{"data.dataset": "fashion-mnist"}])
    runs = tmp_path / "runs"
    args = ["sweep", str(path), "--jobs", "2"]
    args += ["--runs-dir", str(runs), "--data-dir", str(mnist_only)]
    command = [sys.executable, "-m", "bnn_cli.cli", *args]
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run(command, capture_output=True, text=True, check=False, env=env)

    assert out.returncode == 5, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: 1 of 3 points failed: data.dataset=fashion-mnist (no fashion-mnist data in"
    )
    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    complete = [p for p in manifest["points"] if p["state"] == "complete"]
    assert [p["label"] for p in complete] == ["seed=0", "seed=1"]
    for point in complete:
        run_dir = Path(point["run_dir"])
        assert run_dir.parent == runs.resolve()
        assert run_dir.name.split("-", 2)[2].startswith(f"smoke-{point['label']}-")
        assert read_status(run_dir)["state"] == "complete"
        assert (run_dir / "metrics.json").is_file() and (run_dir / "report.html").is_file()
    assert "2 runs, best accuracy first" in out.stdout  # the compare table...
    assert "sweep 'sweep': mean ± sd over seed" in out.stdout  # ...and the grouped one
    assert "2/2" in out.stdout and "0/1" in out.stdout
    assert (runs / "sweeps" / "sweep.csv").is_file()

    # Resume after seed=1 was interrupted: only it and the failing point run again (the
    # command in this process: the exit code above was the real process's).
    write_status(Path(complete[1]["run_dir"]), "interrupted")
    out = bnn_here(*args, COLUMNS="250")
    assert out.returncode == 5, out.stderr
    assert "skip seed=0: already complete" in out.stderr
    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    assert [p["attempts"] for p in manifest["points"]] == [1, 2, 2]
    assert [p["state"] for p in manifest["points"]] == ["complete", "complete", "failed"]
    assert manifest["points"][1]["previous_runs"] == [complete[1]["run"]]


def test_a_sweep_in_a_pipe_shows_every_value_in_full(tmp_path, fake_train):  # noqa: F811
    """The CLI with stdout and stderr pipes and no COLUMNS, as in a CI log; the points run the
    stand-in for `bnn train` (this process's sys.executable, set before the CLI starts)."""
    deep = tmp_path / ("a-long-folder-name-" * 4)
    path = tiny_sweep(deep, {"prior.kind": ["fixed", "hierarchical"], "seed": [0, 1]})
    runs = deep / "runs"
    program = (
        f"import sys\nsys.executable = {str(fake_train)!r}\nsys.argv = ['bnn', 'sweep', "
        f"{str(path)!r}, '--runs-dir', {str(runs)!r}]\n"
        "from bnn_cli.cli import main\nraise SystemExit(main())\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    python = fake_train.read_text().splitlines()[0].removeprefix("#!")  # the real one
    out = subprocess.run(
        [python, "-c", program], capture_output=True, text=True, env=environ, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout and "…" not in out.stderr
    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    for point in manifest["points"]:
        assert point["run"] in out.stdout  # the compare table: run names in full
        (line,) = [ln for ln in out.stderr.splitlines() if f"done {point['label']} in" in ln]
        assert line.endswith(f": {point['run_dir']}")  # the run's path, whole, on its line
    for value in ("fixed", "hierarchical", "95.50% ± 0.71%", "90.50% ± 0.71%", "2/2"):
        assert value in out.stdout


def test_a_point_cut_off_after_a_checkpoint_resumes_in_its_run(tmp_path, monkeypatch):
    """Its run (interrupted, with a checkpoint of the point's config) is recorded in the
    manifest as the one to resume, and the point's `bnn train` is `--resume` of it; a point
    whose run has a checkpoint of another config starts over."""
    from bnn_cli.sweep import run as sweep_run
    from tests.test_fit_resume import run_with_checkpoint

    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0, 1]}))
    runs = tmp_path / "runs"
    runs.mkdir()
    cut = run_with_checkpoint(
        runs / f"20260101-000000-{sweep.points[0].config.name}-abcdef", "interrupted",
        sweep.points[0].config,
    )  # fmt: skip
    run_with_checkpoint(
        runs / f"20260101-000000-{sweep.points[1].config.name}-abcdef", "interrupted"
    )  # the default config's checkpoint: not this point's
    tasks = []

    def run_local(todo, jobs, record):
        for task in todo:
            tasks.append(task)
            run_dir = task.run_dir or str(runs / "20260101-000001-new-abcdef")
            record(task, {"state": "complete", "run_dir": run_dir, "wall_s": 1.0})

    monkeypatch.setattr(sweep_run, "run_local", run_local)
    console = quiet()
    result = sweeps.run_sweep(sweep, runs, None, console)
    first, second = tasks
    assert (first.config_file, first.extra_args, first.run_dir) == (
        "",
        ("--resume", str(cut)),
        str(cut),
    )
    assert second.config_file.endswith("seed=1.yaml") and second.extra_args == ()
    entry = result.entries[sweep.points[0].key]
    assert (entry["resume"], entry["run"], entry["previous_runs"]) == (str(cut), cut.name, [])
    assert f"resume seed=0 from its last checkpoint ({cut.name})" in console.export_text()


@pytest.mark.slow
def test_a_real_point_killed_after_a_checkpoint_goes_on_from_it(tmp_path, real_data_dir):
    from tests.test_resume import killed_run

    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0]}))
    runs = tmp_path / "runs"
    cut = killed_run(sweep.points[0].config, runs, real_data_dir, 30)  # a real fit, cut at 30
    result = sweeps.run_sweep(sweep, runs, str(real_data_dir), quiet())
    assert not result.failed()
    assert point_runs(runs, sweep, "seed=0") == [cut]  # the same run, not a new one
    assert read_status(cut)["state"] == "complete" and (cut / "metrics.json").is_file()
    meta = json.loads((cut / "meta.json").read_text())
    assert [entry["iteration"] for entry in meta["resumed"]] == [30]
