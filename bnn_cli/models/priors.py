"""Priors on the network's tensors: fixed Normal(0, sd), or hierarchical with one learned
HalfNormal scale per tensor (the data chooses how strongly each layer is regularized)."""

from __future__ import annotations

import numpy as np
import pymc as pm

from bnn_cli.config import PriorConfig
from bnn_cli.models.architecture import ParamSpec

SCALE_SUFFIX = "_scale"


def add_parameter(spec: ParamSpec, prior: PriorConfig, initval: np.ndarray):
    """Add one weight or bias tensor (and its scale, if hierarchical) to the model in context."""
    if prior.kind == "fixed":
        sd = prior.sd
    else:
        # Start the scale where the initial weights are (He std) so the prior does not pull
        # them to zero in the first iterations; biases start at a small scale.
        start = np.sqrt(2.0 / spec.fan_in) if spec.is_weight else 0.1
        sd = pm.HalfNormal(
            spec.name + SCALE_SUFFIX,
            sigma=prior.hyper_sd,
            initval=np.asarray(start, dtype=initval.dtype),
        )
    return pm.Normal(spec.name, mu=0.0, sigma=sd, shape=spec.shape, initval=initval)


def scale_names(specs: list[ParamSpec], prior: PriorConfig) -> list[str]:
    return [spec.name + SCALE_SUFFIX for spec in specs] if prior.kind == "hierarchical" else []
