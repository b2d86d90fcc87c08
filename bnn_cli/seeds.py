"""The random streams of a run: each a child of the config's seed, `[seed, stream]`, so that one
never shifts another (evaluating a run draws nothing from the stream its training used, and a
longer fit leaves its initial weights as they were). PyMC's ADVI takes the config's seed itself.
meta.json records them (`recorded`)."""

from __future__ import annotations

import numpy as np

INITIAL_WEIGHTS = 1  # the He-normal means the fit starts from (models/architecture)
PREDICTIVE = 2  # the posterior's weight draws: evaluation, and the validations during a fit
PRIOR_SCALES = 3  # the draws of a hierarchical prior's scales in the report
MINIBATCH_ORDER = 4  # the order the feeder hands out the training images in
LOCAL_NOISE = 5  # per-image noise in the likelihood (inference.gradient: local; fit/objective)


def stream(seed: int, which: int) -> np.random.Generator:
    """The generator of stream `which` (one of the constants above) of `seed`."""
    return np.random.default_rng([seed, which])


def recorded(seed: int) -> dict[str, int | list[int]]:
    """The seeds as meta.json lists them."""
    return {
        "config": seed,
        "advi": seed,
        "initial_weights": [seed, INITIAL_WEIGHTS],
        "predictive": [seed, PREDICTIVE],  # also the validation draws during training
        "minibatch_order": [seed, MINIBATCH_ORDER],
        "local_noise": [seed, LOCAL_NOISE],  # drawn only with inference.gradient: local
    }
