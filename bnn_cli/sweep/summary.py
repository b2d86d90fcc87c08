"""The summary of a sweep: the `bnn compare` table of its runs, then one row per combination of
the swept keys with the mean ± sd of each metric over seeds; in any of the table formats."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from bnn_cli.atomic import atomic_write_text
from bnn_cli.report.compare import comparison, ranked_rows, rows_to_csv
from bnn_cli.report.formatting import format_duration, format_number, format_percent
from bnn_cli.report.tables import DASH, Column, Tabular, emit, value
from bnn_cli.sweep.manifest import SweepResult
from bnn_cli.sweep.spec import SPREAD_KEYS, lookup, short


def _short_cell(key: str, row: dict[str, Any]) -> str:
    return short(row[key])


def print_summary(result: SweepResult, console: Console, fmt: str = "table") -> None:
    """The `bnn compare` table of the sweep's runs (also written as CSV beside the manifest),
    then one row per combination of the swept keys: mean ± sd over seeds. As csv, only the
    grouped rows (the runs' rows are in that CSV file)."""
    run_dirs = [Path(e["run_dir"]) for e in result.entries.values() if e["run_dir"]]
    if not run_dirs:
        return
    rows = ranked_rows(run_dirs)
    atomic_write_text(result.manifest_path.with_suffix(".csv"), rows_to_csv(rows))
    groups = grouped(result, {row["path"]: row for row in rows})
    emit(console, [groups] if fmt == "csv" else [comparison(rows), groups], fmt)


# The metrics summarised over each group: record key, how a value is shown, header.
GROUP_METRICS = [
    ("accuracy", format_percent, "accuracy"),
    ("nll", format_number, "NLL"),
    ("ece", format_number, "ECE"),
    ("mean_epistemic", format_number, "epistemic"),
    ("auroc_entropy", format_number, "AUROC"),
]


def grouped(result: SweepResult, rows_by_path: dict[str, dict]) -> Tabular:
    """One record per combination of the swept keys (seeds spread over): how many points are
    complete, and the mean and sd of each metric over them."""
    keys = [k for k in result.sweep.swept_keys if k not in (*SPREAD_KEYS, "name")]
    groups: dict[tuple, list] = {}
    for point in result.sweep.points:
        values = tuple(lookup(point.config.to_dict(), k) for k in keys)
        entry = result.entries[point.key]
        groups.setdefault(values, []).append(rows_by_path.get(entry["run_dir"] or ""))
    records = [
        _group_record(dict(zip(keys, values, strict=True)), rows) for values, rows in groups.items()
    ]
    spread = ", ".join(k for k in result.sweep.swept_keys if k in SPREAD_KEYS)
    title = f"sweep '{result.sweep.name}': mean ± sd" + (f" over {spread}" if spread else "")
    columns = [Column(k, partial(_short_cell, k)) for k in keys]
    columns.append(Column("complete", lambda r: f"{r['complete']}/{r['points']}", right=True))
    for key, fmt, header in GROUP_METRICS:
        cell = lambda r, key=key, fmt=fmt: _mean_sd(r[f"{key}_mean"], r[f"{key}_sd"], fmt)  # noqa: E731
        columns.append(Column(header, cell, right=True))
    columns.append(Column("wall time", value("wall_s_mean", format_duration), right=True))
    record_keys = [*keys, "complete", "points"]
    record_keys += [f"{key}_{stat}" for key, _, _ in GROUP_METRICS for stat in ("mean", "sd")]
    return Tabular("groups", title, columns, [*record_keys, "wall_s_mean"], records)


def _group_record(record: dict[str, Any], rows: list[dict | None]) -> dict[str, Any]:
    ok = [r for r in rows if r and r["state"] == "complete" and r["accuracy"] is not None]
    record.update(complete=len(ok), points=len(rows))
    for key, _, _ in GROUP_METRICS:
        values = [r[key] for r in ok if r[key] is not None]
        record[f"{key}_mean"] = statistics.fmean(values) if values else None
        record[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    walls = [r["wall_s"] for r in ok if r["wall_s"] is not None]
    record["wall_s_mean"] = statistics.fmean(walls) if walls else None
    return record


def _mean_sd(mean: float | None, sd: float | None, fmt: Callable[[Any], str]) -> str:
    if mean is None:
        return DASH
    return f"{fmt(mean)} ± {fmt(sd)}" if sd is not None else fmt(mean)
