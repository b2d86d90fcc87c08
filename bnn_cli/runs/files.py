"""The run directory's files other than its status (`store`) and approx.npz
(`posterior.params`): their names, columns, the one writer and the one reader of each.

- meta.json: how the run was made (versions, host, command line, seeds, the data directory),
  written when it starts, `resumed` entries added on each resume;
- metrics.json: the figures of the last `bnn evaluate` (written by `report.render`);

- elbo.csv: a row every `eval_every / 10` iterations (the mean loss since the last row, the
  seconds since the fit began) and at every validation, whose three columns are empty between
  validations;
- diagnostics.csv: at iteration 0 and every validation, per tensor of the approximation its
  size, median sigma and share of entries with |mu| / sigma < 1.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from bnn_cli.atomic import atomic_write_json, atomic_write_text
from bnn_cli.data.datasets import resolve_data_dir
from bnn_cli.errors import RunError
from bnn_cli.versions import __version__, installed_versions

log = logging.getLogger(__name__)

META_JSON = "meta.json"
METRICS_JSON = "metrics.json"
ELBO_CSV = "elbo.csv"
ELBO_COLUMNS = ("iteration", "loss", "elapsed_s", "val_accuracy", "val_nll", "val_mi")
DIAGNOSTICS_CSV = "diagnostics.csv"
DIAGNOSTICS_COLUMNS = ("iteration", "tensor", "size", "median_sigma", "share_snr_below_1")


def new_meta(fields: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """meta.json of a new run (a fit's or an ensemble's): bnn's version first, then `fields`
    (what the command records: versions, host, command line, seeds, ...), and last the data
    directory it was trained from (a fallback for `bnn evaluate`)."""
    return {
        "bnn_version": __version__,
        **fields,
        "data_dir": str(resolve_data_dir(data_dir).resolve()),
    }


def host_fields() -> dict[str, Any]:
    """The versions of the packages that decide a run's numbers, and the host's name."""
    return {"versions": installed_versions(), "host": platform.node()}


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / META_JSON, meta)


def read_meta(run_dir: Path) -> dict[str, Any] | None:
    """meta.json as a dict; None when it is missing or damaged (it is a record, never needed
    to use the run)."""
    try:
        meta = json.loads((Path(run_dir) / META_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json of the last `bnn evaluate` as a dict; None when the run was never
    evaluated. A damaged file is a RunError."""
    path = Path(run_dir) / METRICS_JSON
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        raise RunError(f"'{path}' is corrupt (not JSON); evaluate the run again") from None
    if not isinstance(metrics, dict):
        raise RunError(f"'{path}' is corrupt (not a JSON object); evaluate the run again")
    return metrics


def elbo_row(iteration: int, loss: float, elapsed_s: float) -> dict:
    row: dict[str, Any] = dict.fromkeys(ELBO_COLUMNS, "")
    row.update(iteration=iteration, loss=round(loss, 4), elapsed_s=round(elapsed_s, 3))
    return row


def write_elbo_csv(run_dir: Path, rows: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / ELBO_CSV, rows_csv(rows, ELBO_COLUMNS))


def write_diagnostics_csv(run_dir: Path, rows: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / DIAGNOSTICS_CSV, rows_csv(rows, DIAGNOSTICS_COLUMNS))


def rows_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_elbo_csv(run_dir: Path) -> dict[str, np.ndarray] | None:
    """A run's elbo.csv as float arrays (nan where val_accuracy is empty); None when the file is
    absent or unusable, so that the report goes on without the training plot."""
    path = Path(run_dir) / ELBO_CSV
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("cannot read %s (%s): skipping the training plot", path, exc)
        return None
    optional = ELBO_COLUMNS[2:]  # elapsed_s (older runs lack it), then empty between validations
    columns: dict[str, list[float]] = {"iteration": [], "loss": [], **{k: [] for k in optional}}
    for record in records:
        try:
            iteration, loss = float(record["iteration"]), float(record["loss"])
        except (KeyError, TypeError, ValueError):
            continue  # a torn or foreign row: skip it rather than lose the plot
        columns["iteration"].append(iteration)
        columns["loss"].append(loss)
        for key in optional:
            columns[key].append(_float_or_nan(record.get(key)))
    if not columns["iteration"]:
        log.warning("%s has no usable rows: skipping the training plot", path)
        return None
    return {key: np.array(values) for key, values in columns.items()}


def _float_or_nan(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_diagnostics_csv(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """A run's diagnostics.csv as per-tensor series; empty when the file is absent (older runs)."""
    path = Path(run_dir) / DIAGNOSTICS_CSV
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("cannot read %s (%s): skipping the diagnostics plot", path, exc)
        return {}
    series: dict[str, dict[str, list[float]]] = {}
    for record in records:
        try:
            values = {k: float(record[k]) for k in ("iteration", *DIAGNOSTICS_COLUMNS[3:])}
        except (KeyError, TypeError, ValueError):
            continue
        target = series.setdefault(record.get("tensor", "?"), {k: [] for k in values})
        for key, value in values.items():
            target[key].append(value)
    return {name: {k: np.array(v) for k, v in s.items()} for name, s in series.items()}
