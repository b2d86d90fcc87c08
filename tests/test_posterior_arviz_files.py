"""predictive.nc: what it holds, that ArviZ opens it as it is, and `bnn evaluate
--save-predictive` on a real run (and nothing written without the flag)."""

import numpy as np
import pytest

from bnn_cli.posterior.arviz_files import write_predictive
from tests.conftest import REAL_DATA_DIR


def test_written_file_opens_with_arviz(tmp_path):
    import arviz as az

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=(4, 6)).astype(np.float32)
    labels = np.array([3, 1, 4, 1, 5, 9])
    scales = {"dense1_w_scale": rng.random(4), "out_b_scale": rng.random(4)}
    path = write_predictive(tmp_path, probs, labels, "val", "fashion-mnist", scales)
    assert path == tmp_path / "predictive.nc"
    assert [p.name for p in tmp_path.iterdir()] == ["predictive.nc"]  # no scratch files left
    idata = az.from_netcdf(path)
    assert set(idata.groups()) == {"posterior", "predictions", "predictions_constant_data"}
    assert idata.predictions["probs"].dims == ("chain", "draw", "image", "class")
    np.testing.assert_array_equal(idata.predictions["probs"].values[0], probs)
    np.testing.assert_array_equal(idata.predictions_constant_data["label"].values, labels)
    np.testing.assert_array_equal(idata.predictions["image"].values, np.arange(6))
    np.testing.assert_array_equal(idata.posterior["out_b_scale"].values[0], scales["out_b_scale"])
    assert idata.predictions.attrs["split"] == "val"
    assert idata.predictions.attrs["dataset"] == "fashion-mnist"


def test_a_fixed_prior_run_has_no_posterior_group(tmp_path):
    import arviz as az

    probs = np.full((2, 3, 10), 0.1, dtype=np.float32)
    idata = az.from_netcdf(write_predictive(tmp_path, probs, np.zeros(3, int), "test", "mnist"))
    assert set(idata.groups()) == {"predictions", "predictions_constant_data"}


@pytest.mark.slow
def test_evaluate_save_predictive_on_a_real_run(own_tiny_run, bnn_here):
    import arviz as az

    from bnn_cli.data.datasets import load_splits

    common = (own_tiny_run, "--draws", "3", "--data-dir", REAL_DATA_DIR)
    result = bnn_here("evaluate", *common, "--split", "val", "--save-predictive")
    assert result.returncode == 0, result.stderr
    idata = az.from_netcdf(own_tiny_run / "predictive.nc")
    assert idata.predictions["probs"].shape == (1, 3, 1000, 10)
    labels = load_splits("mnist", REAL_DATA_DIR, 10000, 1000).y_val
    np.testing.assert_array_equal(idata.predictions_constant_data["label"].values, labels)
    np.testing.assert_allclose(idata.predictions["probs"].sum("class").values, 1.0, rtol=1e-5)
    assert "posterior" not in idata.groups()  # a fixed prior: no scales
    (own_tiny_run / "predictive.nc").unlink()
    again = bnn_here("evaluate", *common)
    assert again.returncode == 0, again.stderr
    assert not (own_tiny_run / "predictive.nc").exists()
