"""The run directory's CSV files: their columns, the one writer and the readers.

- elbo.csv: a row every `eval_every / 10` iterations (the mean loss since the last row, the
  seconds since the fit began) and at every validation, whose three columns are empty between
  validations;
- diagnostics.csv: at iteration 0 and every validation, per tensor of the approximation its
  size, median sigma and share of entries with |mu| / sigma < 1.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

import numpy as np

from bnn_cli.atomic import atomic_write_text

log = logging.getLogger(__name__)

ELBO_CSV = "elbo.csv"
ELBO_COLUMNS = ("iteration", "loss", "elapsed_s", "val_accuracy", "val_nll", "val_mi")
DIAGNOSTICS_CSV = "diagnostics.csv"
DIAGNOSTICS_COLUMNS = ("iteration", "tensor", "size", "median_sigma", "share_snr_below_1")


def elbo_row(iteration: int, loss: float, elapsed_s: float) -> dict:
    row = dict.fromkeys(ELBO_COLUMNS, "")
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
