"""The same PyMC step function compiled by PyTensor's C, Numba and JAX backends."""

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bnn_cli.config import load_config
from bnn_cli.engine import backend
from bnn_cli.train import train

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "inference.iterations=30",
    "inference.eval_every=30",
    "model.hidden=[16]",
    "data.train_size=2000",
    "data.val_size=500",
]


def test_openblas_flags_point_at_the_wheel():
    flags = backend.openblas_ldflags()
    assert flags is not None, "scipy-openblas32 is a dependency"
    assert "-lscipy_openblas" in flags and "-Dsgemm_=scipy_sgemm_" in flags


@pytest.mark.slow
@pytest.mark.parametrize("name", ["numba", "jax"])
def test_backends_fit_the_same_model(real_data_dir, tmp_path, name):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (pip install 'bnn[{name}]')")
    quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115
    config = load_config(ROOT / "configs" / "smoke.yaml", [*TINY, f"inference.backend={name}"])
    try:
        run_dir = train(config, tmp_path, str(real_data_dir), quiet)
    finally:
        backend.configure("float32", "c")
    status = (run_dir / "status.json").read_text()
    assert '"complete"' in status
    assert np.all(np.isfinite(np.load(run_dir / "approx.npz")["mu/out_w"]))
    with open(run_dir / "elbo.csv") as handle:
        val = float(list(csv.DictReader(handle))[-1]["val_accuracy"])
    assert val > 0.5  # 30 steps of a 16-unit MLP on real MNIST: well above chance


@pytest.mark.slow
@pytest.mark.parametrize("name, architecture", [("c", "mlp"), ("jax", "mlp"), ("jax", "conv")])
def test_mean_field_noise_is_redrawn_every_step_and_seeded(name, architecture):
    """A step size of ~0 keeps the parameters and the minibatch fixed, so the loss can only
    change through the mean-field draws: they must differ step to step, repeat for the same
    seed and differ for another (PyTensor's JAX backend keeps the random state in a copy)."""
    from bnn_cli.fit.advi import make_advi
    from bnn_cli.fit.steppers import OneStep
    from bnn_cli.models.build import build_model

    config = load_config(
        ROOT / "configs" / "smoke.yaml",
        [
            f"model.architecture={architecture}",
            "model.hidden=[8]",
            "model.filters=[2,2]",
            "inference.learning_rate=1e-30",
            "inference.batch_size=32",
        ],
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(32, 28, 28)).astype("float32")
    labels = rng.integers(0, 10, size=32)

    def losses(seed):
        mode = backend.configure("float32", name)
        model = build_model(config, images, labels)
        step = OneStep(
            make_advi(model, config.inference, seed), config.inference, mode, feeder=lambda: None
        )
        return [float(step(i)[0]) for i in range(3)]

    try:
        first, again, other = losses(0), losses(0), losses(1)
    finally:
        backend.configure("float32", "c")
    assert len(set(first)) == 3
    assert first == again
    assert first != other
