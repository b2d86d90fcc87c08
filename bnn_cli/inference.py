"""Minibatch ADVI on the `pm.Model`: PyMC's mean-field approximation and its own objective,
driven by a small loop of ours so that progress, validation, checkpoints, divergence and Ctrl-C
are handled in one readable place.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pymc as pm
import pytensor

from bnn_cli.config import InferenceConfig
from bnn_cli.errors import FitFailed
from bnn_cli.models.build import IMAGES_BATCH, LABELS_BATCH

logger = logging.getLogger(__name__)

OPTIMIZERS = {"adam": pm.adam, "adamax": pm.adamax, "sgd": pm.sgd}


@dataclass
class FitState:
    """What the loop has done so far; handed to callbacks and saved on every exit path."""

    iteration: int = 0
    losses: list[float] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # elbo.csv rows
    started: float = field(default_factory=time.perf_counter)
    val_accuracy: float | None = None
    clock: float | None = None  # set: the time of this iteration within a K-step call

    @property
    def elapsed(self) -> float:
        return (self.clock or time.perf_counter()) - self.started


def make_advi(model: pm.Model, settings: InferenceConfig, seed: int) -> pm.KLqp:
    """PyMC's ADVI with a small initial scale on every variable (PyMC's default ~0.7 makes this
    network's ELBO NaN at once). A tempered objective (`kl_weight`, `kl_warmup`) is PyMC's own
    KLqp on the same mean-field approximation, its KL weight `beta` a shared scalar that the
    loop sets at every step like the learning rate; the plain ELBO keeps PyMC's constant 1."""
    start_sigma = {model.rvs_to_values[rv].name: settings.start_sigma for rv in model.free_RVs}
    if is_tempered(settings):
        approx = pm.MeanField(model=model, start_sigma=start_sigma, random_seed=seed)
        beta = pytensor.shared(np.asarray(kl_weight_at(settings, 0), pytensor.config.floatX))
        advi = pm.KLqp(approx, beta=beta)
    else:
        advi = pm.ADVI(model=model, start_sigma=start_sigma, random_seed=seed)
    with_static_shapes(advi.approx)
    return advi


def is_tempered(settings: InferenceConfig) -> bool:
    return settings.kl_weight != 1.0 or settings.kl_warmup > 0


def kl_weight_at(settings: InferenceConfig, iteration: int) -> float:
    """The KL term's weight for 0-based `iteration`: `kl_weight`, reached by a linear ramp
    from 0 over the first `kl_warmup` iterations (the data first shapes the means, then the
    prior pulls the scales out)."""
    if iteration >= settings.kl_warmup:
        return settings.kl_weight
    return settings.kl_weight * iteration / settings.kl_warmup


def with_static_shapes(approx) -> None:
    """Give the mean-field parameters (shared vectors) their static length. PyMC creates them
    with an unknown length, which leaves shape computations in the step function that the JAX
    backend cannot trace; the C and Numba backends lose nothing."""
    for group in approx.groups:
        for key, shared in list(group.shared_params.items()):
            value = shared.get_value()
            group.shared_params[key] = pytensor.shared(value, name=shared.name, shape=value.shape)


class MinibatchFeeder:
    """Fills the model's `x_batch` / `y_batch` with the next minibatch: rows chosen by one index
    array, so images and labels stay paired; every image once per epoch, in a seeded order."""

    def __init__(self, model: pm.Model, images: np.ndarray, labels: np.ndarray, seed: int):
        self.x_batch = model[IMAGES_BATCH]
        self.y_batch = model[LABELS_BATCH]
        self.images = np.ascontiguousarray(images, dtype=self.x_batch.dtype)
        self.labels = np.asarray(labels, dtype=self.y_batch.dtype)
        self.batch_size = self.x_batch.get_value(borrow=True).shape[0]
        self.rng = np.random.default_rng([seed, 4])  # a stream of its own: see meta.json
        self.order = np.empty(0, dtype=np.int64)

    def next_indices(self) -> np.ndarray:
        if len(self.order) < self.batch_size:
            self.order = np.concatenate([self.order, self.rng.permutation(len(self.labels))])
        rows, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return rows

    def __call__(self) -> None:
        rows = self.next_indices()
        self.x_batch.set_value(self.images[rows], borrow=True)
        self.y_batch.set_value(self.labels[rows], borrow=True)


def learning_rate_at(settings: InferenceConfig, iteration: int) -> float:
    """The step size for 0-based `iteration`: constant, or a cosine decay to zero that lets the
    last iterations settle instead of hopping around the optimum at full step size."""
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    progress = min(iteration / settings.iterations, 1.0)
    return settings.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def compile_step_function(advi: pm.KLqp, settings: InferenceConfig, mode: str | None):
    """PyMC's compiled step (sample the weights, take the optimizer step, return the loss) and
    its schedules: {shared scalar: its value at a 0-based iteration} (the learning rate, and the
    KL weight of a tempered objective)."""
    learning_rate = pytensor.shared(
        np.asarray(settings.learning_rate, dtype=pytensor.config.floatX), name="learning_rate"
    )
    optimizer = make_optimizer(settings, learning_rate)
    compile_kwargs = {"mode": mode} if mode else {}
    step_fn = advi.objective.step_function(
        obj_optimizer=optimizer, score=True, compile_kwargs=compile_kwargs
    )
    schedules = {learning_rate: partial(learning_rate_at, settings)}
    beta = advi.objective.op.beta
    if isinstance(beta, pytensor.compile.SharedVariable):
        schedules[beta] = partial(kl_weight_at, settings)
    return step_fn, schedules


def compile_step(
    advi: pm.ADVI, settings: InferenceConfig, mode: str | None, feed: Callable[[], None]
) -> Callable[[], float]:
    """One optimizer step: feed the next minibatch, set the scheduled learning rate, then the
    compiled function samples the weights, takes the step and returns the loss (negative ELBO
    estimate)."""
    step_fn, schedules = compile_step_function(advi, settings, mode)
    done = 0

    def step() -> float:
        nonlocal done
        feed()
        for shared, value_at in schedules.items():
            shared.set_value(np.asarray(value_at(done), dtype=shared.dtype))
        done += 1
        return step_fn()

    return step


def make_optimizer(settings: InferenceConfig, learning_rate) -> Callable:
    """PyMC's optimizer for the mean-field parameters; with `rho_lr_scale` != 1 the scales
    (`rho`) get their own optimizer whose step size is that many times the means' (`mu`)."""
    base = OPTIMIZERS[settings.optimizer]
    if settings.rho_lr_scale == 1.0:
        return base(learning_rate=learning_rate)
    rho_learning_rate = learning_rate * np.asarray(settings.rho_lr_scale, dtype=learning_rate.dtype)

    def per_group(grads, params):
        updates = OrderedDict()
        for grad, param in zip(grads, params, strict=True):
            step = rho_learning_rate if param.name == "rho" else learning_rate
            updates.update(base([grad], [param], learning_rate=step))
        return updates

    return per_group


def rho_step_sum(settings: InferenceConfig, start: int, stop: int) -> float:
    """The sum of the step sizes applied to rho over iterations [start, stop): the furthest
    Adam can have moved any rho in that span."""
    steps = sum(learning_rate_at(settings, i) for i in range(start, stop))
    return steps * settings.rho_lr_scale


def mean_field_params(approx) -> dict[str, np.ndarray]:
    """The approximation's parameters by variable name: `mu/<name>` and `rho/<name>` (PyMC's
    softplus-parametrized scale), in the transformed (unconstrained) space."""
    group = approx.groups[0]
    mu = group.params_dict["mu"].get_value()
    rho = group.params_dict["rho"].get_value()
    arrays = {}
    for name, slc, shape, _ in group.ordering.values():
        arrays[f"mu/{name}"] = mu[slc].reshape(shape)
        arrays[f"rho/{name}"] = rho[slc].reshape(shape)
    return arrays


def load_mean_field_params(approx, arrays: dict[str, np.ndarray]) -> None:
    """Restore saved parameters into a fresh approximation; shapes must match the model."""
    group = approx.groups[0]
    for key in ("mu", "rho"):
        shared = group.params_dict[key]
        flat = shared.get_value().copy()
        for name, slc, shape, _ in group.ordering.values():
            saved = arrays[f"{key}/{name}"]
            if tuple(saved.shape) != tuple(shape):
                raise ValueError(f"{key}/{name} has shape {saved.shape}, the model needs {shape}")
            flat[slc] = saved.reshape(-1)
        shared.set_value(flat.astype(shared.dtype))


def run_fit(
    step: Callable[[], float],
    settings: InferenceConfig,
    state: FitState,
    on_eval: Callable[[FitState], None],
    on_step: Callable[[FitState, float], None] | None = None,
) -> FitState:
    """The loop. Every `eval_every` iterations (and at the end) `on_eval` validates and
    checkpoints. A NaN or infinite loss raises `FitFailed`; Ctrl-C propagates after the state is
    up to date, so the caller can save what was done."""
    for i in range(state.iteration, settings.iterations):
        loss = float(step())
        state.iteration = i + 1
        if not math.isfinite(loss):
            raise diverged(settings, loss, i + 1)
        state.losses.append(loss)
        if on_step:
            on_step(state, loss)
        if state.iteration % settings.eval_every == 0 or state.iteration == settings.iterations:
            on_eval(state)
    return state


def diverged(settings: InferenceConfig, loss: float, iteration: int) -> FitFailed:
    return FitFailed(
        f"the loss became {loss} at iteration {iteration}: the fit diverged. Lower "
        f"inference.learning_rate (now {settings.learning_rate}) or "
        f"inference.start_sigma (now {settings.start_sigma}) and train again"
    )


def smoothed_loss(losses: list[float], window: int = 100) -> float:
    return float(np.mean(losses[-window:])) if losses else float("nan")
