"""`bnn compare`: one row per run directory, best accuracy first, as a table (see tables.py for
the formats) and a CSV.

Runs that cannot be ranked are still listed, with the reason, after the ranked ones: a run that
is not complete, one without metrics.json (not evaluated), and paths that are not bnn run
directories at all. Only when none of the paths exists is that an error.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from bnn_cli.atomic import atomic_write_bytes, atomic_write_text
from bnn_cli.errors import ConfigError, RunError
from bnn_cli.report.formatting import (
    describe_objective,
    finite_number,
    format_duration,
    format_number,
    format_percent,
    plain_int,
)
from bnn_cli.report.tables import DASH, Column, Tabular, csv_text, emit, value
from bnn_cli.runs import files, list_runs, open_run, read_status

log = logging.getLogger(__name__)

# fmt: off
ROW_KEYS = [
    "run", "path", "name", "dataset", "architecture", "prior", "state", "iterations",
    "planned_iterations", "kept_iteration", "objective", "wall_s", "split", "accuracy", "nll",
    "ece", "mean_epistemic", "auroc_entropy", "converged", "ood", "ood_auroc",
    "rotate60_accuracy", "rotate60_ece", "problem",
]
# fmt: on
METRIC_KEYS = ["accuracy", "nll", "ece", "mean_epistemic", "auroc_entropy"]


def compare_runs(
    run_dirs: list[Path], csv_path: Path | None, console: Console, fmt: str = "table"
) -> list[dict]:
    """Print the comparison in `fmt` (and write it as CSV if asked); return the rows, ranked."""
    rows = ranked_rows(run_dirs)
    emit(console, [comparison(rows)], fmt)
    if csv_path is not None:
        atomic_write_text(Path(csv_path), rows_to_csv(rows))
        log.info("comparison written to %s", csv_path)
    return rows


def ranked_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per path, best first (see `_rank`); an error only when none of them exists."""
    paths = [Path(p) for p in run_dirs]
    if paths and not any(p.exists() for p in paths):
        listed = ", ".join(f"'{p}'" for p in paths)
        raise RunError(f"none of the run directories exists: {listed}")
    return sorted((collect_row(p) for p in paths), key=_rank)


def select_runs(
    run_dirs: list[Path], runs_dir: Path, last: int | None = None, name: str | None = None
) -> list[Path]:
    """The runs to compare: the given paths, else every run in `runs_dir` (what is not a run is
    skipped); only those whose config name matches the glob `name`; the `last` newest."""
    paths = [Path(p) for p in run_dirs]
    if not paths:
        paths = list_runs(runs_dir)
        if not paths:
            raise RunError(
                f"no runs in '{runs_dir}' (train one with bnn train, or choose another "
                "directory with --runs-dir or $BNN_RUNS_DIR)"
            )
    if name is not None:
        paths = [p for p in paths if fnmatch.fnmatchcase(_config_name(p) or "", name)]
        if not paths:
            raise RunError(f"no run has a config name matching '{name}'")
    if last is not None:
        paths = sorted(paths, key=lambda p: p.name)[-last:]  # names start with the UTC time
    return paths


def _config_name(run_dir: Path) -> str | None:
    try:
        return open_run(run_dir, allow_incomplete=True).config.get("name")
    except RunError:
        return None


def collect_row(run_dir: Path) -> dict[str, Any]:
    """What one run directory says about itself; `problem` explains whatever is missing."""
    run_dir = Path(run_dir)
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(run=run_dir.name or str(run_dir), path=str(run_dir))
    problem = _path_problem(run_dir)
    if problem:
        return {**row, "problem": problem}
    try:
        status = read_status(run_dir)
    except RunError:
        return {**row, "problem": "status.json is corrupt"}
    row.update(
        state=status["state"],
        iterations=plain_int(status.get("iterations_done")),
        kept_iteration=plain_int(status.get("kept_iteration", status.get("iterations_done"))),
        wall_s=finite_number(status.get("wall_s")),
    )
    problems = []
    try:
        row.update(_config_fields(open_run(run_dir, allow_incomplete=True).config))
    except RunError as exc:
        problems.append(str(exc))
    metrics, metrics_problem = _read_metrics(run_dir)
    if status["state"] == "pruned":  # why it stopped says more than "not evaluated"
        problems.append(status.get("message") or "pruned by a tuner")
    elif metrics_problem:
        problems.append(metrics_problem)
    row.update(
        split=metrics.get("split"), **{k: finite_number(metrics.get(k)) for k in METRIC_KEYS}
    )
    row.update(_ood_fields(metrics), **_shift_fields(metrics), converged=status.get("converged"))
    row["problem"] = "; ".join(problems) or None
    return row


SHIFT_COLUMN_ANGLE = 60  # where Ovadia et al.'s rotated-MNIST methods part clearly


def _shift_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    """Accuracy and ECE with the test images rotated by 60 degrees, if evaluated."""
    rows = (metrics.get("shift") or {}).get("rotate") or []
    at = next((r for r in rows if r.get("level") == SHIFT_COLUMN_ANGLE), None)
    if not isinstance(at, dict):
        return {}
    return {
        "rotate60_accuracy": finite_number(at.get("accuracy")),
        "rotate60_ece": finite_number(at.get("ece")),
    }


def shift_curves(run_dirs: list[Path], shift: str = "rotate") -> dict[str, Sequence[dict]]:
    """Each evaluated run's rows of `shift` from metrics.json, labelled by its config name and
    objective (and its directory where two would read the same), for one figure."""
    curves = {}
    for run_dir in run_dirs:
        metrics, problem = _read_metrics(Path(run_dir))
        rows = (metrics.get("shift") or {}).get(shift) if not problem else None
        if rows:
            row = collect_row(Path(run_dir))
            label = f"{row['name'] or '?'}, {row['objective'] or '?'}"
            curves[label if label not in curves else f"{label} ({Path(run_dir).name})"] = rows
    return curves


def plot_shift(run_dirs: list[Path], path: Path, shift: str = "rotate") -> None:
    """One figure of every run's `shift` curves; an error if no run has any."""
    curves = shift_curves(run_dirs, shift)
    if not curves:
        raise ConfigError(
            f"--plot-shift: none of the runs was evaluated with --shift {shift} "
            f"(run 'bnn evaluate RUN --shift {shift}' first)"
        )
    from bnn_cli.report import plots  # lazy: imports matplotlib, SciPy

    atomic_write_bytes(path, plots.shift_png(curves, shift))


def _ood_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    """The first out-of-distribution set in metrics.json and its AUROC (by entropy)."""
    ood = metrics.get("ood")
    if not isinstance(ood, dict) or not ood:
        return {}
    name, result = next(iter(ood.items()))
    return {"ood": name, "ood_auroc": finite_number((result or {}).get("auroc_entropy"))}


def _path_problem(run_dir: Path) -> str | None:
    if not run_dir.exists():
        return "not found"
    if not run_dir.is_dir():
        return "not a directory"
    if not (run_dir / "status.json").is_file():
        inside = list_runs(run_dir)
        if inside:  # a runs directory given instead of its runs
            return (
                f"not a bnn run directory (no status.json); it holds {len(inside)} runs: "
                f"pass them, e.g. {run_dir}/*"
            )
        return "not a bnn run directory (no status.json)"
    return None


def _config_fields(config: dict[str, Any]) -> dict[str, Any]:
    model, prior = config.get("model") or {}, config.get("prior") or {}
    return {
        "name": config.get("name"),
        "dataset": (config.get("data") or {}).get("dataset"),
        "architecture": model.get("architecture"),
        "prior": prior.get("kind"),
        "planned_iterations": plain_int((config.get("inference") or {}).get("iterations")),
        "objective": describe_objective(config.get("inference") or {}, prior),
    }


def _read_metrics(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    try:
        metrics = files.read_metrics(run_dir)
    except RunError:
        return {}, f"{files.METRICS_JSON} is corrupt"
    if metrics is None:
        return {}, f"not evaluated (no {files.METRICS_JSON})"
    return metrics, None


def _rank(row: dict[str, Any]) -> tuple[int, float, str]:
    """Complete and evaluated runs first, best accuracy first; then evaluated runs that are not
    complete; then runs without metrics; then paths that are not runs."""
    if row["state"] is None:
        group = 3
    elif row["accuracy"] is None:
        group = 2
    else:
        group = 0 if row["state"] == "complete" else 1
    return group, -(row["accuracy"] or 0.0), row["run"]


def _iterations(row: dict[str, Any]) -> str:
    """Done (of planned), and the iteration kept where early stopping kept an earlier one."""
    done, planned, kept = row["iterations"], row["planned_iterations"], row["kept_iteration"]
    if done is None:
        return DASH
    text = f"{done}/{planned}" if planned not in (None, done) else str(done)
    return f"{text}, kept {kept}" if kept not in (None, done) else text


# What people see, one line a column (csv and json carry ROW_KEYS, unformatted).
COLUMNS = [
    Column("run", value("run"), no_wrap=True),
    Column("name", value("name")),
    Column("arch", value("architecture")),
    Column("prior", value("prior")),
    Column("state", value("state")),
    Column("iterations", _iterations, right=True),
    Column("objective", value("objective")),
    Column("wall time", value("wall_s", format_duration), right=True),
    Column("accuracy", value("accuracy", format_percent), right=True),
    Column("NLL", value("nll", format_number), right=True),
    Column("ECE", value("ece", format_number), right=True),
    Column("epistemic", value("mean_epistemic", format_number), right=True),
    Column("error AUROC", value("auroc_entropy", format_number), right=True),
    Column("OOD AUROC", value("ood_auroc", format_number), right=True),
    Column("acc @60°", value("rotate60_accuracy", format_percent), right=True),
    Column("ECE @60°", value("rotate60_ece", format_number), right=True),
    Column("note", lambda row: row["problem"] or "", style="yellow"),
]


def comparison(rows: list[dict[str, Any]]) -> Tabular:
    title = f"{len(rows)} run{'s' if len(rows) != 1 else ''}, best accuracy first"
    dim = lambda row: row["accuracy"] is None  # noqa: E731
    return Tabular("runs", title, COLUMNS, ROW_KEYS, rows, dim=dim)


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    return csv_text(comparison(rows))
