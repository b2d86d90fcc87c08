"""Posterior predictive probabilities, shape (draws, images, classes).

Weights are drawn from the saved mean-field approximation (mu + softplus(rho) * eps, seeded) and
pushed through the same `forward` graph the model uses, compiled once, in memory-bounded chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from bnn_cli import seeds
from bnn_cli.config import ModelConfig
from bnn_cli.models.architecture import param_specs, predictive_probabilities
from bnn_cli.posterior import params

logger = logging.getLogger(__name__)


def compile_predict(model: ModelConfig, mode: str | None = None) -> Callable:
    """A compiled function (images, *params in param_specs order) -> class probabilities."""
    float_x = pytensor.config.floatX
    specs = param_specs(model)
    x = pt.tensor("x", shape=(None, 28, 28), dtype=float_x)
    params = {s.name: pt.tensor(s.name, shape=s.shape, dtype=float_x) for s in specs}
    probs = predictive_probabilities(x, params, model)
    kwargs: dict[str, Any] = {"mode": mode} if mode else {}
    return pytensor.function([x, *params.values()], probs, **kwargs)


def weight_draws(
    arrays: dict[str, np.ndarray],
    model: ModelConfig,
    draws: int,
    seed: int,
    mean_only: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield `draws` dicts of weights (or the posterior mean once, if `mean_only`).

    A tensor is either a Normal of its own, or, under the hierarchical prior, `scale * raw` with
    a log-normal scale and a Normal `raw` (`models.priors.factors`); the factors are
    independent under the mean-field approximation.
    """
    float_x = pytensor.config.floatX
    factors = {s.name: params.tensor_factors(arrays, s.name) for s in param_specs(model)}
    if mean_only:
        yield {name: params.mean_of(f).astype(float_x) for name, f in factors.items()}
        return
    rng = seeds.stream(seed, seeds.PREDICTIVE)
    for _ in range(draws):
        yield {name: params.draw_of(f, rng, float_x) for name, f in factors.items()}


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


def mixture(
    fn: Callable,
    sources: Sequence[tuple[dict[str, np.ndarray], int, int]],
    model: ModelConfig,
    images: np.ndarray,
    chunk_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The equal mixture of several approximations' predictives (an ensemble's members): each
    source `(arrays, draws, seed)` draws its share in turn, and the draws are concatenated,
    (sum of draws, n, 10). One source is one run's predictive. `progress` gets the draws done
    over all sources."""
    parts, done = [], 0
    for arrays, draws, seed in sources:
        report = None if progress is None else (lambda d, before=done: progress(before + d))
        parts.append(
            predictive(fn, arrays, model, images, draws, seed, chunk_size, progress=report)
        )
        done += draws
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _copy_out(out: np.ndarray, d: int, start: int, result: Any, progress: Any) -> None:
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
