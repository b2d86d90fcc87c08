"""Rotated test images: the transform, and `bnn evaluate --shift rotate` on real MNIST."""

import json

import numpy as np
import pytest

from bnn_cli.data.shift import ROTATION_ANGLES, rotate, shifted


def test_rotation_angles_are_ovadias():
    assert ROTATION_ANGLES == (0, 15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 180)


def test_rotate_keeps_angle_0_and_turns_90_counter_clockwise():
    images = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(rotate(images, 0), images)
    np.testing.assert_allclose(rotate(images, 90), np.rot90(images, 1, axes=(1, 2)), atol=1e-6)
    turned = rotate(images, 45)
    assert turned.dtype == np.float32 and turned.shape == images.shape
    assert turned.min() >= 0 and turned.max() <= 1
    assert (turned[:, 0, 0] == 0).all()  # a corner rotated in from outside the frame is black


def test_shifted_yields_every_angle_and_refuses_an_unknown_shift():
    images = np.zeros((2, 28, 28), np.float32)
    assert [level for level, _ in shifted("rotate", images)] == list(ROTATION_ANGLES)
    with pytest.raises(ValueError, match="unknown shift"):
        list(shifted("blur", images))


@pytest.mark.slow
def test_evaluate_shift_rotate_on_a_real_run(own_tiny_run, real_data_dir, tmp_path, bnn_here):
    run, bnn = own_tiny_run, bnn_here
    no_curves = bnn("compare", run, "--plot-shift", tmp_path / "none.png")
    assert no_curves.returncode == 2, no_curves.stderr
    assert "none of the runs was evaluated with --shift rotate" in no_curves.stderr
    result = bnn("evaluate", run, "--shift", "rotate", "--draws", "4", "--data-dir", real_data_dir)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    rows = metrics["shift"]["rotate"]
    assert [row["level"] for row in rows] == list(ROTATION_ANGLES)
    # Angle 0 is the plain evaluation: the same images and the same seeded draws.
    for key in ("accuracy", "nll", "ece", "brier", "mean_entropy"):
        assert rows[0][key] == pytest.approx(metrics[key], rel=1e-9), key
    assert rows[0]["mean_mi"] == pytest.approx(metrics["mean_epistemic"], rel=1e-9)
    assert rows[4]["accuracy"] < rows[0]["accuracy"] - 0.2  # 60 degrees: far fewer right
    assert (run / "plots" / "shift_rotate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Rotated test images" in (run / "report.md").read_text()
    # bnn compare: the 60-degree columns, and the curves of several runs in one figure.
    table = bnn("compare", run, "--format", "csv", "--plot-shift", tmp_path / "shift.png")
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.strip().splitlines()[:2]
    row = dict(zip(header.split(","), line.split(","), strict=True))
    assert float(row["rotate60_accuracy"]) == pytest.approx(rows[4]["accuracy"])
    assert (tmp_path / "shift.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_shift_exits_2(tmp_path, bnn_here):
    unknown = bnn_here("evaluate", tmp_path, "--shift", "blur")
    assert unknown.returncode == 2 and "'blur' is not 'rotate'" in unknown.stderr
