"""The callbacks between blocks of the fit loop, each without a real fit: a fake approximation
with PyMC's layout (one group, flat mu and rho, an ordering by variable name)."""

import json

import numpy as np
import pytest

from bnn_cli.config import InferenceConfig
from bnn_cli.fit import callbacks
from bnn_cli.fit.loop import FitState, run_fit
from bnn_cli.runs import files


class Value:
    def __init__(self, array):
        self.array = np.asarray(array, dtype=float)

    def get_value(self):
        return self.array.copy()


class FakeApprox:
    """`w` of shape (2,): mu and rho set by `at(value)`."""

    def __init__(self):
        self.params_dict = {"mu": Value([0.0, 0.0]), "rho": Value([-5.0, -5.0])}
        self.ordering = {"w": ("w", slice(0, 2), (2,), "float64")}
        self.groups = [self]

    def at(self, value):
        self.params_dict["mu"] = Value([value, value])
        return self


def validated(state, iteration, nll, accuracy=0.9):
    state.iteration = iteration
    state.validated = {"iteration": iteration, "val_nll": nll, "val_accuracy": accuracy}


def test_early_stopping_keeps_the_best_point_and_stops_when_patience_runs_out():
    stop = callbacks.EarlyStopping("val_nll", patience=2)
    approx, state = FakeApprox(), FitState()
    for iteration, nll in [(100, 0.5), (200, 0.3), (300, 0.35)]:
        validated(state, iteration, nll)
        stop(approx.at(iteration), state)
    validated(state, 400, 0.31)
    with pytest.raises(StopIteration, match="kept iteration 200 \\(best validation NLL 0.3000\\)"):
        stop(approx.at(400), state)
    assert stop.best.iteration == 200 and stop.best.arrays["mu/w"].tolist() == [200, 200]


def test_early_stopping_waits_for_min_iterations_and_ignores_other_blocks():
    stop = callbacks.EarlyStopping("val_accuracy", patience=1, min_iterations=300)
    approx, state = FakeApprox(), FitState()
    validated(state, 100, 0.5, accuracy=0.95)
    stop(approx, state)
    validated(state, 200, 0.5, accuracy=0.90)  # worse, but before min_iterations
    stop(approx, state)
    state.iteration = 250  # a block without validation: not counted
    stop(approx, state)
    validated(state, 300, 0.5, accuracy=0.96)  # higher accuracy is better
    stop(approx, state)
    assert stop.best.iteration == 300
    validated(state, 400, 0.5, accuracy=0.91)
    with pytest.raises(StopIteration):
        stop(approx, state)


def test_early_stopping_from_settings():
    assert callbacks.EarlyStopping.from_settings(InferenceConfig()) is None
    made = callbacks.EarlyStopping.from_settings(
        InferenceConfig(early_stopping="val_nll", patience=4, min_iterations=10)
    )
    assert (made.metric, made.patience, made.min_iterations) == ("val_nll", 4, 10)


class Steps:
    k = 5

    def __call__(self, start):
        return np.arange(start + 1, start + 6, dtype=float)


def test_loss_log_writes_a_row_every_log_every_with_the_mean_since_the_last():
    settings = InferenceConfig(iterations=20, eval_every=10)
    state = run_fit(Steps(), None, settings, FitState(), [callbacks.LossLog(4)])
    assert [row["iteration"] for row in state.rows] == [4, 8, 12, 16, 20]
    assert state.rows[0]["loss"] == pytest.approx(2.5) and state.rows[-1]["loss"] == 18.5
    assert set(state.rows[0]) == set(files.ELBO_COLUMNS)


def test_the_convergence_window_snapshots_once_where_it_opens():
    window = callbacks.ConvergenceWindow(10)
    approx, state = FakeApprox(), FitState(iteration=5)
    window(approx, state)
    assert window.snapshot is None
    state.iteration, state.losses = 10, [1.0] * 10
    window(approx.at(1.0), state)
    window(approx.at(2.0), state)
    assert window.snapshot.iteration == 10 and window.snapshot.loss == 1.0


def test_checkpoint_saves_the_kept_parameters_and_the_run_files(tmp_path):
    settings = InferenceConfig(iterations=20, eval_every=10)
    kept = {"mu/w": np.ones(2), "rho/w": np.zeros(2)}
    checkpoint = callbacks.Checkpoint(tmp_path, settings, 1.5, lambda: kept)
    state = FitState(iteration=5)
    checkpoint(None, state)  # not a validation point
    assert not (tmp_path / "approx.npz").exists()
    state.iteration = 10
    state.rows.append(files.elbo_row(10, 1.0, 2.0))
    checkpoint(None, state)
    assert np.load(tmp_path / "approx.npz")["mu/w"].tolist() == [1.0, 1.0]
    assert files.read_elbo_csv(tmp_path)["loss"].tolist() == [1.0]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "running" and status["iterations_done"] == 10


def test_checkpoint_writes_the_state_to_resume_from_at_validations_only(tmp_path):
    """At a validation, between blocks; never from `save` alone (the Ctrl-C path, where a
    K-step call may have moved the minibatch order on already)."""
    settings = InferenceConfig(iterations=20, eval_every=10)
    resumable = []
    checkpoint = callbacks.Checkpoint(
        tmp_path, settings, 1.5, lambda: {"mu/w": np.ones(2)}, resumable.append
    )
    state = FitState(iteration=5)
    checkpoint(None, state)
    checkpoint.save(state)
    assert resumable == []
    state.iteration = 10
    checkpoint(None, state)
    assert resumable == [state]
