"""The work between blocks of the fit loop, one small callable each: `(approx, state)`.

Each keeps its own state on `self`, in the manner of `pymc.variational.callbacks`, and can be
tested with a fake approximation and a hand-made `FitState`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn_cli.config import InferenceConfig
from bnn_cli.fit import diagnostics
from bnn_cli.fit.loop import FitState
from bnn_cli.posterior import params
from bnn_cli.runs import files, store

# The figures of one validation from the approximation's current parameters (approx.npz's
# layout): given by the caller, so that the fit never imports the stages that evaluate.
Validator = Callable[[dict[str, np.ndarray]], dict[str, float]]


def log_every(settings: InferenceConfig) -> int:
    """elbo.csv gets a row ten times per `eval_every`."""
    return max(1, settings.eval_every // 10)


class LossLog:
    """elbo.csv rows: every `log_every` iterations, the mean loss over the last `log_every`."""

    def __init__(self, log_every: int):
        self.log_every = log_every

    def __call__(self, approx: Any, state: FitState) -> None:
        first = state.block_start + 1
        for iteration in range(
            first + (-first) % self.log_every, state.iteration + 1, self.log_every
        ):
            state.rows.append(loss_row(state, iteration, self.log_every))


def loss_row(state: FitState, iteration: int, log_every: int) -> dict:
    recent = state.losses[max(0, iteration - log_every) : iteration]
    return files.elbo_row(iteration, float(np.mean(recent)), state.elapsed_at(iteration))


class ConvergenceWindow:
    """Snapshots the approximation where the convergence verdict's window opens (a block
    boundary: inside a K-step call the parameters are already the call's last)."""

    def __init__(self, opens_at: int):
        self.opens_at = opens_at
        self.snapshot: diagnostics.Snapshot | None = None

    def __call__(self, approx: Any, state: FitState) -> None:
        if state.iteration == self.opens_at and self.snapshot is None:
            arrays = params.from_approx(approx)
            self.snapshot = diagnostics.snapshot(arrays, state.iteration, state.losses)


def record_tensors(state: FitState, iteration: int, arrays: dict) -> None:
    """diagnostics.csv rows: per tensor its median sigma and share of |mu|/sigma < 1."""
    for name, summary in diagnostics.tensor_summaries(arrays).items():
        state.tensor_rows.append({"iteration": iteration, "tensor": name, **rounded(summary)})


class Validation:
    """At every `eval_every` (and the last iteration): the figures `validate` finds for the
    current parameters (`val_accuracy`, `val_nll`, `val_mi`: `train.validation_figures`, which
    draws the posterior predictive on the validation images), added to elbo.csv's row, and the
    tensor summaries. The fit gets `validate` from its caller: it never imports the stages
    that evaluate a posterior."""

    def __init__(
        self,
        validate: Callable[[dict[str, np.ndarray]], dict[str, float]],
        settings: InferenceConfig,
    ):
        self.validate, self.settings = validate, settings

    def __call__(self, approx: Any, state: FitState) -> None:
        if not state.is_eval_point(self.settings):
            return
        arrays = params.from_approx(approx)
        found = self.validate(arrays)
        state.validated = {"iteration": state.iteration, **found}
        if not state.rows or state.rows[-1]["iteration"] != state.iteration:
            every = log_every(self.settings)
            state.rows.append(loss_row(state, state.iteration, every))
        state.rows[-1].update(rounded(found))
        record_tensors(state, state.iteration, arrays)


class ProgressBar:
    """The rich progress bar: iterations, smoothed loss, the last validation, the rate."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task = progress, task

    def __call__(self, approx: Any, state: FitState) -> None:
        fields = {}
        found = state.validated
        if found and found["iteration"] == state.iteration:
            fields["val"] = (
                f"{found['val_accuracy']:.2%} nll {found['val_nll']:.4f} mi {found['val_mi']:.4f}"
            )
        elapsed = state.elapsed_at(state.iteration)
        self.progress.update(
            self.task,
            completed=state.iteration,
            loss=diagnostics.smoothed(state.losses),
            rate=f"{state.iteration / max(elapsed, 1e-9):.1f} it/s",
            **fields,
        )


@dataclass
class Best:
    iteration: int
    value: float
    arrays: dict


class EarlyStopping:
    """Keeps the parameters of the best validation point (`val_nll`: lowest; `val_accuracy`:
    highest) and ends the fit once `patience` validations in a row have not beaten it and
    `min_iterations` are done."""

    def __init__(self, metric: str, patience: int, min_iterations: int = 0):
        self.metric, self.patience, self.min_iterations = metric, patience, min_iterations
        self.best: Best | None = None
        self.since_best = 0

    @classmethod
    def from_settings(cls, settings: InferenceConfig) -> EarlyStopping | None:
        if settings.early_stopping == "none":
            return None
        return cls(settings.early_stopping, settings.patience, settings.min_iterations)

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best.value if self.metric == "val_accuracy" else value < self.best.value

    def __call__(self, approx: Any, state: FitState) -> None:
        found = state.validated
        if not found or found["iteration"] != state.iteration:
            return
        value = found[self.metric]
        if self.improves(value):
            self.best = Best(state.iteration, value, params.from_approx(approx))
            self.since_best = 0
            return
        self.since_best += 1
        if self.since_best >= self.patience and state.iteration >= self.min_iterations:
            raise StopIteration(self.message(state.iteration))

    def message(self, iteration: int) -> str:
        assert self.best is not None  # called once a validation has beaten nothing
        return (
            f"stopped on validation at iteration {iteration}: {self.metric} had not improved "
            f"for {self.since_best} validations; kept iteration {self.best.iteration} (best "
            f"{describe_metric(self.metric, self.best.value)})"
        )


def describe_metric(metric: str, value: float) -> str:
    if metric == "val_accuracy":
        return f"validation accuracy {value:.2%}"
    return f"validation NLL {value:.4f}"


class Checkpoint:
    """Saves the run's files at every validation: approx.npz (`kept()`: the parameters the
    fit would keep if it ended now), elbo.csv, diagnostics.csv, the fit's whole state to resume
    from (`resumable(state)`: `fit.resume`) and a `running` status."""

    def __init__(
        self,
        run_dir: Path,
        settings: InferenceConfig,
        compile_s: float,
        kept: Any,
        resumable: Callable[[FitState], None] | None = None,
    ) -> None:
        self.run_dir, self.settings, self.compile_s = run_dir, settings, compile_s
        self.kept: Callable[[], dict] = kept
        self.resumable = resumable

    def __call__(self, approx: Any, state: FitState) -> None:
        if state.is_eval_point(self.settings):
            self.save(state, resumable=True)

    def save(self, state: FitState, resumable: bool = False) -> None:
        """The run's files; with `resumable`, also the state to resume from. Only between
        blocks at a validation, never on Ctrl-C: inside a K-step call the minibatch order has
        already moved on, and the state would not resume as an unbroken fit goes on."""
        params.save(self.run_dir, self.kept())
        files.write_elbo_csv(self.run_dir, state.rows)
        files.write_diagnostics_csv(self.run_dir, state.tensor_rows)
        if resumable and self.resumable is not None:
            self.resumable(state)  # before the status, whose iterations_done it then backs
        store.write_status(
            self.run_dir,
            "running",
            iterations_done=state.iteration,
            wall_s=round(state.elapsed + self.compile_s, 2),
            compile_s=round(self.compile_s, 2),
        )


def rounded(summary: dict) -> dict:
    return {k: v if isinstance(v, int) else float(f"{v:.6g}") for k, v in summary.items()}
