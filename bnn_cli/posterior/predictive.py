"""Posterior predictive probabilities, shape (draws, images, classes).

Weights are drawn from the saved mean-field approximation (mu + softplus(rho) * eps, seeded) and
pushed through the same `forward` graph the model uses, compiled once, in memory-bounded chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytensor
import pytensor.tensor as pt

from bnn_cli.config import ModelConfig
from bnn_cli.models.architecture import param_specs, predictive_probabilities
from bnn_cli.models.priors import saved_factors

logger = logging.getLogger(__name__)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def compile_predict(model: ModelConfig, mode: str | None = None) -> Callable:
    """A compiled function (images, *params in param_specs order) -> class probabilities."""
    float_x = pytensor.config.floatX
    specs = param_specs(model)
    x = pt.tensor("x", shape=(None, 28, 28), dtype=float_x)
    params = {s.name: pt.tensor(s.name, shape=s.shape, dtype=float_x) for s in specs}
    probs = predictive_probabilities(x, params, model)
    kwargs = {"mode": mode} if mode else {}
    return pytensor.function([x, *params.values()], probs, **kwargs)


def weight_draws(
    arrays: dict[str, np.ndarray],
    model: ModelConfig,
    draws: int,
    seed: int,
    mean_only: bool = False,
):
    """Yield `draws` dicts of weights (or the posterior mean once, if `mean_only`).

    A tensor is either a Normal of its own, or, under the hierarchical prior, `scale * raw` with
    a log-normal scale and a Normal `raw` (`models.priors.factors`); the factors are
    independent under the mean-field approximation.
    """
    float_x = pytensor.config.floatX
    factors = {s.name: tensor_factors(arrays, s.name) for s in param_specs(model)}
    if mean_only:
        yield {name: _mean(f).astype(float_x) for name, f in factors.items()}
        return
    rng = np.random.default_rng([seed, 2])  # its own stream: evaluation never shifts training
    for _ in range(draws):
        yield {name: _draw(f, rng, float_x) for name, f in factors.items()}


def tensor_factors(arrays: dict[str, np.ndarray], name: str) -> list[tuple]:
    """[(mu, sigma, is_log)] whose (exp'd where is_log) draws multiply (broadcast: a scale may
    be per unit) to the tensor's draw."""
    return [
        (arrays[f"mu/{f.key}"], softplus(arrays[f"rho/{f.key}"]), f.log)
        for f in saved_factors(arrays, name)
    ]


def _mean(factors: list[tuple]) -> np.ndarray:
    value = 1.0
    for mu, sigma, is_log in factors:
        value = value * (np.exp(mu + sigma**2 / 2) if is_log else mu)
    return np.asarray(value)


def _draw(factors: list[tuple], rng: np.random.Generator, dtype: str) -> np.ndarray:
    value = 1.0
    for mu, sigma, is_log in factors:
        z = mu + sigma * rng.standard_normal(np.shape(mu), dtype=np.float32)
        value = value * (np.exp(z) if is_log else z)
    return np.asarray(value, dtype=dtype)


def predictive(
    fn: Callable,
    arrays: dict[str, np.ndarray],
    model: ModelConfig,
    images: np.ndarray,
    draws: int,
    seed: int,
    chunk_size: int = 1000,
    mean_only: bool = False,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Class probabilities of shape (draws, n, 10) (draws = 1 with `mean_only`).

    One chunk is kept in flight: under JAX a call returns before its result is computed, so
    the next chunk (and the next draw's weights) is dispatched before the last one is copied
    out, and the Python work between calls overlaps the arithmetic instead of idling it."""
    specs = param_specs(model)
    images = np.asarray(images, dtype=pytensor.config.floatX)
    n_draws = 1 if mean_only else draws
    out = np.empty((n_draws, len(images), 10), dtype=np.float32)
    pending = None  # (draw, start, result not yet copied out)
    for d, weights in enumerate(weight_draws(arrays, model, draws, seed, mean_only)):
        ordered = [weights[s.name] for s in specs]
        for start in range(0, len(images), chunk_size):
            result = fn(images[start : start + chunk_size], *ordered)
            if pending is not None:
                _copy_out(out, *pending, progress)
            pending = (d, start, result)
    if pending is not None:
        _copy_out(out, *pending, progress)
    return out


def _copy_out(out: np.ndarray, d: int, start: int, result, progress) -> None:
    """Copy one chunk's probabilities into `out` (this waits for them); report a draw once its
    last chunk is in."""
    result = np.asarray(result)
    out[d, start : start + len(result)] = result
    if progress and start + len(result) == out.shape[1]:
        progress(d + 1)


def accuracy_of_mean(
    fn: Callable,
    arrays: dict[str, np.ndarray],
    model: ModelConfig,
    images: np.ndarray,
    labels: np.ndarray,
    chunk_size: int = 2000,
) -> float:
    """Validation accuracy with the posterior mean weights: cheap enough to run during a fit."""
    probs = predictive(
        fn, arrays, model, images, draws=1, seed=0, chunk_size=chunk_size, mean_only=True
    )
    return float((probs[0].argmax(axis=1) == labels).mean())
