"""The sweep file: points, labels, validation before any run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bnn_cli import sweep as sweeps
from bnn_cli.errors import ConfigError
from tests.sweep_helpers import (
    SMOKE,
    write_sweep,
)

# ---------------------------------------------------------------- the sweep file


def test_grid_points_and_set_make_validated_points(tmp_path):
    path = write_sweep(
        tmp_path,
        """
        base: smoke.yaml
        grid:
          prior.kind: [fixed, hierarchical]
          seed: [0, 1]
        points:
          - {model.hidden: [32, 32], prior.kind: fixed}
        set: {inference.iterations: 7}
        """,
    )
    sweep = sweeps.load_sweep(path)
    assert sweep.name == "sweep" and sweep.base == (tmp_path / "smoke.yaml").resolve()
    assert sweep.swept_keys == ("prior.kind", "seed", "model.hidden")
    assert [p.label for p in sweep.points] == [
        "prior.kind=fixed-seed=0",
        "prior.kind=fixed-seed=1",
        "prior.kind=hierarchical-seed=0",
        "prior.kind=hierarchical-seed=1",
        "model.hidden=32x32-prior.kind=fixed",
    ]
    third = sweep.points[2].config
    assert third.name == "smoke-prior.kind=hierarchical-seed=0"
    assert third.prior.kind == "hierarchical" and third.seed == 0
    assert third.inference.iterations == 7 and third.model.hidden == (100,)  # set, base
    assert sweep.points[4].config.model.hidden == (32, 32)
    assert len({p.key for p in sweep.points}) == 5


def test_the_shipped_example_sweep_loads():
    sweep = sweeps.load_sweep(SMOKE.parent / "sweeps" / "sweep_smoke.yaml")
    assert sweep.name == "sweep_smoke" and sweep.base == SMOKE
    assert [p.config.name for p in sweep.points] == [
        "smoke-prior.kind=fixed-seed=0",
        "smoke-prior.kind=fixed-seed=1",
        "smoke-prior.kind=hierarchical-seed=0",
        "smoke-prior.kind=hierarchical-seed=1",
    ]


def test_labels_stay_short_and_distinct(tmp_path):
    path = write_sweep(
        tmp_path,
        """
        base: smoke.yaml
        name: my sweep/1
        points:
          - {model.activation: relu, inference.learning_rate: 0.001, inference.batch_size: 100,
             inference.optimizer: adamax, prior.sd: 0.5}
          - {model.activation: relu, inference.learning_rate: 0.001, inference.batch_size: 100,
             inference.optimizer: adamax, prior.sd: 0.25}
        """,
    )
    sweep = sweeps.load_sweep(path)
    assert sweep.name == "my_sweep_1"
    labels = [p.label for p in sweep.points]
    assert len(set(labels)) == 2 and all(len(label) <= sweeps.LABEL_MAX for label in labels)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "base: smoke.yaml\ngrid: {prior.kind: [fixed, hierarchcal]}\n",
            "point 2 of 2 (prior.kind=\"hierarchcal\"): prior.kind: got 'hierarchcal', "
            "expected one of fixed, hierarchical",
        ),
        (
            "base: smoke.yaml\ngrid: {prior.knd: [fixed]}\n",
            "unknown key 'prior.knd' — did you mean 'prior.kind'?",
        ),
        ("base: smoke.yaml\ngird: {seed: [0]}\n", "unknown key 'gird' — did you mean 'grid'?"),
        ("base: smoke.yaml\ngrid: {seed: 3}\n", "grid 'seed' must be a non-empty list of values"),
        ("base: smoke.yaml\ngrid: {seed: []}\n", "grid 'seed' must be a non-empty list"),
        (
            "base: smoke.yaml\ngrid: {seed: [0, 1]}\nset: {seed: 2}\n",
            "'seed' is both in 'set' and swept",
        ),
        ("base: smoke.yaml\npoints: [{seed: 1}, {seed: 1}]\n", "point 2 (seed=1) repeats point 1"),
        ("base: smoke.yaml\n", "has no points: give 'grid:'"),
        ("base: nope.yaml\ngrid: {seed: [0]}\n", "base config '"),
        ("grid: {seed: [0]}\n", "'base' must name a config file"),
        ("base: smoke.yaml\ngrid: {seed.x: [0]}\n", "'seed.x': 'seed' is not a section"),
        ("base: smoke.yaml\npoints: {seed: 1}\n", "'points' must be a list of override mappings"),
        ("base: smoke.yaml\ngrid: [seed]\n", "grid: expected a mapping of dotted keys"),
    ],
)
def test_bad_sweep_files_are_rejected(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        sweeps.load_sweep(write_sweep(tmp_path, text))
    assert message in str(info.value)


def test_bad_grid_fails_the_whole_sweep_before_any_run(tmp_path):
    path = write_sweep(tmp_path, "base: smoke.yaml\ngrid: {seed: [0, 1, -1]}\n")
    runs = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, "-m", "bnn_cli.cli", "sweep", str(path), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"error: sweep file '{path}': point 3 of 3 (seed=-1): seed: got -1, expected a value "
        "of 0 or more"
    )
    assert not runs.exists()  # nothing ran, nothing written
