"""Posterior predictive: shapes, seeding, chunking, and agreement with the model's network."""

import numpy as np
import pytest

from bnn_cli.config import config_from_dict
from bnn_cli.models.architecture import param_specs
from bnn_cli.posterior import params
from bnn_cli.posterior.predictive import (
    accuracy_of_mean,
    compile_predict,
    predictive,
    weight_draws,
)


@pytest.fixture(scope="module")
def setup():
    config = config_from_dict({"model": {"hidden": [7]}})
    rng = np.random.default_rng(0)
    arrays = {}
    for spec in param_specs(config.model):
        arrays[params.key(params.MU, spec.name)] = rng.normal(0, 0.3, spec.shape)
        arrays[params.key(params.RHO, spec.name)] = np.full(spec.shape, -3.0)
    images = rng.random((23, 28, 28)).astype("float32")
    return config, arrays, images, compile_predict(config.model)


def test_shape_normalized_and_seeded(setup):
    config, arrays, images, fn = setup
    probs = predictive(fn, arrays, config.model, images, draws=5, seed=1, chunk_size=10)
    assert probs.shape == (5, 23, 10)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-5)
    again = predictive(fn, arrays, config.model, images, draws=5, seed=1, chunk_size=7)
    np.testing.assert_allclose(probs, again, rtol=1e-5)
    other = predictive(fn, arrays, config.model, images, draws=5, seed=2)
    assert not np.allclose(probs, other)
    assert not np.allclose(probs[0], probs[1])  # draws differ


def test_each_draw_is_its_own_forward_pass_and_reported_once_in_order(setup):
    """One chunk stays in flight while the next is dispatched: every (draw, chunk) still lands
    in its own place, and progress hears of each draw once, after its last chunk."""
    config, arrays, images, fn = setup
    seen = []
    probs = predictive(
        fn, arrays, config.model, images, draws=4, seed=3, chunk_size=6, progress=seen.append
    )
    assert seen == [1, 2, 3, 4]
    names = [s.name for s in param_specs(config.model)]
    for d, weights in enumerate(weight_draws(arrays, config.model, 4, 3)):
        expected = fn(images, *[weights[name] for name in names])
        np.testing.assert_allclose(probs[d], np.asarray(expected), rtol=1e-5, atol=1e-7)


def test_mean_only_uses_the_means(setup):
    config, arrays, images, fn = setup
    probs = predictive(fn, arrays, config.model, images, draws=9, seed=0, mean_only=True)
    h = np.maximum(images.reshape(23, -1) @ arrays["mu/dense1_w"] + arrays["mu/dense1_b"], 0)
    logits = h @ arrays["mu/out_w"] + arrays["mu/out_b"]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert probs.shape == (1, 23, 10)
    np.testing.assert_allclose(probs[0], expected, rtol=1e-4, atol=1e-6)
    labels = expected.argmax(1)
    assert accuracy_of_mean(fn, arrays, config.model, images, labels) == 1.0
