"""Minibatch ADVI on the `pm.Model`: PyMC's mean-field approximation and its own objective
(tempered where asked), the optimizer with its step sizes, and the schedules the loop sets at
every step. A MAP fit is the same machinery with the approximation held at a point (below)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pymc as pm
import pytensor

from bnn_cli.config import InferenceConfig
from bnn_cli.fit.objective import AnalyticKL

OPTIMIZERS = {"adam": pm.adam, "adamax": pm.adamax, "sgd": pm.sgd}
# A MAP fit's scales: held at this sigma (never optimized), so each draw is the means to within
# float32 rounding and the objective -log p(w, data) is taken at the means.
MAP_SIGMA = 1e-30


def make_advi(
    model: pm.Model,
    settings: InferenceConfig,
    seed: int,
    points: tuple[str, ...] = (),
    bound: dict | None = None,
) -> pm.variational.inference.Inference:
    """PyMC's ADVI with a small initial scale on every variable (PyMC's default ~0.7 makes this
    network's ELBO NaN at once). A tempered objective (`kl_weight`, `kl_warmup`) is PyMC's own
    KLqp on the same mean-field approximation, its KL weight `beta` a shared scalar that the
    loop sets at every step like the learning rate; the plain ELBO keeps PyMC's constant 1.
    `points` (value-variable names, `models.priors.point_estimates`) are held at a point like a
    MAP fit's, their scales never optimized: the ELBO is then maximized over them.
    `inference.kl: analytic` swaps PyMC's Monte Carlo KL for `fit.objective.AnalyticKL` on
    the same approximation, with `bound` (`fit.objective.bound_of`: the collapsed bound's
    settings)."""
    if settings.method == "map":
        return make_map(model, settings, seed)
    start_sigma = {
        model.rvs_to_values[rv].name: MAP_SIGMA
        if model.rvs_to_values[rv].name in points
        else settings.start_sigma
        for rv in model.free_RVs
    }
    # A huge start_sigma overflows PyMC's inverse softplus, log(expm1(sigma)), to rho = inf. The
    # first step's loss is then NaN, and the fit fails with a divergence message that names
    # start_sigma. NumPy's overflow warning would only print a second, less helpful line before it.
    with np.errstate(over="ignore"):
        if settings.kl == "analytic":
            approx = pm.MeanField(model=model, start_sigma=start_sigma, random_seed=seed)
            advi = pm.variational.inference.Inference(
                AnalyticKL, approx, None, beta=beta_of(settings), **(bound or {})
            )
        elif is_tempered(settings):
            approx = pm.MeanField(model=model, start_sigma=start_sigma, random_seed=seed)
            advi = pm.KLqp(approx, beta=beta_of(settings))
        else:
            advi = pm.ADVI(model=model, start_sigma=start_sigma, random_seed=seed)
    with_static_shapes(advi.approx)
    advi.approx.bnn_points = tuple(points)  # read by `compile_step_function`
    return advi


class LogJoint(pm.operators.KL):
    """The MAP objective: -(log p(data | w) + beta log p(w)) at the approximation's draw,
    scaled as PyMC scales the ELBO: PyMC's KL operator without its log q term, `beta` (the KL
    weight of a tempered twin) weighting the prior, the weight penalty, as it does there."""

    def apply(self, f: Any) -> Any:
        return -(self.datalogp_norm + self.beta * self.varlogp_norm)


def make_map(
    model: pm.Model, settings: InferenceConfig, seed: int
) -> pm.variational.inference.Inference:
    """The MAP fit of the same model: PyMC's variational machinery with the `LogJoint`
    objective on a mean-field approximation whose scales are held at `MAP_SIGMA` (the optimizer
    moves only the means), so every draw is the means: the point estimate has the same prior
    (a weight penalty), total_size-scaled likelihood, minibatches, optimizer and schedule as its
    Bayesian twin, and its approx.npz, checkpoints and predictive work unchanged."""
    start_sigma = {model.rvs_to_values[rv].name: MAP_SIGMA for rv in model.free_RVs}
    approx = pm.MeanField(model=model, start_sigma=start_sigma, random_seed=seed)
    inference = pm.variational.inference.Inference(LogJoint, approx, None, beta=beta_of(settings))
    with_static_shapes(inference.approx)
    return inference


def beta_of(settings: InferenceConfig) -> Any:
    """The KL (or, for MAP, prior) weight: PyMC's constant 1, or a shared scalar the loop
    schedules when tempered."""
    if not is_tempered(settings):
        return 1.0
    return pytensor.shared(np.asarray(kl_weight_at(settings, 0), pytensor.config.floatX))


def is_tempered(settings: InferenceConfig) -> bool:
    return settings.kl_weight != 1.0 or settings.kl_warmup > 0


def kl_weight_at(settings: InferenceConfig, iteration: int) -> float:
    """The KL term's weight for 0-based `iteration`: `kl_weight`, reached by a linear ramp
    from 0 over the first `kl_warmup` iterations (the data first shapes the means, then the
    prior pulls the scales out)."""
    if iteration >= settings.kl_warmup:
        return settings.kl_weight
    return settings.kl_weight * iteration / settings.kl_warmup


def with_static_shapes(approx: Any) -> None:
    """Give the mean-field parameters (shared vectors) their static length. PyMC creates them
    with an unknown length, which leaves shape computations in the step function that the JAX
    backend cannot trace; the C and Numba backends lose nothing."""
    for group in approx.groups:
        for key, shared in list(group.shared_params.items()):
            value = shared.get_value()
            group.shared_params[key] = pytensor.shared(value, name=shared.name, shape=value.shape)


def learning_rate_at(settings: InferenceConfig, iteration: int) -> float:
    """The step size for 0-based `iteration`: constant, or a cosine decay to zero that lets the
    last iterations settle instead of hopping around the optimum at full step size."""
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    progress = min(iteration / settings.iterations, 1.0)
    return settings.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def compile_step_function(
    advi: Any, settings: InferenceConfig, mode: Any
) -> tuple[Any, dict[Any, Callable[[int], float]]]:
    """PyMC's compiled step (sample the weights, take the optimizer step, return the loss) and
    its schedules: {shared scalar: its value at a 0-based iteration} (the learning rate, and the
    KL weight of a tempered objective)."""
    learning_rate = pytensor.shared(
        np.asarray(settings.learning_rate, dtype=pytensor.config.floatX), name="learning_rate"
    )
    optimizer = make_optimizer(settings, learning_rate, rho_mask(advi.approx))
    compile_kwargs = {"mode": mode} if mode else {}
    step_fn = advi.objective.step_function(
        obj_optimizer=optimizer, score=True, compile_kwargs=compile_kwargs
    )
    schedules: dict[Any, Callable[[int], float]] = {
        learning_rate: partial(learning_rate_at, settings)
    }
    beta = advi.objective.op.beta
    if isinstance(beta, pytensor.compile.SharedVariable):
        schedules[beta] = partial(kl_weight_at, settings)
    return step_fn, schedules


def rho_mask(approx: Any) -> np.ndarray | None:
    """1 for each entry of the flat rho vector the optimizer may move, 0 for those of the
    variables held at a point (`make_advi`'s `points`); None when all move."""
    points = getattr(approx, "bnn_points", ())
    if not points:
        return None
    (group,) = approx.groups
    mask = np.ones(group.ddim, dtype=pytensor.config.floatX)
    for name in points:
        mask[group.ordering[name][1]] = 0.0
    return mask


def make_optimizer(
    settings: InferenceConfig, learning_rate: Any, rho_mask: np.ndarray | None = None
) -> Callable:
    """PyMC's optimizer for the mean-field parameters; with `rho_lr_scale` != 1 the scales
    (`rho`) get their own optimizer whose step size is that many times the means' (`mu`); a
    MAP fit's optimizer moves the means alone. `rho_mask` zeroes the gradient of the rho
    entries held at a point (Adam then never moves them)."""
    base = OPTIMIZERS[settings.optimizer]
    if rho_mask is not None:
        inner = make_optimizer(settings, learning_rate)
        mask = pytensor.tensor.as_tensor_variable(rho_mask)

        def masked(grads: list, params: list) -> Any:
            grads = [g * mask if p.name == "rho" else g for g, p in zip(grads, params, strict=True)]
            return inner(grads, params)

        return masked
    if settings.method == "map":  # the means only: the scales stay at MAP_SIGMA

        def means_only(grads: list, params: list) -> Any:
            pairs = [(g, p) for g, p in zip(grads, params, strict=True) if p.name != "rho"]
            return base([g for g, _ in pairs], [p for _, p in pairs], learning_rate=learning_rate)

        return means_only
    if settings.rho_lr_scale == 1.0:
        return base(learning_rate=learning_rate)
    rho_learning_rate = learning_rate * np.asarray(settings.rho_lr_scale, dtype=learning_rate.dtype)

    def per_group(grads: list, params: list) -> Any:
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
