"""approx.npz: the mean-field parameters by variable name, to and from PyMC's approximation."""

import numpy as np
import pytest

from bnn_cli.config import config_from_dict
from bnn_cli.fit.advi import make_advi
from bnn_cli.models.build import build_model
from bnn_cli.posterior import params


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
    approx = make_advi(model, config.inference, seed=0).approx
    saved = params.from_approx(approx)
    assert saved["mu/dense1_w_raw"].shape == (784, 5)
    assert "rho/dense1_w_scale_log__" in saved
    np.testing.assert_allclose(np.logaddexp(0, saved["rho/out_b_raw"]), 1e-3, rtol=1e-3)
    changed = {k: v + 1 for k, v in saved.items()}
    fresh = make_advi(model, config.inference, seed=1).approx
    params.to_approx(fresh, changed)
    for key, value in params.from_approx(fresh).items():
        np.testing.assert_allclose(value, changed[key], rtol=1e-6)
    with pytest.raises(ValueError, match="has shape"):
        params.to_approx(fresh, {**changed, "mu/out_b_raw": np.zeros(3)})


def test_softplus_is_stable():
    np.testing.assert_allclose(params.softplus(np.array([-800.0, 0.0, 800.0])), [0, np.log(2), 800])


def test_the_layout_names_each_variable_once():
    arrays = {"mu/a": np.zeros(2), "rho/a": np.zeros(2), "mu/b_raw": np.ones(3), "rho/b_raw": 0}
    assert params.tensor_names(arrays) == ["a", "b_raw"]
    assert params.key(params.RHO, "a") == "rho/a"
    mu, sigma = params.mean_and_sd(arrays, "a")
    assert mu.dtype == np.float64 and np.allclose(sigma, np.log(2))
