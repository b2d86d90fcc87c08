"""K ADVI steps per compiled call: the same fit as one step per call, seeded, each image once
per epoch; divergence inside a call."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bnn_cli.config import InferenceConfig, load_config
from bnn_cli.engine import backend
from bnn_cli.errors import FitFailed
from bnn_cli.fit import advi, feeder, loop, steppers
from bnn_cli.posterior import params

ROOT = Path(__file__).resolve().parents[1]


def test_steps_per_call_divides_eval_every_and_iterations():
    def k(**kwargs):
        return steppers.steps_per_call(InferenceConfig(**kwargs))

    assert k(iterations=3000, eval_every=500, steps_per_call=100) == 100
    assert k(iterations=1000, eval_every=250, steps_per_call=100) == 50
    assert k(iterations=80, eval_every=80, steps_per_call=100) == 20
    assert k(iterations=7, eval_every=3, steps_per_call=100) == 1
    assert k(iterations=3000, eval_every=500, backend="c") == 1
    assert k(iterations=3000, eval_every=500, backend="numba") == 1


def tiny_fit(k: int, seed: int = 0, lr: float = 0.003):
    """12 steps of an 8-unit MLP on 64 random images in batches of 16 (3 epochs); returns the
    losses, the final parameters and the minibatch rows drawn."""
    from bnn_cli.models.build import build_model

    config = load_config(
        ROOT / "configs" / "smoke.yaml",
        [
            "model.hidden=[8]",
            "inference.batch_size=16",
            "inference.iterations=12",
            "inference.eval_every=12",
            f"inference.learning_rate={lr}",
            f"inference.steps_per_call={k}",
            f"seed={seed}",
        ],
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(64, 28, 28)).astype("float32")
    labels = rng.integers(0, 10, size=64)
    mode = backend.configure("float32", "jax")
    model = build_model(config, images, labels)
    fit = advi.make_advi(model, config.inference, seed)
    batches = feeder.MinibatchFeeder(model, images, labels, seed)
    rows = []
    draw = batches.next_indices
    batches.next_indices = lambda: rows.append(draw()) or rows[-1]
    stepper = steppers.make_stepper(fit, config.inference, mode, batches)
    assert stepper.k == k
    state = loop.run_fit(stepper, fit.approx, config.inference, loop.FitState())
    return np.array(state.losses), params.from_approx(fit.approx), np.array(rows)


@pytest.mark.slow
def test_k_steps_per_call_make_the_same_fit_as_one():
    """The minibatches gathered on the device, the threaded random state and the in-call
    learning-rate schedule reproduce the one-step-per-call fit, from the same seed."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install 'bnn[jax]')")
    try:
        one, one_params, one_rows = tiny_fit(1)
        four, four_params, four_rows = tiny_fit(4)
        again, again_params, _ = tiny_fit(4)
        other, _, _ = tiny_fit(4, seed=1)
    finally:
        backend.configure("float32", "c")
    assert len(set(four.tolist())) == len(four)  # the noise and the minibatch advance
    np.testing.assert_allclose(four, one, rtol=1e-5)
    for key, value in one_params.items():
        np.testing.assert_allclose(four_params[key], value, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(again, four)
    for key, value in four_params.items():
        np.testing.assert_array_equal(again_params[key], value)
    assert not np.allclose(other, four)
    np.testing.assert_array_equal(four_rows, one_rows)
    epochs = four_rows.reshape(3, 64)  # 4 batches of 16 per epoch
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(64))  # each image once per epoch
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.slow
def test_divergence_inside_a_compiled_call_fails_the_fit():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install 'bnn[jax]')")
    try:
        with pytest.raises(FitFailed, match=r"the loss became (nan|inf) at iteration \d+"):
            tiny_fit(4, lr=1e30)
    finally:
        backend.configure("float32", "c")
