"""What a study leaves its user: `best.yaml` (the best trial's config, ready for `bnn train`),
`trials.csv`, and the study report (`report.md`, `report.html`, `plots/`): the trials table, the
optimization history, the parameters' importances and a slice plot per parameter."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from bnn_cli.atomic import atomic_write_bytes, atomic_write_text
from bnn_cli.config import config_yaml
from bnn_cli.report.formatting import format_duration
from bnn_cli.report.render import Section, render_html, render_markdown
from bnn_cli.report.tables import Column, Tabular, value
from bnn_cli.runs import utc_now
from bnn_cli.tune.run import best_trial
from bnn_cli.tune.spec import TuneSpec

logger = logging.getLogger(__name__)

TRIAL_COLUMNS = ("trial", "state", "value", "iterations", "wall_s", "params", "run_dir", "error")
COMPLETE, PRUNED = "COMPLETE", "PRUNED"


def trial_rows(study: Any, spec: TuneSpec) -> list[dict[str, Any]]:
    """One row per trial, in the order they were asked."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": t.value if t.state.name == COMPLETE else None,
                "last_reported": t.intermediate_values[steps[-1]] if steps else None,
                "iterations": steps[-1] if steps else None,
                "wall_s": t.user_attrs.get("wall_s"),
                "params": {k: t.params[k] for k in (p.key for p in spec.space) if k in t.params},
                "run_dir": t.user_attrs.get("run_dir"),
                "error": t.user_attrs.get("error"),
            }
        )
    return rows


def pruning_savings(rows: list[dict[str, Any]], iterations: int) -> dict[str, Any]:
    """Iterations the finished trials ran against what they would have run unpruned."""
    finished = [r for r in rows if r["state"] in ("complete", "pruned")]
    ran = sum(r["iterations"] or 0 for r in finished)
    planned = iterations * len(finished)
    saved = 1 - ran / planned if planned else 0.0
    return {"ran": ran, "planned": planned, "saved": saved}


def write_best(spec: TuneSpec, study: Any, folder: Path) -> Path | None:
    """best.yaml: the best complete trial's config, named after the study, with a comment saying
    where it came from; None when no trial is complete."""
    best = best_trial(study)
    if best is None:
        return None
    params = {p.key: best.params[p.key] for p in spec.space}
    config = spec.config_for(params, f"{spec.name}-best")
    header = [
        f"# The best trial of study '{spec.name}' ({spec.path}), written {utc_now()}:",
        f"# trial {best.number}, {spec.objective} {best.value:.6g} on the validation split,",
        f"# of {len(study.trials)} trials. Its values: "
        + ", ".join(f"{k}={_short(v)}" for k, v in params.items()),
        f"# Its run: {best.user_attrs.get('run_dir')}",
        "# Train and test it with: bnn train THIS_FILE",
    ]
    path = folder / "best.yaml"
    atomic_write_text(path, "\n".join(header) + "\n" + config_yaml(config))
    return path


def write_report(spec: TuneSpec, study: Any, folder: Path) -> Path:
    """report.md and report.html with the study's plots; returns the HTML file's path."""
    from bnn_cli.tune import plots  # lazy: imports matplotlib, SciPy

    rows = trial_rows(study, spec)
    iterations = spec.config_for({}, spec.name).inference.iterations
    saved = pruning_savings(rows, iterations)
    pictures = plots.study_plots(study, spec)
    (folder / "plots").mkdir(exist_ok=True)
    for name, data in pictures.items():
        atomic_write_bytes(folder / "plots" / name, data)
    sections = [
        Section("Study", paragraphs=summary_paragraphs(spec, study, rows, saved)),
        Section("Trials", table=trials_table(rows, spec), plots=[]),
        Section("Plots", plots=list(pictures)),
    ]
    title = f"bnn tune: {spec.name}"
    atomic_write_text(folder / "report.md", render_markdown(title, sections))
    html = render_html(title, sections, pictures)
    atomic_write_text(folder / "report.html", html)
    atomic_write_text(folder / "trials.csv", trials_csv(rows))
    return folder / "report.html"


def summary_paragraphs(
    spec: TuneSpec, study: Any, rows: list[dict[str, Any]], saved: dict[str, Any]
) -> list[str]:

    counts = {s: sum(1 for r in rows if r["state"] == s) for s in ("complete", "pruned", "fail")}
    space = "; ".join(f"`{p.key}`: {p.describe()}" for p in spec.space)
    lines = [
        f"Tune file `{spec.path}`, base config `{spec.base}`. Objective: {spec.direction} "
        f"`{spec.objective}` on the validation split (the test split is never used).",
        f"Space: {space}.",
        f"Sampler {spec.sampler.kind} (seed {spec.sampler.seed}), pruner {spec.pruner.kind}.",
        f"Trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} "
        f"failed, of {spec.trials} asked. Pruning ran {saved['ran']:,} of the "
        f"{saved['planned']:,} iterations the finished trials would have run "
        f"({saved['saved']:.0%} saved).",
    ]
    best = best_trial(study)
    if best is not None:
        values = ", ".join(f"`{k}` {_short(v)}" for k, v in best.params.items())
        lines.append(
            f"**Best: trial {best.number}, {spec.objective} {best.value:.4g}** with {values} "
            "(`best.yaml`)."
        )
    return lines


def trials_table(rows: list[dict[str, Any]], spec: TuneSpec) -> tuple[list[str], list[list[str]]]:
    keys = [p.key for p in spec.space]
    headers = ["trial", "state", spec.objective, "iterations", "wall", *keys]
    body = []
    for r in rows:
        shown = r["value"] if r["value"] is not None else r["last_reported"]
        cell = "—" if shown is None else f"{shown:.4g}"
        if r["state"] == "pruned" and shown is not None:
            cell += " (last)"
        body.append(
            [
                str(r["trial"]),
                r["state"],
                cell,
                "—" if r["iterations"] is None else str(r["iterations"]),
                format_duration(r["wall_s"]),
                *(_short(r["params"].get(k, "—")) for k in keys),
            ]
        )
    return headers, body


def trials_csv(rows: list[dict[str, Any]]) -> str:

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TRIAL_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "params": json.dumps(r["params"], sort_keys=True)})
    return buffer.getvalue()


def summary_tabular(rows: list[dict[str, Any]], spec: TuneSpec) -> Tabular:
    """The trials for the terminal (and --format markdown|csv|json: one field per parameter)."""
    keys = [p.key for p in spec.space]
    records = [{**{k: v for k, v in r.items() if k != "params"}, **r["params"]} for r in rows]
    columns = [
        Column("trial", value("trial"), right=True),
        Column("state", value("state")),
        Column(spec.objective, _value_cell, right=True),
        Column("iterations", value("iterations"), right=True),
        Column("wall", lambda r: format_duration(r["wall_s"]), right=True),
        *(Column(k, value(k, _short), right=True) for k in keys),
    ]
    fields = ["trial", "state", "value", "last_reported", "iterations", "wall_s", *keys]
    return Tabular("trials", f"study {spec.name}", columns, [*fields, "run_dir", "error"], records)


def _value_cell(row: dict[str, Any]) -> str:
    shown = row["value"] if row["value"] is not None else row["last_reported"]
    if shown is None or not math.isfinite(shown):
        return "—"
    return f"{shown:.4g}" + (" (last)" if row["state"] == "pruned" else "")


def _short(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
