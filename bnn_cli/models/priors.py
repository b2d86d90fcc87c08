"""Priors on the network's tensors, and the one place that names the approximation's variables.

- `fixed`: Normal(0, sd) on every entry; `sd` is a number (the original experiment's N(0, 1)) or
  `fan_in`, meaning sd = gain / sqrt(fan_in): a prior sized to each layer like He's initial
  weights (gain sqrt(2)), so a 25-input conv kernel and an 800-input dense layer get priors of
  their own size.
- `hierarchical`: `w = scale * w_raw`, `w_raw ~ Normal(0, 1)`, `scale ~ HalfNormal(hyper_sd)`
  or `HalfCauchy(hyper_sd)` (`hyperprior`; `hyper_sd` may be `fan_in` too), with one scale per
  tensor (`scale_per: tensor`), or one per input unit (`input`: automatic relevance
  determination, e.g. one per pixel of the first dense layer) or per output unit (`output`: a
  hidden unit or conv filter the data does not need can be switched off as a whole). Biases
  always get one scale per tensor.
- `hierarchical` with `hyperprior: collapsed`: each tensor is one Normal in the model, at the
  variance its hyperprior centres on (`hyper_sd`); the objective (`fit.objective`) integrates
  out, per `scale_per` group, an inverse-gamma hyperprior on that variance and a Normal one on
  each weight's mean (`alpha`): the collapsed bound of Tomczak et al. (2021). What the fit
  learned about each group's variance is the inverse-gamma of `collapsed_posterior`.

Every other module asks `factors` which variables a tensor is made of: approx.npz keys, weight
draws and the scale plots all follow from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnn_cli.config import FAN_IN, PriorConfig
from bnn_cli.models.architecture import ParamSpec

SCALE_SUFFIX = "_scale"
RAW_SUFFIX = "_raw"
LOG_SUFFIX = "_log__"  # PyMC's name for the log-transformed value of a positive variable


@dataclass(frozen=True)
class Factor:
    """One variable of the mean-field approximation: saved as `mu/<key>` and `rho/<key>`. A
    tensor's draw is the product of its factors' draws (`exp`'d where `log`), broadcast."""

    key: str
    shape: tuple[int, ...]
    log: bool = False  # the variable is the log of a positive prior scale


def scale_shape(spec: ParamSpec, scale_per: str) -> tuple[int, ...]:
    """The shape of a tensor's prior scale, broadcastable against the tensor."""
    if not spec.is_weight or scale_per == "tensor":
        return ()
    if scale_per == "input":  # every axis but the last: dense (in, 1), conv (k, k, c_in, 1)
        return (*spec.shape[:-1], 1)
    return (spec.shape[-1],)  # output: one per unit or filter


def is_collapsed(prior: PriorConfig) -> bool:
    return prior.kind == "hierarchical" and prior.hyperprior == "collapsed"


def factors(spec: ParamSpec, prior: PriorConfig) -> list[Factor]:
    """The approximation's variables that make up one network tensor under `prior`."""
    if prior.kind == "fixed" or is_collapsed(prior):
        return [Factor(spec.name, spec.shape)]
    scale = spec.name + SCALE_SUFFIX + LOG_SUFFIX
    return [
        Factor(scale, scale_shape(spec, prior.scale_per), log=True),
        Factor(spec.name + RAW_SUFFIX, spec.shape),
    ]


def scale_names(specs: list[ParamSpec], prior: PriorConfig) -> dict[str, Factor]:
    """`<tensor>_scale` -> its log-scale factor, for hierarchical priors (else empty)."""
    return {f.key[: -len(LOG_SUFFIX)]: f for spec in specs for f in factors(spec, prior) if f.log}


def resolve_sd(value: float | str, gain: float, fan_in: int) -> float:
    """A prior's standard deviation: the number itself, or gain / sqrt(fan_in)."""
    return gain / math.sqrt(fan_in) if value == FAN_IN else float(value)


def add_scale(hyperprior: str, name: str, scale: float, **kwargs: Any) -> Any:
    """A hierarchical prior's scale variable: HalfNormal(scale) or HalfCauchy(scale), or for
    empirical Bayes a flat prior, which the fit holds at a point (`point_estimates`), so the
    ELBO is maximized over it: type-II maximum likelihood."""
    import pymc as pm  # here, not at the top: reading a fit (evaluate, predict) needs no PyMC

    if hyperprior == "empirical":
        return pm.HalfFlat(name, **kwargs)
    distribution = {"halfnormal": pm.HalfNormal, "halfcauchy": pm.HalfCauchy}[hyperprior]
    return distribution(name, scale, **kwargs)


def point_estimates(specs: list[ParamSpec], prior: PriorConfig) -> tuple[str, ...]:
    """The approximation's variables fitted as points, not given a posterior: the scales of an
    empirical-Bayes prior."""
    if prior.kind != "hierarchical" or prior.hyperprior != "empirical":
        return ()
    return tuple(f.key for f in scale_names(specs, prior).values())


def add_parameter(spec: ParamSpec, prior: PriorConfig, initval: np.ndarray) -> Any:
    """Add one weight or bias tensor (and its scale, if hierarchical) to the model in context.

    The hierarchical prior is written non-centered, `w = scale * w_raw`: the same prior, but
    under a mean-field approximation the centered form lets the shared scale collapse and shrink
    every weight of a layer towards zero (the smoke MLP fell from 97 % to 90 %), while here the
    data can pull the scale up.
    """
    import pymc as pm

    if prior.kind == "fixed" or is_collapsed(prior):
        size = prior.hyper_sd if is_collapsed(prior) else prior.sd
        sd = resolve_sd(size, prior.gain, spec.fan_in)
        return pm.Normal(spec.name, mu=0.0, sigma=sd, shape=spec.shape, initval=initval)
    # Start the scale where the initial weights are (He std); biases start at a small scale.
    start = np.sqrt(2.0 / spec.fan_in) if spec.is_weight else 0.1
    shape = scale_shape(spec, prior.scale_per)
    # Both are positive, so PyMC gives both a log transform: the same `_scale_log__` factor.
    scale = add_scale(
        prior.hyperprior,
        spec.name + SCALE_SUFFIX,
        resolve_sd(prior.hyper_sd, prior.gain, spec.fan_in),
        shape=shape,
        initval=np.full(shape, start, dtype=initval.dtype),
    )
    raw = pm.Normal(
        spec.name + RAW_SUFFIX,
        mu=0.0,
        sigma=1.0,
        shape=spec.shape,
        initval=(initval / start).astype(initval.dtype),
    )
    return pm.Deterministic(spec.name, scale * raw)


def group_axes(spec: ParamSpec, prior: PriorConfig) -> tuple[int, ...]:
    """The axes of a tensor that share one prior variance under the collapsed hyperprior
    (`scale_per`, as `scale_shape` lays the scales out): all of them for one per tensor."""
    shape = scale_shape(spec, prior.scale_per)
    padded = (1,) * (len(spec.shape) - len(shape)) + shape
    return tuple(axis for axis, size in enumerate(padded) if size == 1)


def collapsed_posterior(
    spec: ParamSpec, prior: PriorConfig, mu: Any, sigma: Any
) -> tuple[float, Any]:
    """The inverse-gamma posterior (shape, rate) of each group's prior variance v given the
    weights' mean-field posterior (mu, sigma: NumPy arrays or PyTensor tensors of the tensor's
    shape), with the hyperprior IG(a, a v0) (E[1/v] = 1 / v0, v0 = hyper_sd^2) and the means'
    hyperprior of `alpha` integrated out: shape a + n/2, rate a v0 + sum(sigma^2 + alpha mu^2)/2
    over each group's n weights. Both keep the tensor's rank (size 1 along the group's axes)."""
    axes = group_axes(spec, prior)
    size = math.prod(spec.shape[axis] for axis in axes)
    v0 = resolve_sd(prior.hyper_sd, prior.gain, spec.fan_in) ** 2
    spread = (sigma**2 + prior.alpha * mu**2).sum(axis=axes, keepdims=True)
    shape = prior.hyper_shape + size / 2
    return shape, prior.hyper_shape * v0 + spread / 2


def collapsed_scale_draws(
    spec: ParamSpec, prior: PriorConfig, mu: Any, sigma: Any, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Draws of each group's prior scale sqrt(v), (draws, *scale_shape), from the posterior
    `collapsed_posterior` gives: v = rate / Gamma(shape)."""
    shape, rate = collapsed_posterior(spec, prior, mu, sigma)
    v = np.asarray(rate) / rng.gamma(shape, size=(draws, *np.shape(rate)))
    return np.sqrt(v).reshape((draws, *scale_shape(spec, prior.scale_per)))
