"""The one fit loop: blocks of K optimizer steps, and the callbacks between blocks.

In the manner of PyMC's `Inference._iterate_with_loss` and `pymc.variational.callbacks`: the
loop asks a stepper for the next K losses (K = 1 is a block of one), records them, and hands
the approximation and the fit's state to each callback, small callables that keep their own
state on `self` (progress, validation, checkpoints, the convergence window, early stopping).
A callback ends the fit early by raising `StopIteration` with the reason.

Ctrl-C needs no handling here: it lands either inside the stepper's call, before the state
records the block (the parameters are still those after the last whole block), or inside a
callback, after it (the parameters are those after this block). Either way the state matches
the parameters, and the caller saves them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bnn_cli.config import InferenceConfig
from bnn_cli.errors import FitFailed


@dataclass
class FitState:
    """What the loop has done so far; handed to the callbacks and saved on every exit path."""

    iteration: int = 0  # optimizer steps done
    losses: list[float] = field(default_factory=list)  # one per step: the negative ELBO estimate
    rows: list[dict] = field(default_factory=list)  # elbo.csv rows
    tensor_rows: list[dict] = field(default_factory=list)  # diagnostics.csv rows
    started: float = field(default_factory=time.perf_counter)
    block_start: int = 0  # the first iteration of the last block, and when its call ran
    block_began: float = 0.0
    block_ended: float = 0.0
    validated: dict | None = None  # the validation figures, set at each eval_every
    stopped: str | None = None  # why a callback ended the fit early

    @property
    def val_accuracy(self) -> float | None:
        """The last validation's accuracy (posterior-mean weights), None before the first."""
        return self.validated["val_accuracy"] if self.validated else None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def elapsed_at(self, iteration: int) -> float:
        """Seconds since the start at `iteration` of the last block: the block's call time
        spread evenly over its steps."""
        steps = max(self.iteration - self.block_start, 1)
        share = (iteration - self.block_start) / steps
        return self.block_began + (self.block_ended - self.block_began) * share - self.started

    def is_eval_point(self, settings: InferenceConfig) -> bool:
        return self.iteration % settings.eval_every == 0 or self.iteration == settings.iterations


class Pruned(Exception):  # noqa: N818 (a decision, not a fault: like StopIteration)
    """Raised by a callback (a tuner's pruner) to end a fit that is not worth finishing. The
    caller keeps the run as `pruned`, with its parameters and checkpoint, so it can resume."""


class Stepper(Protocol):
    k: int  # steps per call

    def __call__(self, start: int) -> np.ndarray:
        """K optimizer steps from 0-based iteration `start`; their losses."""


Callback = Callable[[object, FitState], None]  # (approx, state)


def run_fit(
    stepper: Stepper,
    approx: Any,
    settings: InferenceConfig,
    state: FitState,
    callbacks: Sequence[Callback] = (),
) -> FitState:
    """Step until `settings.iterations` or until a callback raises `StopIteration`. A NaN or
    infinite loss raises `FitFailed` naming its iteration; a callback's `Pruned` propagates."""
    while state.iteration < settings.iterations:
        start, began = state.iteration, time.perf_counter()
        losses = stepper(start)
        ended = time.perf_counter()
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            state.iteration = start + int(bad[0]) + 1
            raise diverged(settings, float(losses[bad[0]]), state.iteration)
        state.losses.extend(np.asarray(losses).tolist())
        state.iteration = start + len(losses)
        state.block_start, state.block_began, state.block_ended = start, began, ended
        try:
            for callback in callbacks:
                callback(approx, state)
        except StopIteration as stop:
            state.stopped = str(stop) or "stopped by a callback"
            break
    return state


def diverged(settings: InferenceConfig, loss: float, iteration: int) -> FitFailed:
    return FitFailed(
        f"the loss became {loss} at iteration {iteration}: the fit diverged. Lower "
        f"inference.learning_rate (now {settings.learning_rate}) or "
        f"inference.start_sigma (now {settings.start_sigma}) and train again"
    )
