"""compare_runs over a mix of evaluated, unevaluated, broken and non-run paths."""

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml
from rich.console import Console

from bnn_cli.config import Config
from bnn_cli.errors import RunError
from bnn_cli.report.compare import collect_row, compare_runs
from bnn_cli.runs import write_status


def make_run(
    runs_dir,
    dirname,
    *,
    state="complete",
    accuracy=None,
    architecture="mlp",
    prior="hierarchical",
    wall_s=90.0,
    metrics_text=None,
    name=None,
):
    run_dir = runs_dir / dirname
    run_dir.mkdir(parents=True)
    config = Config().to_dict()
    config["name"] = name or dirname.split("-")[0]
    config["model"]["architecture"] = architecture
    config["prior"]["kind"] = prior
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    write_status(run_dir, state, iterations_done=1200, wall_s=wall_s)
    if accuracy is not None:
        metrics = {
            "accuracy": accuracy,
            "nll": 0.1,
            "ece": 0.01,
            "mean_epistemic": 0.02,
            "auroc_entropy": 0.9,
            "split": "test",
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if metrics_text is not None:
        (run_dir / "metrics.json").write_text(metrics_text)
    return run_dir


@pytest.fixture
def mixed_runs(tmp_path):
    runs = tmp_path / "runs"
    paths = [
        make_run(runs, "mlp-a", accuracy=0.90, prior="fixed"),
        make_run(runs, "interrupted-c", state="interrupted"),
        make_run(runs, "conv-b", accuracy=0.95, architecture="conv", wall_s=4000),
        make_run(runs, "partial-e", state="interrupted", accuracy=0.99),
        make_run(runs, "corrupt-d", metrics_text="{not json"),
        tmp_path / "not-a-run",
        tmp_path / "missing",
    ]
    paths[5].mkdir()
    return paths


def test_rows_are_ranked_and_marked(mixed_runs):
    console = Console(record=True, width=250)
    rows = compare_runs(mixed_runs, None, console)
    assert [r["run"] for r in rows] == [
        "conv-b",
        "mlp-a",  # complete and evaluated, best accuracy first
        "partial-e",  # evaluated but interrupted: after the complete runs despite 99 %
        "corrupt-d",
        "interrupted-c",  # no usable metrics
        "missing",
        "not-a-run",  # not runs at all
    ]
    by_run = {r["run"]: r for r in rows}
    assert by_run["conv-b"]["architecture"] == "conv" and by_run["conv-b"]["accuracy"] == 0.95
    assert by_run["mlp-a"]["prior"] == "fixed" and by_run["mlp-a"]["iterations"] == 1200
    assert by_run["interrupted-c"]["state"] == "interrupted"
    assert by_run["interrupted-c"]["problem"] == "not evaluated (no metrics.json)"
    assert by_run["corrupt-d"]["problem"] == "metrics.json is corrupt"
    assert by_run["not-a-run"]["problem"] == "not a bnn run directory (no status.json)"
    assert by_run["missing"]["problem"] == "not found"
    printed = console.export_text()
    for name in by_run:
        assert name in printed
    assert "95.00%" in printed and "1 h 06 min" in printed and "—" in printed


def test_csv_has_the_same_rows(mixed_runs, tmp_path):
    csv_path = tmp_path / "out" / "compare.csv"
    csv_path.parent.mkdir()
    rows = compare_runs(mixed_runs, csv_path, Console(quiet=True))
    with open(csv_path, newline="") as handle:
        saved = list(csv.DictReader(handle))
    assert [r["run"] for r in saved] == [r["run"] for r in rows]
    assert saved[0]["accuracy"] == "0.95" and saved[0]["architecture"] == "conv"
    assert (
        saved[-1]["accuracy"] == ""
        and saved[-1]["problem"] == "not a bnn run directory (no status.json)"
    )
    assert [p.name for p in csv_path.parent.iterdir()] == ["compare.csv"]  # no temporary left


def test_all_paths_missing_is_an_error(tmp_path):
    with pytest.raises(RunError, match="none of the run directories exists: '.*nope'"):
        compare_runs([tmp_path / "nope"], None, Console(quiet=True))


def test_a_runs_directory_given_instead_of_its_runs(mixed_runs):
    problem = collect_row(mixed_runs[0].parent)["problem"]
    assert problem.startswith("not a bnn run directory (no status.json); it holds 5 runs: ")
    assert problem.endswith("runs/*")


def test_collect_row_of_a_corrupt_status(tmp_path):
    (tmp_path / "status.json").write_text("{")
    assert collect_row(tmp_path)["problem"] == "status.json is corrupt"
    assert collect_row(tmp_path)["state"] is None


def run_cli(*args):
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "bnn_cli.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_compare_prints_the_rows(mixed_runs, tmp_path):
    csv_path = tmp_path / "cli.csv"
    result = run_cli("compare", *map(str, mixed_runs), "--csv", str(csv_path))
    assert result.returncode == 0, result.stderr
    for name in ("conv-b", "mlp-a", "interrupted-c", "not-a-run"):
        assert name in result.stdout
    assert result.stdout.index("conv-b") < result.stdout.index("mlp-a")
    assert csv_path.read_text().count("\n") == len(mixed_runs) + 1


def test_cli_compare_with_no_existing_path_exits_4(tmp_path):
    result = run_cli("compare", str(tmp_path / "nope"))
    assert result.returncode == 4
    assert result.stderr.startswith("error: none of the run directories exists")


# ---------------------------------------------------------------- for scripts and pipes

LONG_PROBLEM = "not a bnn run directory (no status.json)"


def stamped_runs(runs):
    """Runs named as `bnn train` names them, oldest first."""
    return [
        make_run(runs, "20260101-090000-mlp-fixed-aaaaaa", accuracy=0.9123, name="mlp-fixed"),
        make_run(
            runs,
            "20260102-090000-conv-hier-bbbbbb",
            accuracy=0.9871,
            name="conv-hier",
            architecture="conv",
        ),
        make_run(runs, "20260103-090000-mlp-hier-cccccc", state="interrupted", name="mlp-hier"),
    ]


def piped(*args, cwd=None, **env):
    """The CLI with stdout a pipe and no COLUMNS: what `| cat`, `| tee` or a CI log get."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "BNN_RUNS_DIR")}
    return subprocess.run(
        [sys.executable, "-m", "bnn_cli.cli", *args],
        capture_output=True,
        text=True,
        env={**environ, **env},
        cwd=cwd,
        timeout=120,
    )


def test_a_table_in_a_pipe_shows_every_value_in_full(tmp_path, mixed_runs):
    runs = stamped_runs(tmp_path / "runs")
    out = piped("compare", *map(str, runs + mixed_runs))
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout
    for run in runs:
        assert run.name in out.stdout
    for value in ("98.71%", "91.23%", "0.1000", "0.0100", "0.0200", "0.9000", "1 min 30 s"):
        assert value in out.stdout
    assert "1200" in out.stdout and "1 h 06 min" in out.stdout and LONG_PROBLEM in out.stdout
    assert "not evaluated (no metrics.json)" in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) > 80  # sized to its content


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_formats_round_trip(tmp_path, fmt):
    runs = stamped_runs(tmp_path / "runs")
    out = piped("compare", *map(str, runs), "--format", fmt)
    assert out.returncode == 0, out.stderr
    if fmt == "csv":
        rows = list(csv.DictReader(out.stdout.splitlines()))
    elif fmt == "json":
        rows = [
            {k: "" if v is None else str(v) for k, v in r.items()} for r in json.loads(out.stdout)
        ]
    else:
        lines = out.stdout.strip().splitlines()
        assert lines[0] == "**3 runs, best accuracy first**" and lines[1] == ""
        header, rule, *body = lines[2:]
        assert header.startswith("| run | name | arch |") and header.endswith("| note |")
        assert rule.startswith("| --- |") and "---: |" in rule
        assert all(line.startswith("| ") and line.endswith(" |") for line in body)
        assert len(body) == 3 and runs[1].name in body[0] and "98.71%" in body[0]
        return
    assert [r["run"] for r in rows] == [runs[1].name, runs[0].name, runs[2].name]
    assert rows[0]["accuracy"] == "0.9871" and rows[0]["architecture"] == "conv"
    assert rows[2]["accuracy"] == "" and rows[2]["problem"] == "not evaluated (no metrics.json)"


def test_compare_with_no_arguments_takes_every_run_in_the_runs_directory(tmp_path):
    runs = stamped_runs(tmp_path / "runs")
    (tmp_path / "runs" / "sweeps").mkdir()  # not a run: skipped
    (tmp_path / "runs" / "notes.txt").write_text("not a run either")
    out = piped("compare", "--format", "csv", cwd=tmp_path)  # ./runs
    assert sorted(r["run"] for r in csv.DictReader(out.stdout.splitlines())) == sorted(
        r.name for r in runs
    )
    out = piped("compare", "--format", "csv", "--last", "2", BNN_RUNS_DIR=str(tmp_path / "runs"))
    assert sorted(r["run"] for r in csv.DictReader(out.stdout.splitlines())) == sorted(
        r.name for r in runs[1:]
    )
    runs_dir = str(tmp_path / "runs")
    out = piped("compare", "--runs-dir", runs_dir, "--name", "mlp*", "--format", "json")
    assert sorted(r["name"] for r in json.loads(out.stdout)) == ["mlp-fixed", "mlp-hier"]


def test_compare_with_nothing_to_compare_says_why(tmp_path):
    out = piped("compare", "--runs-dir", str(tmp_path / "empty"))
    assert out.returncode == 4
    assert out.stderr == (
        f"error: no runs in '{tmp_path / 'empty'}' (train one with bnn train, or choose another "
        "directory with --runs-dir or $BNN_RUNS_DIR)\n"
    )
    stamped_runs(tmp_path / "runs")
    out = piped("compare", "--runs-dir", str(tmp_path / "runs"), "--name", "resnet*")
    assert (out.returncode, out.stderr) == (
        4,
        "error: no run has a config name matching 'resnet*'\n",
    )


def test_a_pruned_run_says_why_it_stopped(tmp_path):
    run = make_run(tmp_path, "tune-t0004-abc123", state="pruned")
    write_status(run, "pruned", message="trial 4 pruned at iteration 100: val_nll 0.42 is behind")
    row = collect_row(run)
    assert row["state"] == "pruned" and row["accuracy"] is None
    assert row["problem"] == "trial 4 pruned at iteration 100: val_nll 0.42 is behind"


@pytest.mark.parametrize(
    ("inference", "prior", "objective"),
    [
        ({"kl": "analytic"}, {}, "ELBO, analytic KL"),
        (
            {"kl": "analytic"},
            {"kind": "fixed", "alpha": 0.025},
            "ELBO, analytic KL, collapsed bound (mean, alpha 0.025)",
        ),
        (
            {"kl": "analytic", "kl_weight": 0.5},
            {"kind": "hierarchical", "hyperprior": "collapsed", "alpha": 0.1},
            "tempered: KL x0.5, analytic KL, collapsed bound (variance and mean, alpha 0.1)",
        ),
    ],
)
def test_the_objective_says_its_estimator_and_bound(inference, prior, objective):
    from bnn_cli.report.compare import describe_objective

    assert describe_objective(inference, prior) == objective
