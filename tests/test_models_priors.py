"""The priors: a fixed prior sized to each tensor's fan-in, hierarchical scales per tensor,
input or output unit, and the approximation's variable names they imply; each prior fitted a
few iterations on real MNIST, its scales through approx.npz, the API, predictive.nc and the
report."""

import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bnn_cli import load_run
from bnn_cli.config import config_from_dict, load_config
from bnn_cli.models.architecture import param_specs
from bnn_cli.models.build import build_model
from bnn_cli.models.priors import factors, resolve_sd, scale_names, scale_shape
from bnn_cli.posterior import params

ROOT = Path(__file__).resolve().parents[1]


def spec(name):
    config = config_from_dict({"model": {"architecture": "conv", "hidden": [6]}})
    return {s.name: s for s in param_specs(config.model)}[name]


def test_fan_in_sd_is_gain_over_root_fan_in():
    assert resolve_sd("fan_in", 2.0, 400) == pytest.approx(0.1)
    assert resolve_sd(0.5, 2.0, 400) == 0.5


@pytest.mark.parametrize(
    ("name", "per", "shape"),
    [
        ("conv1_w", "tensor", ()),
        ("conv1_w", "input", (5, 5, 1, 1)),
        ("conv1_w", "output", (32,)),
        ("dense1_w", "input", (512, 1)),
        ("dense1_w", "output", (6,)),
        ("dense1_b", "output", ()),  # biases: one scale per tensor
    ],
)
def test_scale_shapes_broadcast_against_their_tensor(name, per, shape):
    tensor = spec(name)
    assert scale_shape(tensor, per) == shape
    np.broadcast_shapes(shape, tensor.shape)  # raises if they do not broadcast


def test_factors_name_the_saved_variables():
    hier = config_from_dict({"prior": {"kind": "hierarchical", "scale_per": "output"}}).prior
    fixed = config_from_dict({"prior": {"sd": "fan_in", "gain": 2}}).prior
    w = spec("dense1_w")
    assert [(f.key, f.shape, f.log) for f in factors(w, hier)] == [
        ("dense1_w_scale_log__", (6,), True),
        ("dense1_w_raw", (512, 6), False),
    ]
    assert [(f.key, f.shape) for f in factors(w, fixed)] == [("dense1_w", (512, 6))]


@pytest.mark.parametrize(
    "prior",
    [
        {"kind": "fixed", "sd": "fan_in", "gain": 2.0},
        {"kind": "hierarchical", "scale_per": "input", "hyper_sd": "fan_in"},
        {"kind": "hierarchical", "scale_per": "output"},
        {"kind": "hierarchical", "scale_per": "output", "hyperprior": "halfcauchy"},
    ],
)
def test_each_prior_builds_a_model_whose_variables_match_its_factors(prior):
    config = config_from_dict(
        {
            "model": {"hidden": [8]},
            "prior": prior,
            "data": {"train_size": 20, "val_size": 5},
            "inference": {"batch_size": 5},
        }
    )
    rng = np.random.default_rng(0)
    model = build_model(config, rng.random((20, 28, 28)), rng.integers(0, 10, 20))
    point = model.initial_point()
    expected = {f.key: f.shape for s in param_specs(config.model) for f in factors(s, config.prior)}
    assert {k: v.shape for k, v in point.items()} == expected
    assert math.isfinite(model.compile_logp()(point))
    if prior.get("sd") == "fan_in":  # N(0, 2/sqrt(784)) on the first layer's weights
        logp = model.compile_logp(vars=[model["dense1_w"]], sum=False)
        zero = {**point, "dense1_w": np.zeros((784, 8), "float32")}
        sd = 2 / 28
        assert logp(zero)[0].sum() == pytest.approx(784 * 8 * -np.log(sd * np.sqrt(2 * np.pi)))
    if prior.get("kind") == "hierarchical":  # the scales' own prior, HalfNormal or HalfCauchy
        from scipy import stats

        logp = model.compile_logp(vars=[model["dense1_w_scale"]], jacobian=False)
        scales = np.exp(point["dense1_w_scale_log__"])
        law = stats.halfcauchy if prior.get("hyperprior") == "halfcauchy" else stats.halfnorm
        hyper = 1 / 28 if prior.get("hyper_sd") == "fan_in" else 1.0  # 784 inputs
        assert logp(point) == pytest.approx(law(scale=hyper).logpdf(scales).sum(), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("per", "hyperprior"),
    [("input", "halfnormal"), ("output", "halfnormal"), ("output", "empirical")],
)
def test_per_unit_scales_go_through_the_whole_pipeline(real_data_dir, tmp_path, per, hyperprior):
    """A few iterations on real MNIST: the scales land in approx.npz with their shapes, the
    API's approximation samples them, predictive.nc holds their draws, the report plots them."""
    import arviz as az

    from bnn_cli.posterior.evaluate import evaluate_run
    from bnn_cli.train import train

    config = load_config(
        ROOT / "configs" / "smoke.yaml",
        [
            "inference.iterations=20",
            "inference.eval_every=10",
            "model.hidden=[16]",
            "data.train_size=2000",
            "data.val_size=500",
            "evaluate.draws=4",
            "prior.kind=hierarchical",
            f"prior.scale_per={per}",
            f"prior.hyperprior={hyperprior}",
        ],
    )
    quiet = Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115
    run_dir = train(config, tmp_path, str(real_data_dir), quiet)
    evaluate_run(run_dir, None, "test", str(real_data_dir), False, quiet, save_predictive=True)
    expected = scale_names(param_specs(config.model), config.prior)
    with np.load(run_dir / "approx.npz") as saved:
        for factor in expected.values():
            assert saved[params.key(params.MU, factor.key)].shape == factor.shape
    run = load_run(run_dir)
    sample = run.approx.sample(3, random_seed=0)
    assert sample.posterior["dense1_w_scale"].shape[2:] == expected["dense1_w_scale"].shape
    idata = az.from_netcdf(run_dir / "predictive.nc")
    assert idata.posterior["dense1_w_scale"].shape[:2] == (1, 4)
    assert (run_dir / "plots" / "prior_scales.png").stat().st_size > 1000
    report = (run_dir / "report.md").read_text()
    assert f"N(0, s) per {per} unit" in report
    if hyperprior == "empirical":  # the scales are points: every draw the same, and said so
        assert "empirical Bayes" in report
        draws = idata.posterior["dense1_w_scale"].values
        np.testing.assert_allclose(draws, np.broadcast_to(draws[:, :1], draws.shape), rtol=1e-6)
