"""Config + data -> a plain `pm.Model`, which a user can open with PyMC's own tools."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor

from bnn_cli.config import Config
from bnn_cli.models.architecture import forward, initial_values, param_specs
from bnn_cli.models.priors import add_parameter


def label_dtype() -> str:
    """PyMC's intX for the current floatX: observed labels must already have it, since a cast in
    the graph would make the observed data depend on other nodes."""
    return "int16" if pytensor.config.floatX == "float32" else "int32"


IMAGES_BATCH = "x_batch"
LABELS_BATCH = "y_batch"


def build_model(config: Config, images: np.ndarray, labels: np.ndarray) -> pm.Model:
    """The Bayesian network with a minibatch likelihood scaled to the full training set.

    The minibatch lives in two data containers of fixed shape, `x_batch` and `y_batch`, which
    `fit.feeder.MinibatchFeeder` fills from one index per step, so images and labels stay paired.
    Static shapes let every backend (C, Numba, JAX) compile the step once, and the training set
    stays out of the compiled graph.
    """
    float_x = pytensor.config.floatX
    batch = config.inference.batch_size
    images = np.ascontiguousarray(images[:batch], dtype=float_x)
    labels = np.asarray(labels, dtype=label_dtype())
    specs = param_specs(config.model)
    init = initial_values(specs, config.seed, float_x)
    with pm.Model() as model:
        x_batch = pm.Data(IMAGES_BATCH, images, shape=images.shape)
        y_batch = pm.Data(LABELS_BATCH, labels[:batch], shape=(batch,))
        params = {spec.name: add_parameter(spec, config.prior, init[spec.name]) for spec in specs}
        logits = forward(x_batch, params, config.model)
        pm.Categorical("obs", logit_p=logits, observed=y_batch, total_size=len(labels))
    return model
