"""The analytic KL and the collapsed bound (fit/objective.py): checked against PyMC's own Monte
Carlo KL, against the closed forms they reduce to, and through a real fit."""

import math
from pathlib import Path

import numpy as np
import pytensor
import pytest
from rich.console import Console

from bnn_cli.config import PriorConfig, config_from_dict, load_config
from bnn_cli.fit import advi as fit_advi
from bnn_cli.fit import objective
from bnn_cli.models.architecture import ParamSpec, param_specs
from bnn_cli.models.build import build_model
from bnn_cli.models.priors import collapsed_posterior, collapsed_scale_draws, factors
from bnn_cli.posterior import params

ROOT = Path(__file__).resolve().parents[1]


def small_fit(prior: dict, kl: str = "analytic", start_sigma: float = 0.05):
    config = config_from_dict(
        {
            "model": {"hidden": [4]},
            "prior": prior,
            "data": {"train_size": 16, "val_size": 5},
            "inference": {"batch_size": 16, "kl": kl, "start_sigma": start_sigma},
        }
    )
    rng = np.random.default_rng(0)
    images, labels = rng.random((16, 28, 28)).astype("float32"), rng.integers(0, 10, 16)
    model = build_model(config, images, labels)
    fit = fit_advi.make_advi(model, config.inference, 0, (), objective.bound_of(config))
    return config, fit


def monte_carlo_kl(approx, draws: int) -> float:
    """PyMC's own estimate of KL(q || p): the mean of log q - log p over `draws` draws."""
    kl = approx.set_size_and_deterministic(approx.logq - approx.varlogp, draws, 0)
    return float(pytensor.function([], kl)())


def analytic_kl(approx, alpha=1.0, collapsed=None, repeats: int = 1) -> float:
    kl = approx.set_size_and_deterministic(objective.kl_term(approx, alpha, collapsed), 1, 0)
    fn = pytensor.function([], kl)
    return float(np.mean([fn() for _ in range(repeats)]))


def test_the_analytic_kl_of_a_fixed_prior_is_pymcs_monte_carlo_estimate_in_the_limit():
    """Means moved off zero and scales of several sizes: the closed form agrees with the mean
    of PyMC's log q - log p over 4,000 draws within its Monte Carlo error."""
    _, fit = small_fit({"kind": "fixed", "sd": "fan_in", "gain": 1.0})
    approx = fit.approx
    (group,) = approx.groups
    rng = np.random.default_rng(1)
    mu = group.shared_params["mu"]
    mu.set_value((rng.standard_normal(mu.get_value().shape) * 0.05).astype("float32"))
    rho = group.shared_params["rho"]
    rho.set_value(rng.uniform(-6, -2, rho.get_value().shape).astype("float32"))
    exact = analytic_kl(approx)
    assert exact > 0
    assert monte_carlo_kl(approx, 4000) == pytest.approx(exact, rel=0.01)


def test_a_hierarchical_prior_keeps_the_scales_sampled_and_the_raw_weights_closed():
    """Raw weights in closed form, the log-scales sampled at the likelihood's draw: averaged
    over draws it is PyMC's whole Monte Carlo KL."""
    _, fit = small_fit({"kind": "hierarchical", "scale_per": "output"}, start_sigma=0.3)
    exact = analytic_kl(fit.approx, repeats=2000)
    assert monte_carlo_kl(fit.approx, 4000) == pytest.approx(exact, rel=0.02)


def test_the_collapsed_mean_weights_the_means_by_alpha():
    """alpha scales the mean's term and adds -log(alpha)/2 per weight; 1 is the plain KL."""
    mu, sigma = np.array([0.3, -0.2]), np.array([0.1, 0.05])
    loc, scale = 0.0, 0.5
    plain = float(objective.gaussian_kl(mu, sigma, loc, scale).eval())
    expected = np.sum(np.log(scale / sigma) + (sigma**2 + mu**2) / (2 * scale**2) - 0.5)
    assert plain == pytest.approx(expected, rel=1e-6)
    collapsed = float(objective.gaussian_kl(mu, sigma, loc, scale, 0.025).eval())
    expected = np.sum(
        np.log(scale / sigma)
        + (sigma**2 + 0.025 * mu**2) / (2 * scale**2)
        - 0.5
        - 0.5 * math.log(0.025)
    )
    assert collapsed == pytest.approx(expected, rel=1e-6)


SPEC = ParamSpec("dense1_w", (6, 3), fan_in=6)


@pytest.mark.parametrize(
    ("per", "groups"), [("tensor", (1, 1)), ("output", (1, 3)), ("input", (6, 1))]
)
def test_the_collapsed_variance_posterior_sums_over_each_group(per, groups):
    prior = PriorConfig(kind="hierarchical", hyperprior="collapsed", hyper_sd=0.5, scale_per=per)
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal((6, 3)), rng.uniform(0.1, 0.2, (6, 3))
    shape, rate = collapsed_posterior(SPEC, prior, mu, sigma)
    assert rate.shape == groups
    n = 18 // math.prod(groups)
    assert shape == 1.0 + n / 2
    assert rate.sum() == pytest.approx(math.prod(groups) * 0.25 + np.sum(sigma**2 + mu**2) / 2)
    draws = collapsed_scale_draws(SPEC, prior, mu, sigma, 5, rng)
    assert draws.shape[0] == 5 and np.all(draws > 0)


def test_a_sure_hyperprior_collapses_to_the_fixed_prior_it_is_sure_of():
    """With the inverse-gamma's shape huge the variance is pinned at hyper_sd^2: the collapsed
    KL is the Gaussian KL with the collapsed mean (alpha) at that variance."""
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal((6, 3)) * 0.3, rng.uniform(0.05, 0.2, (6, 3))
    sure = PriorConfig(
        kind="hierarchical", hyperprior="collapsed", hyper_sd=0.5, hyper_shape=1e5, alpha=0.1
    )
    collapsed = float(objective.collapsed_kl(SPEC, sure, mu, sigma).eval())
    fixed = float(objective.gaussian_kl(mu, sigma, 0.0, 0.5, 0.1).eval())
    assert collapsed == pytest.approx(fixed, rel=1e-4)


def test_the_collapsed_kl_is_the_minimum_over_the_variance_with_its_hyperprior():
    """Collapsing is a minimum over q(v): the bound's KL is at most the fixed-variance KL plus
    the hyperprior's cost at any v, and tightest near the posterior's mode."""
    prior = PriorConfig(kind="hierarchical", hyperprior="collapsed", hyper_sd=1.0, hyper_shape=2)
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal((6, 3)) * 0.3, rng.uniform(0.05, 0.2, (6, 3))
    collapsed = float(objective.collapsed_kl(SPEC, prior, mu, sigma).eval())
    from scipy import stats

    def at(v):  # KL at a point v, plus -log p(v) for InvGamma(2, 2 * 1.0)
        return float(objective.gaussian_kl(mu, sigma, 0.0, math.sqrt(v)).eval()) - float(
            stats.invgamma(2, scale=2.0).logpdf(v)
        )

    assert all(collapsed <= at(v) + 1e-6 for v in (0.01, 0.05, 0.1, 0.5, 1.0))


@pytest.mark.parametrize(
    "sets",
    [
        ["prior.sd=fan_in", "prior.alpha=0.05"],
        ["prior.kind=hierarchical", "prior.hyperprior=collapsed", "prior.scale_per=output"],
        ["prior.kind=hierarchical", "prior.scale_per=tensor"],
    ],
    ids=["fixed-alpha", "collapsed-output", "hierarchical-sampled-scales"],
)
def test_an_analytic_fit_goes_through_the_whole_pipeline(real_data_dir, tmp_path, sets):
    """A few iterations on real MNIST: the objective is named in the report and comparison,
    the parameters land in approx.npz and load_run's approximation, predictive.nc is written,
    and a collapsed run reports what it learned of its prior scales."""
    import arviz as az

    from bnn_cli.api import load_run
    from bnn_cli.posterior.evaluate import evaluate_run
    from bnn_cli.train import train

    config = load_config(
        ROOT / "configs" / "smoke.yaml",
        [
            "inference.iterations=20",
            "inference.eval_every=10",
            "inference.kl=analytic",
            "model.hidden=[16]",
            "data.train_size=2000",
            "data.val_size=500",
            "evaluate.draws=4",
            *sets,
        ],
    )
    quiet = Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115
    run_dir = train(config, tmp_path, str(real_data_dir), quiet)
    evaluate_run(run_dir, None, "test", str(real_data_dir), False, quiet, save_predictive=True)
    with np.load(run_dir / "approx.npz") as saved:
        for spec in param_specs(config.model):
            for factor in factors(spec, config.prior):
                assert saved[params.key(params.MU, factor.key)].shape == factor.shape
    run = load_run(run_dir)
    assert run.approx.sample(2, random_seed=0).posterior["dense1_w"].shape[2:] == (784, 16)
    idata = az.from_netcdf(run_dir / "predictive.nc")
    report = (run_dir / "report.md").read_text()
    assert "analytic KL" in report
    if "prior.hyperprior=collapsed" in sets:
        assert "collapsed bound" in report
        scales = run.prior_scales(7)
        assert scales["dense1_w_scale"].shape == (7, 16) and np.all(scales["dense1_w_scale"] > 0)
        assert idata.posterior["dense1_w_scale"].shape == (1, 4, 16)
        assert (run_dir / "plots" / "prior_scales.png").stat().st_size > 1000
    if "prior.alpha=0.05" in sets:
        assert "collapsed bound (mean, alpha 0.05)" in report
        assert run.prior_scales() is None


def test_the_same_seed_gives_the_same_parameters_with_the_analytic_kl(real_data_dir, tmp_path):
    from bnn_cli.train import train

    config = load_config(
        ROOT / "configs" / "smoke.yaml",
        [
            "inference.iterations=10",
            "inference.eval_every=10",
            "inference.kl=analytic",
            "prior.kind=hierarchical",
            "prior.hyperprior=collapsed",
            "prior.alpha=0.1",
            "model.hidden=[8]",
            "data.train_size=1000",
            "data.val_size=100",
        ],
    )
    quiet = Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115
    first = train(config, tmp_path / "a", str(real_data_dir), quiet)
    second = train(config, tmp_path / "b", str(real_data_dir), quiet)
    with np.load(first / "approx.npz") as a, np.load(second / "approx.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def local_and_shared(hidden: list[int], draws: int, what):
    """`what(fit)` -> a graph, evaluated `draws` times (fresh noise each) for the shared-draw
    and the per-image estimator on the same model, parameters and minibatch."""
    import pymc as pm

    results = {}
    for gradient in ("shared", "local"):
        config = config_from_dict(
            {
                "model": {"hidden": hidden},
                "prior": {"sd": "fan_in"},
                "data": {"train_size": 64, "val_size": 5},
                "inference": {"batch_size": 64, "kl": "analytic", "gradient": gradient},
            }
        )
        rng = np.random.default_rng(0)
        images, labels = rng.random((64, 28, 28)).astype("float32"), rng.integers(0, 10, 64)
        model = build_model(config, images, labels)
        fit = fit_advi.make_advi(model, config.inference, 0, (), objective.bound_of(config))
        (group,) = fit.approx.groups
        rho = group.shared_params["rho"]
        rho.set_value(np.full(rho.get_value().shape, np.log(np.expm1(0.05)), "float32"))
        graph = fit.approx.set_size_and_deterministic(what(fit), 1, 0)
        fn = pm.pytensorf.compile([], graph)
        results[gradient] = [fn() for _ in range(draws)]
    return results


def test_per_image_noise_keeps_each_images_predictive_moments():
    """Each image's logits have the same distribution under both estimators (the weights of
    different layers are independent under mean-field, so drawing each layer's outputs from
    their marginal given its inputs keeps the image's joint law): same mean and variance."""

    def logits(fit):
        if fit.objective.op.local is None:
            model = fit.approx.model
            (obs,) = model.observed_RVs
            (shared,) = model.replace_rvs_by_values([objective.logits_of(obs)])
            return fit.approx.symbolic_single_sample(shared)
        return objective.local_logits(fit.approx, *fit.objective.op.local)

    draws = local_and_shared([8], 3000, logits)
    shared, local = np.stack(draws["shared"]), np.stack(draws["local"])
    assert shared.shape == local.shape == (3000, 64, 10)
    standard_error = np.sqrt((shared.var(0) + local.var(0)) / len(shared))
    assert np.abs(local.mean(0) - shared.mean(0)).max() < 0.1 * np.abs(shared.mean(0)).max()
    assert np.all(np.abs(local.mean(0) - shared.mean(0)) < 5 * standard_error)
    np.testing.assert_allclose(local.var(0), shared.var(0), rtol=0.2)


def test_per_image_noise_lowers_the_gradient_variance_of_every_weight_tensor():
    """The same minibatch and parameters, 200 gradients of the loss with respect to the means
    under each estimator: the per-image one varies less for every weight tensor."""
    import pytensor

    def gradients(fit):
        (group,) = fit.approx.groups
        grad = pytensor.grad(fit.objective.op.apply(None), group.shared_params["mu"])
        return [grad[group.ordering[name][1]] for name in ("dense1_w", "out_w")]

    draws = local_and_shared([32], 200, gradients)
    for i, name in enumerate(("dense1_w", "out_w")):
        shared = np.stack([d[i] for d in draws["shared"]]).var(0).mean()
        local = np.stack([d[i] for d in draws["local"]]).var(0).mean()
        assert local < shared, (name, local / shared)
