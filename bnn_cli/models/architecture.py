"""The networks: which parameter tensors they have (names, shapes) and their forward pass.

The same `forward` builds the PyMC model's likelihood and the posterior predictive function, so
training and evaluation cannot disagree about the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor.tensor as pt

from bnn_cli import seeds
from bnn_cli.config import ModelConfig
from bnn_cli.models.layers import ACTIVATIONS, conv2d, conv_output_side, dense, max_pool

IMAGE_SIDE = 28
N_CLASSES = 10


@dataclass(frozen=True)
class ParamSpec:
    name: str  # the PyMC variable's name, e.g. "dense1_w"
    shape: tuple[int, ...]
    fan_in: int  # inputs feeding one output unit: sets the initial scale

    @property
    def is_weight(self) -> bool:
        return self.name.endswith("_w")


def param_specs(model: ModelConfig) -> list[ParamSpec]:
    """Every weight and bias tensor, in forward order."""
    specs: list[ParamSpec] = []
    width = IMAGE_SIDE * IMAGE_SIDE
    if model.architecture == "conv":
        k, channels = model.kernel_size, 1
        for i, filters in enumerate(model.filters, start=1):
            specs += [
                ParamSpec(f"conv{i}_w", (k, k, channels, filters), k * k * channels),
                ParamSpec(f"conv{i}_b", (filters,), k * k * channels),
            ]
            channels = filters
        side = conv_output_side(IMAGE_SIDE, k, model.pool_size, len(model.filters))
        width = side * side * channels
    for i, units in enumerate(model.hidden, start=1):
        specs += [
            ParamSpec(f"dense{i}_w", (width, units), width),
            ParamSpec(f"dense{i}_b", (units,), width),
        ]
        width = units
    specs += [
        ParamSpec("out_w", (width, N_CLASSES), width),
        ParamSpec("out_b", (N_CLASSES,), width),
    ]
    return specs


def forward(x: Any, params: dict, model: ModelConfig) -> Any:
    """Logits for images `x` of shape (n, 28, 28); `params` maps names to tensors."""
    act = ACTIVATIONS[model.activation]
    if model.architecture == "conv":
        h = x.reshape((-1, IMAGE_SIDE, IMAGE_SIDE, 1))  # constant shapes: any backend
        for i in range(1, len(model.filters) + 1):
            h = conv2d(h, params[f"conv{i}_w"], params[f"conv{i}_b"])
            h = max_pool(act(h), model.pool_size)
        h = h.reshape((-1, int(np.prod(h.type.shape[1:]))))
    else:
        h = x.reshape((-1, IMAGE_SIDE * IMAGE_SIDE))
    for i in range(1, len(model.hidden) + 1):
        h = act(dense(h, params[f"dense{i}_w"], params[f"dense{i}_b"]))
    return dense(h, params["out_w"], params["out_b"])


def initial_values(specs: list[ParamSpec], seed: int, dtype: str) -> dict[str, np.ndarray]:
    """He-normal weights and zero biases. PyMC's default start (all zeros) is a saddle point
    of a ReLU network: every hidden unit would get the same gradient."""
    rng = seeds.stream(seed, seeds.INITIAL_WEIGHTS)
    values = {}
    for spec in specs:
        if spec.is_weight:
            values[spec.name] = rng.normal(0.0, np.sqrt(2.0 / spec.fan_in), spec.shape)
        else:
            values[spec.name] = np.zeros(spec.shape)
        values[spec.name] = values[spec.name].astype(dtype)
    return values


def predictive_probabilities(x: Any, params: dict, model: ModelConfig) -> Any:
    return pt.special.softmax(forward(x, params, model), axis=-1)
