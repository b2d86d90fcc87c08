"""The ADVI loop: divergence, checkpoint parameters by name, restore."""

import dataclasses

import numpy as np
import pytest

from bnn_cli import inference
from bnn_cli.config import InferenceConfig, config_from_dict
from bnn_cli.errors import FitFailed
from bnn_cli.models.build import build_model


def test_nan_loss_stops_the_fit_with_advice():
    losses = iter([3.0, 2.0, float("nan")])
    settings = InferenceConfig(iterations=10, eval_every=5, learning_rate=0.5)
    with pytest.raises(
        FitFailed,
        match=r"loss became nan at iteration 3.*learning_rate \(now "
        r"0.5\).*start_sigma",
    ):
        inference.run_fit(lambda: next(losses), settings, inference.FitState(), lambda s: None)


def test_eval_runs_every_eval_every_and_at_the_end():
    seen = []
    settings = InferenceConfig(iterations=7, eval_every=3)
    state = inference.run_fit(
        lambda: 1.0, settings, inference.FitState(), lambda s: seen.append(s.iteration)
    )
    assert seen == [3, 6, 7] and state.iteration == 7 and len(state.losses) == 7


def test_parameters_round_trip_by_variable_name():
    config = config_from_dict(
        {
            "model": {"hidden": [5]},
            "prior": {"kind": "hierarchical"},
            "data": {"train_size": 20, "val_size": 5},
            "inference": {"batch_size": 5},
        }
    )
    rng = np.random.default_rng(0)
    model = build_model(config, rng.random((20, 28, 28)), rng.integers(0, 10, 20))
    approx = inference.make_advi(model, config.inference, seed=0).approx
    saved = inference.mean_field_params(approx)
    assert saved["mu/dense1_w_raw"].shape == (784, 5)
    assert "rho/dense1_w_scale_log__" in saved
    np.testing.assert_allclose(np.logaddexp(0, saved["rho/out_b_raw"]), 1e-3, rtol=1e-3)
    changed = {k: v + 1 for k, v in saved.items()}
    fresh = inference.make_advi(model, config.inference, seed=1).approx
    inference.load_mean_field_params(fresh, changed)
    for key, value in inference.mean_field_params(fresh).items():
        np.testing.assert_allclose(value, changed[key], rtol=1e-6)
    with pytest.raises(ValueError, match="has shape"):
        inference.load_mean_field_params(fresh, {**changed, "mu/out_b_raw": np.zeros(3)})


def test_cosine_schedule_decays_to_zero_and_constant_stays():
    cosine = InferenceConfig(iterations=100, learning_rate=0.01, lr_schedule="cosine")
    assert inference.learning_rate_at(cosine, 0) == pytest.approx(0.01)
    assert inference.learning_rate_at(cosine, 50) == pytest.approx(0.005)
    assert inference.learning_rate_at(cosine, 100) == pytest.approx(0.0, abs=1e-12)
    constant = InferenceConfig(iterations=100, learning_rate=0.01, lr_schedule="constant")
    assert inference.learning_rate_at(constant, 99) == 0.01


@pytest.mark.slow
def test_rho_lr_scale_speeds_up_the_scales_only():
    """Adam moves each parameter by about one step size while its gradient keeps its sign: with
    rho_lr_scale 10 the scales move about ten times as far, the means as far as before."""
    from bnn_cli import backend

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
        advi = inference.make_advi(build_model(config, images, labels), settings, seed=0)
        before = inference.mean_field_params(advi.approx)
        step = inference.compile_step(advi, settings, mode, feed=lambda: None)
        for _ in range(5):
            step()
        after = inference.mean_field_params(advi.approx)
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
    assert inference.rho_step_sum(settings, 90, 100) == pytest.approx(0.1)
    scaled = dataclasses.replace(settings, rho_lr_scale=3.0)
    assert inference.rho_step_sum(scaled, 90, 100) == pytest.approx(0.3)
