"""The public Python API on a tiny real run: what `load_run` gives, PyMC's own approximation
restored, predictions that agree with `bnn evaluate`'s, and the README's example as written."""

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bnn_cli import load_run
from bnn_cli.api import TrainedRun
from bnn_cli.errors import RunError
from bnn_cli.posterior import params
from tests.conftest import REAL_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def run(tiny_run) -> TrainedRun:
    return load_run(tiny_run)


@pytest.fixture(scope="module")
def test_digits():
    from bnn_cli.data.datasets import load_splits

    splits = load_splits("mnist", REAL_DATA_DIR, 10000, 1000)
    return splits.x_test[:200], splits.y_test[:200]


def test_import_is_cheap():
    code = "import sys, bnn_cli; from bnn_cli import load_run; print('pymc' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_config_status_and_metrics(run, tiny_run):
    assert run.path == tiny_run
    assert run.config.model.hidden == (32,) and run.config.inference.iterations == 100
    assert run.status["state"] == "complete" and run.status["iterations_done"] == 100
    assert 0.5 < run.metrics["accuracy"] <= 1.0
    assert "TrainedRun(" in repr(run)


@pytest.mark.slow
def test_model_is_the_training_model(run):
    import pymc as pm

    assert isinstance(run.model, pm.Model)
    assert [rv.name for rv in run.model.free_RVs] == ["dense1_w", "dense1_b", "out_w", "out_b"]
    assert run.model["x_batch"].get_value().shape == (500, 28, 28)
    (obs,) = run.model.observed_RVs
    assert obs.name == "obs"


@pytest.mark.slow
def test_approx_holds_the_saved_parameters_and_samples_inference_data(run, tiny_run):
    import arviz as az

    restored = params.from_approx(run.approx)
    with np.load(tiny_run / "approx.npz") as saved:
        assert sorted(restored) == sorted(saved.files)
        for key in saved.files:
            np.testing.assert_allclose(restored[key], saved[key], rtol=1e-6)
    idata = run.approx.sample(30, random_seed=1)
    assert isinstance(idata, az.InferenceData)
    draws = idata.posterior["out_w"]
    assert draws.shape == (1, 30, 32, 10)
    # the draws scatter around the saved means by the saved scales
    mean = draws.mean(dim=("chain", "draw")).values
    sd = np.log1p(np.exp(restored["rho/out_w"]))
    assert np.mean(np.abs(mean - restored["mu/out_w"]) < 4 * sd / np.sqrt(30)) > 0.95


@pytest.mark.slow
def test_predict_matches_evaluate(run, test_digits):
    from rich.console import Console

    from bnn_cli.posterior.evaluate import PosteriorPredictive, Source

    images, labels = test_digits
    probs = run.predict(images, draws=5)
    assert probs.shape == (5, 200, 10)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-5)
    quiet = Console(file=io.StringIO())
    source = Source("", run.config, run.params, 5)
    chunk = run.config.evaluate.chunk_size
    expected = PosteriorPredictive(run.config.model, [source], run._compile_mode, quiet, chunk)(
        images
    )
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    assert (probs.mean(axis=0).argmax(axis=1) == labels).mean() > 0.7
    as_uint8 = run.predict(np.round(images[:3] * 255).astype(np.uint8), draws=2)
    np.testing.assert_allclose(as_uint8, run.predict(images[:3], draws=2), atol=1e-3)
    assert run.predict(images[0], draws=3).shape == (3, 1, 10)
    assert not np.allclose(run.predict(images[:4], draws=2, seed=9), probs[:2, :4])


def test_load_run_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(RunError, match="not found"):
        load_run(tmp_path / "missing")
    with pytest.raises(RunError, match="has no status.json: not a bnn run directory"):
        load_run(tmp_path)


def test_predict_refuses_images_of_the_wrong_shape():
    from bnn_cli.api import as_images

    with pytest.raises(ValueError, match=r"shape \(28, 28\) or \(n, 28, 28\), got \(2, 32, 32\)"):
        as_images(np.zeros((2, 32, 32)))


@pytest.mark.slow
def test_readme_example_runs_as_written(tiny_run, test_digits, tmp_path):
    images, labels = test_digits
    (tmp_path / "runs").mkdir()
    os.symlink(tiny_run, tmp_path / "runs" / tiny_run.name)
    Image.fromarray(np.round(images[0] * 255).astype(np.uint8)).save(tmp_path / "digit.png")
    output = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(output):
            exec(compile(readme_python_example(), "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    lines = output.getvalue().splitlines()
    assert lines[0].startswith("complete (32,) 0.")
    assert float(lines[1]) > 0
    assert "dense1_w" in lines[2]
    assert lines[3] == f"[{labels[0]}] (50, 1, 10)"
