"""checkpoint.npz without a real fit: a fake step function with PyMC's layout (input storage
cells, `update_mapping`), its values as the JAX and C backends hold them, and the run states
a sweep may resume."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bnn_cli.config import Config, config_from_dict
from bnn_cli.errors import RunError
from bnn_cli.fit import resume
from bnn_cli.fit.callbacks import Best, ConvergenceWindow, EarlyStopping
from bnn_cli.fit.diagnostics import Snapshot
from bnn_cli.fit.loop import FitState
from bnn_cli.runs import write_status

CONFIG = Config()


def dead_pid() -> int:
    """The id of a process that has ended (reaped: no zombie answers for it)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                           capture_output=True, text=True)  # fmt: skip
    return int(child.stdout)


def jax_random_state(jax_state):
    """The mean-field noise generator as the JAX backend keeps it after a step: NumPy's PCG64
    state as JAX arrays, its flags weak-typed scalars."""
    import jax.numpy as jnp

    return {
        "bit_generator": jnp.asarray(1),
        "has_uint32": jnp.asarray(0),
        "jax_state": jnp.asarray(np.array(jax_state, dtype=np.uint32)),
        "state": {"inc": jnp.asarray(np.uint32(7)), "state": jnp.asarray(np.uint32(9))},
        "uinteger": jnp.asarray(0),
    }


def fake_stepper(mu, generator, k: int = 1):
    """Inputs: 0 the minibatch (fed, not saved), 1 mu, 2 the generator, 3 Adam's step count."""
    values = [np.zeros(3, np.float32), np.asarray(mu, np.float32), generator, np.float32(0)]
    storage = [SimpleNamespace(storage=[value]) for value in values]
    fgraph = SimpleNamespace(update_mapping={1: 1, 2: 2, 3: 3})
    fn = SimpleNamespace(input_storage=storage, maker=SimpleNamespace(fgraph=fgraph))
    feeder = SimpleNamespace(rng=np.random.default_rng([0, 4]), order=np.arange(5))
    return SimpleNamespace(fn=fn, feeder=feeder, k=k)


def cell(stepper, i):
    return stepper.fn.input_storage[i].storage[0]


def a_fit_under_way(generator):
    """A stepper, state, early stopping and window as a fit leaves them at iteration 20."""
    stepper = fake_stepper([1.5, -2.0], generator)
    stepper.fn.input_storage[3].storage[0] = np.float32(20)
    stepper.feeder.rng.permutation(10)  # the generator has moved on
    stepper.feeder.order = np.array([3, 1, 4])
    state = FitState(iteration=20, losses=[float(i) / 3 for i in range(20)])
    state.rows = [{"iteration": 20, "loss": 1.25, "elapsed_s": 2.0, "val_accuracy": 0.5,
                   "val_nll": float("nan"), "val_mi": ""}]  # fmt: skip
    state.tensor_rows = [{"iteration": 0, "tensor": "w", "size": 2, "median_sigma": 0.01}]
    state.validated = {"iteration": 20, "val_accuracy": np.float64(0.5), "val_nll": 0.75}
    state.started -= 12.5  # 12.5 s spent so far
    early = EarlyStopping("val_nll", patience=3)
    early.best, early.since_best = Best(10, 0.7, {"mu/w": np.array([1.0, 2.0])}), 1
    window = ConvergenceWindow(opens_at=10)
    window.snapshot = Snapshot(10, {"w": np.array([-4.0, -3.0])}, 1.5)
    return stepper, state, early, window


@pytest.mark.parametrize("backend", ["c", "jax"])
def test_a_restored_fit_holds_what_was_saved(tmp_path, backend):
    generator = np.random.default_rng(3) if backend == "c" else jax_random_state([11, 12])
    stepper, state, early, window = a_fit_under_way(generator)
    expected_draws = np.random.default_rng(3).random(4) if backend == "c" else None
    resume.save(tmp_path, CONFIG, stepper, state, early, window, compile_s=3.5)
    saved = resume.load(tmp_path)
    assert saved.iteration == 20

    fresh = fake_stepper([0.0, 0.0], np.random.default_rng(99) if backend == "c" else
                         jax_random_state([0, 0]))  # fmt: skip
    new_state, new_early = FitState(), EarlyStopping("val_nll", patience=3)
    new_window = ConvergenceWindow(opens_at=10)
    assert resume.restore(saved, fresh, new_state, new_early, new_window) == 3.5

    np.testing.assert_array_equal(cell(fresh, 1), np.array([1.5, -2.0], np.float32))
    assert cell(fresh, 1).dtype == np.float32 and cell(fresh, 3) == 20
    if backend == "c":
        np.testing.assert_array_equal(cell(fresh, 2).random(4), expected_draws)
    else:
        restored = cell(fresh, 2)
        # Weak-typed scalars come back as Python numbers (JAX reads them as weak-typed again).
        assert restored["bit_generator"] == 1 and isinstance(restored["bit_generator"], int)
        assert restored["jax_state"].tolist() == [11, 12]
        assert restored["jax_state"].dtype == np.uint32
        assert restored["state"]["inc"].dtype == np.uint32 and restored["state"]["state"] == 9
    assert fresh.feeder.order.tolist() == [3, 1, 4]
    np.testing.assert_array_equal(
        fresh.feeder.rng.random(3), stepper.feeder.rng.random(3)
    )  # the minibatch order goes on as it would have
    assert new_state.iteration == 20 and new_state.losses == state.losses
    assert new_state.rows[0]["loss"] == 1.25 and np.isnan(new_state.rows[0]["val_nll"])
    assert new_state.tensor_rows == state.tensor_rows
    assert new_state.validated == {"iteration": 20, "val_accuracy": 0.5, "val_nll": 0.75}
    assert new_state.elapsed == pytest.approx(12.5, abs=0.5)  # the clock goes on from there
    assert (new_early.best.iteration, new_early.best.value, new_early.since_best) == (10, 0.7, 1)
    np.testing.assert_array_equal(new_early.best.arrays["mu/w"], [1.0, 2.0])
    assert new_window.snapshot.iteration == 10 and new_window.snapshot.loss == 1.5
    np.testing.assert_array_equal(new_window.snapshot.rho["w"], [-4.0, -3.0])


def test_a_checkpoint_that_does_not_fit_the_model_changes_nothing(tmp_path):
    stepper, state, early, window = a_fit_under_way(np.random.default_rng(3))
    resume.save(tmp_path, CONFIG, stepper, state, early, window, compile_s=1.0)
    other = fake_stepper([0.0, 0.0, 0.0], np.random.default_rng(0))  # a wider model
    with pytest.raises(RunError) as caught:
        resume.restore(resume.load(tmp_path), other, FitState(), early, window)
    assert str(caught.value) == (
        f"'{tmp_path / 'checkpoint.npz'}' does not match the fit config.yaml describes (cell/1 "
        "is float32[2], the fit has float32[3]); train the run again"
    )
    assert cell(other, 1).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(RunError, match="early stopping is not as it was"):
        resume.restore(resume.load(tmp_path), fake_stepper([0, 0], np.random.default_rng(0)),
                       FitState(), None, window)  # fmt: skip


def test_a_damaged_or_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(RunError, match=r"checkpoint.npz' is corrupt or truncated \("):
        resume.load(tmp_path)
    np.savez(path, meta=np.array('{"format": 99, "state": {"iteration": 1}}'))
    with pytest.raises(RunError) as caught:
        resume.load(tmp_path)
    assert str(caught.value) == (
        f"'{path}' was written by another version of bnn (checkpoint format 99, this one reads "
        "1); train the run again"
    )


def run_with_checkpoint(folder: Path, state: str, config: Config = CONFIG, **status) -> Path:
    folder.mkdir()
    stepper, fit_state, early, window = a_fit_under_way(np.random.default_rng(0))
    resume.save(folder, config, stepper, fit_state, early, window, compile_s=1.0)
    write_status(folder, state, **status)
    return folder


def test_which_runs_a_sweep_resumes(tmp_path):
    here = {"host": platform.node()}
    assert resume.can_resume(run_with_checkpoint(tmp_path / "a", "interrupted"), CONFIG)
    assert resume.can_resume(run_with_checkpoint(tmp_path / "b", "failed"), CONFIG)
    killed = run_with_checkpoint(tmp_path / "c", "running", pid=dead_pid(), **here)
    assert resume.can_resume(killed, CONFIG)
    live = run_with_checkpoint(tmp_path / "d", "running", pid=os.getpid(), **here)
    assert not resume.can_resume(live, CONFIG)
    assert not resume.can_resume(run_with_checkpoint(tmp_path / "e", "complete"), CONFIG)
    other = config_from_dict({"seed": 1})
    assert not resume.can_resume(run_with_checkpoint(tmp_path / "f", "pruned"), other)
    assert resume.can_resume(tmp_path / "f", CONFIG)
    (tmp_path / "f" / "checkpoint.npz").unlink()
    assert not resume.can_resume(tmp_path / "f", CONFIG)


def test_why_a_run_cannot_be_resumed(tmp_path):
    here = {"host": platform.node()}
    live = run_with_checkpoint(tmp_path / "live", "running", pid=os.getpid(), **here)
    assert resume.why_not_resumable(live, CONFIG) == f"its process {os.getpid()} is still running"
    done = run_with_checkpoint(tmp_path / "done", "complete")
    assert resume.why_not_resumable(done, CONFIG) == "it is complete"
    other = config_from_dict({"seed": 1})
    assert resume.why_not_resumable(done, other) == "it is complete"
    cut = run_with_checkpoint(tmp_path / "cut", "interrupted")
    assert resume.why_not_resumable(cut, other) == (
        "its checkpoint was written with another configuration"
    )
    assert resume.why_not_resumable(cut, CONFIG) is None
    (cut / "checkpoint.npz").unlink()
    assert resume.why_not_resumable(cut, CONFIG) == "no readable checkpoint (FileNotFoundError)"


def test_discard_removes_the_checkpoint_and_tolerates_its_absence(tmp_path):
    run_with_checkpoint(tmp_path / "run", "running")
    assert resume.exists(tmp_path / "run")
    resume.discard(tmp_path / "run")
    resume.discard(tmp_path / "run")
    assert not resume.exists(tmp_path / "run")
