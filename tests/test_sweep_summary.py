"""The summary tables of a sweep, in every format."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from bnn_cli import sweep as sweeps
from tests.sweep_helpers import (
    fake_train,  # noqa: F401 (a fixture)
    quiet,
    tiny_sweep,
)


def test_summary_groups_by_the_swept_keys_over_seeds(tmp_path, fake_train):  # noqa: F811
    path = tiny_sweep(tmp_path, {"prior.kind": ["fixed", "hierarchical"], "seed": [0, 2]})
    result = sweeps.run_sweep(sweeps.load_sweep(path), tmp_path / "runs", None, quiet(), jobs=2)
    console = quiet()
    sweeps.print_summary(result, console)
    printed = console.export_text()
    assert "4 runs, best accuracy first" in printed  # the bnn compare table
    assert "sweep 'sweep': mean ± sd over seed" in printed
    rows = [line for line in printed.splitlines() if "fixed" in line or "hierarchical" in line]
    fixed, hierarchical = rows[-2:]
    assert "2/2" in fixed and "96.00% ± 1.41%" in fixed and "0.3000 ± 0.0000" in fixed
    assert "2/2" in hierarchical and "91.00% ± 1.41%" in hierarchical
    csv_rows = (tmp_path / "runs" / "sweeps" / "sweep.csv").read_text().splitlines()
    assert len(csv_rows) == 5 and csv_rows[0].startswith("run,path,name")


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_the_summary_in_each_format(tmp_path, fake_train, fmt):  # noqa: F811
    path = tiny_sweep(tmp_path, {"prior.kind": ["fixed", "hierarchical"], "seed": [0, 2]})
    result = sweeps.run_sweep(sweeps.load_sweep(path), tmp_path / "runs", None, quiet(), jobs=2)
    console = Console(file=io.StringIO(), width=80)  # a pipe: narrow, not a terminal
    sweeps.print_summary(result, console, fmt)
    text = console.file.getvalue()
    if fmt == "csv":  # the grouped rows; the runs' rows are in sweeps/sweep.csv
        groups = list(csv.DictReader(text.splitlines()))
        assert [(g["prior.kind"], g["complete"], g["points"]) for g in groups] == [
            ("fixed", "2", "2"),
            ("hierarchical", "2", "2"),
        ]
        assert float(groups[0]["accuracy_mean"]) == pytest.approx(0.96)
        assert float(groups[0]["accuracy_sd"]) == pytest.approx(0.01414, abs=1e-4)
    elif fmt == "json":
        data = json.loads(text)
        assert len(data["runs"]) == 4 and {r["state"] for r in data["runs"]} == {"complete"}
        assert data["groups"][1]["prior.kind"] == "hierarchical"
        assert data["groups"][1]["accuracy_mean"] == pytest.approx(0.91)
    else:
        assert "**4 runs, best accuracy first**" in text
        assert "**sweep 'sweep': mean ± sd over seed**" in text
        assert "| prior.kind | complete | accuracy |" in text
        assert "| fixed | 2/2 | 96.00% ± 1.41% |" in text
        assert "…" not in text
