"""The ADVI objective and its schedules: learning rate, rho step, the tempered KL weight."""

import dataclasses

import numpy as np
import pytest

from bnn_cli.config import InferenceConfig, config_from_dict
from bnn_cli.fit import advi as fit_advi
from bnn_cli.fit.steppers import OneStep
from bnn_cli.models.build import build_model
from bnn_cli.posterior import params


def test_cosine_schedule_decays_to_zero_and_constant_stays():
    cosine = InferenceConfig(iterations=100, learning_rate=0.01, lr_schedule="cosine")
    assert fit_advi.learning_rate_at(cosine, 0) == pytest.approx(0.01)
    assert fit_advi.learning_rate_at(cosine, 50) == pytest.approx(0.005)
    assert fit_advi.learning_rate_at(cosine, 100) == pytest.approx(0.0, abs=1e-12)
    constant = InferenceConfig(iterations=100, learning_rate=0.01, lr_schedule="constant")
    assert fit_advi.learning_rate_at(constant, 99) == 0.01


@pytest.mark.slow
def test_rho_lr_scale_speeds_up_the_scales_only():
    """Adam moves each parameter by about one step size while its gradient keeps its sign: with
    rho_lr_scale 10 the scales move about ten times as far, the means as far as before."""
    from bnn_cli.engine import backend

    config = config_from_dict(
        {
            "model": {"hidden": [8]},
            "data": {"train_size": 32, "val_size": 5},
            "inference": {"batch_size": 32, "learning_rate": 1e-3},
        }
    )
    rng = np.random.default_rng(0)
    images, labels = rng.random((32, 28, 28)).astype("float32"), rng.integers(0, 10, 32)

    def moved(scale):
        settings = dataclasses.replace(config.inference, rho_lr_scale=scale)
        mode = backend.configure("float32", "jax")
        advi = fit_advi.make_advi(build_model(config, images, labels), settings, seed=0)
        before = params.from_approx(advi.approx)
        step = OneStep(advi, settings, mode, feeder=lambda: None)
        for i in range(5):
            step(i)
        after = params.from_approx(advi.approx)
        return {
            kind: np.median(np.abs(after[f"{kind}/dense1_w"] - before[f"{kind}/dense1_w"]))
            for kind in ("mu", "rho")
        }

    try:
        plain, fast = moved(1.0), moved(10.0)
    finally:
        backend.configure("float32", "c")
    assert fast["rho"] / plain["rho"] == pytest.approx(10, rel=0.2)
    assert fast["mu"] / plain["mu"] == pytest.approx(1, rel=0.2)


def test_rho_step_sum_follows_the_schedule():
    settings = InferenceConfig(iterations=100, learning_rate=0.01, lr_schedule="constant")
    assert fit_advi.rho_step_sum(settings, 90, 100) == pytest.approx(0.1)
    scaled = dataclasses.replace(settings, rho_lr_scale=3.0)
    assert fit_advi.rho_step_sum(scaled, 90, 100) == pytest.approx(0.3)


def test_kl_weight_ramps_up_over_the_warmup_then_stays():
    plain = InferenceConfig(iterations=100)
    assert not fit_advi.is_tempered(plain) and fit_advi.kl_weight_at(plain, 0) == 1.0
    ramp = InferenceConfig(iterations=100, kl_weight=0.5, kl_warmup=10)
    assert fit_advi.is_tempered(ramp)
    assert [fit_advi.kl_weight_at(ramp, i) for i in (0, 5, 10, 99)] == [0.0, 0.25, 0.5, 0.5]


def small_model():
    config = config_from_dict(
        {
            "model": {"hidden": [4]},
            "data": {"train_size": 16, "val_size": 5},
            "inference": {"batch_size": 16},
        }
    )
    rng = np.random.default_rng(0)
    images, labels = rng.random((16, 28, 28)).astype("float32"), rng.integers(0, 10, 16)
    return config, build_model(config, images, labels)


def test_a_tempered_objective_is_pymcs_klqp_with_a_scheduled_beta():
    """The KL weight is a shared scalar of PyMC's own KL operator that the stepper sets at
    every step; the loss at beta = 0 is the expected negative log-likelihood alone."""
    config, model = small_model()
    settings = dataclasses.replace(config.inference, kl_weight=0.5, kl_warmup=4)
    fit = fit_advi.make_advi(model, settings, seed=0)
    _, schedules = fit_advi.compile_step_function(fit, settings, None)
    beta = fit.objective.op.beta
    assert beta in schedules and schedules[beta](2) == 0.25
    plain = fit_advi.make_advi(model, config.inference, seed=0)
    _, plain_schedules = fit_advi.compile_step_function(plain, config.inference, None)
    assert len(plain_schedules) == 1  # the learning rate only: the plain ELBO is untouched


def test_a_map_fit_moves_the_means_only_and_its_loss_is_the_negative_log_joint():
    """MAP is PyMC's KLqp with beta 0 on an approximation held at sigma 1e-30: every draw is
    the means, so the loss is -log p(mu, minibatch) (the likelihood scaled by total_size), and
    the optimizer never touches rho."""
    from bnn_cli.engine import backend

    config = config_from_dict(
        {
            "model": {"hidden": [8]},
            "data": {"train_size": 320, "val_size": 5},
            "inference": {"method": "map", "batch_size": 32, "learning_rate": 1e-2},
        }
    )
    rng = np.random.default_rng(0)
    images, labels = rng.random((32, 28, 28)).astype("float32"), rng.integers(0, 10, 32)
    try:
        mode = backend.configure("float32", "jax")
        model = build_model(config, images, labels)
        advi = fit_advi.make_advi(model, config.inference, seed=0)
        before = params.from_approx(advi.approx)
        step = OneStep(advi, config.inference, mode, feeder=lambda: None)
        point = {name[3:]: value for name, value in before.items() if name.startswith("mu/")}
        neg_log_joint = -float(model.compile_logp()(point))
        first_loss = float(step(0)[0])
        for i in range(1, 5):
            step(i)
        after = params.from_approx(advi.approx)
    finally:
        backend.configure("float32", "c")
    assert first_loss == pytest.approx(neg_log_joint, rel=1e-4)
    rho_map = np.log(np.expm1(fit_advi.MAP_SIGMA))
    for key in before:
        if key.startswith("rho/"):
            np.testing.assert_array_equal(after[key], before[key])
            np.testing.assert_allclose(before[key], rho_map, rtol=1e-5)
        else:
            assert not np.array_equal(after[key], before[key]), key


@pytest.mark.parametrize("rho_lr_scale", [1.0, 2.0])
def test_empirical_bayes_scales_move_as_points_while_the_weights_keep_a_posterior(rho_lr_scale):
    """hyperprior: empirical holds each scale at a point (its sigma never optimized) and fits
    its mean, the type-II maximum-likelihood estimate; the weights' scales grow as usual."""
    from bnn_cli.engine import backend
    from bnn_cli.models.architecture import param_specs
    from bnn_cli.models.priors import point_estimates

    config = config_from_dict(
        {
            "model": {"hidden": [8]},
            "prior": {"kind": "hierarchical", "hyperprior": "empirical", "scale_per": "output"},
            "data": {"train_size": 32, "val_size": 5},
            "inference": {"batch_size": 32, "learning_rate": 1e-2, "rho_lr_scale": rho_lr_scale},
        }
    )
    points = point_estimates(param_specs(config.model), config.prior)
    assert points == (
        "dense1_w_scale_log__", "dense1_b_scale_log__", "out_w_scale_log__", "out_b_scale_log__"
    )  # fmt: skip
    rng = np.random.default_rng(0)
    images, labels = rng.random((32, 28, 28)).astype("float32"), rng.integers(0, 10, 32)
    mode = backend.configure("float32", "jax")
    try:
        model = build_model(config, images, labels)
        assert np.isfinite(model.compile_logp()(model.initial_point()))
        advi = fit_advi.make_advi(model, config.inference, seed=0, points=points)
        before = params.from_approx(advi.approx)
        step = OneStep(advi, config.inference, mode, feeder=lambda: None)
        for i in range(5):
            step(i)
        after = params.from_approx(advi.approx)
    finally:
        backend.configure("float32", "c")
    for name in points:
        np.testing.assert_array_equal(params.rho(after, name), params.rho(before, name))
        assert np.all(np.log1p(np.exp(params.rho(before, name))) < 1e-20)  # a point
        assert not np.allclose(params.mean(after, name), params.mean(before, name))  # fitted
    assert not np.allclose(after["rho/dense1_w_raw"], before["rho/dense1_w_raw"])
