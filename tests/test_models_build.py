"""The PyMC models: shapes, names, a finite log-density for each architecture and prior, and the
likelihood's `total_size` scaling."""

import numpy as np
import pytest
from scipy.special import log_softmax

from bnn_cli.config import config_from_dict
from bnn_cli.fit.feeder import MinibatchFeeder
from bnn_cli.models.architecture import forward, param_specs
from bnn_cli.models.build import build_model

SMALL = {
    "mlp": {"architecture": "mlp", "hidden": [12, 8]},
    "conv": {"architecture": "conv", "filters": [4, 3], "kernel_size": 5, "hidden": [6]},
}


def small_config(arch: str, prior: str, batch_size: int = 10):
    return config_from_dict(
        {
            "name": "t",
            "data": {"train_size": 40, "val_size": 10},
            "model": SMALL[arch],
            "prior": {"kind": prior},
            "inference": {"batch_size": batch_size},
        }
    )


def images_and_labels(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28)).astype("float32"), rng.integers(0, 10, n)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("prior", ["fixed", "hierarchical"])
def test_model_has_named_tensors_and_finite_logp(arch, prior):
    config = small_config(arch, prior)
    model = build_model(config, *images_and_labels())
    specs = param_specs(config.model)
    names = {rv.name for rv in model.free_RVs}
    expected = {s.name for s in specs}
    if prior == "hierarchical":
        expected = {s.name + suffix for s in specs for suffix in ("_scale", "_raw")}
    assert names == expected
    point = model.initial_point()
    for spec in specs:
        assert model[spec.name].type.shape == spec.shape
    assert np.isfinite(model.compile_logp()(point))


def test_conv_specs_follow_the_lasagne_net():
    config = config_from_dict({"model": {"architecture": "conv", "hidden": [256]}})
    shapes = {s.name: s.shape for s in param_specs(config.model)}
    assert shapes == {
        "conv1_w": (5, 5, 1, 32),
        "conv1_b": (32,),
        "conv2_w": (5, 5, 32, 32),
        "conv2_b": (32,),
        "dense1_w": (512, 256),
        "dense1_b": (256,),
        "out_w": (256, 10),
        "out_b": (10,),
    }


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_likelihood_is_scaled_to_the_full_training_set(arch):
    # Every row identical: whatever rows the minibatch draws, the scaled log-likelihood is
    # total_size * log p(label | image), not batch_size * ...
    config = small_config(arch, "fixed", batch_size=10)
    image = np.random.default_rng(1).random((28, 28)).astype("float32")
    images = np.repeat(image[None], 40, axis=0)
    labels = np.full(40, 3)
    model = build_model(config, images, labels)
    point = model.initial_point()
    obs = model.observed_RVs[0]
    loglik = model.compile_logp(vars=[obs], sum=True)(point)
    params = {s.name: point[s.name].astype("float64") for s in param_specs(config.model)}
    logits = forward(images[:1].astype("float64"), params, config.model).eval()
    expected = 40 * log_softmax(logits, axis=1)[0, 3]
    np.testing.assert_allclose(loglik, expected, rtol=1e-4)


def test_images_and_labels_share_one_minibatch():
    # Label i is a function of image i; any mismatch between the fed rows would show.
    config = small_config("mlp", "fixed", batch_size=10)
    labels = np.arange(40) % 10
    images = np.zeros((40, 28, 28), dtype="float32")
    images[:, 0, 0] = np.arange(40)
    model = build_model(config, images, labels)
    feeder = MinibatchFeeder(model, images, labels, seed=0)
    seen = []
    for _ in range(8):  # two epochs
        feeder()
        xb, yb = model["x_batch"].get_value(), model["y_batch"].get_value()
        assert xb.shape == (10, 28, 28) and yb.shape == (10,)
        rows = xb[:, 0, 0].astype(int)
        np.testing.assert_array_equal(rows % 10, yb)
        seen.extend(rows)
    assert sorted(seen[:40]) == list(range(40)) == sorted(seen[40:])  # each image once an epoch


def test_minibatch_order_is_seeded():
    config = small_config("mlp", "fixed", batch_size=10)
    images, labels = images_and_labels()
    model = build_model(config, images, labels)
    a, b = (MinibatchFeeder(model, images, labels, seed=s) for s in (0, 0))
    c = MinibatchFeeder(model, images, labels, seed=1)
    assert np.array_equal(a.next_indices(), b.next_indices())
    assert not np.array_equal(a.next_indices(), c.next_indices())
