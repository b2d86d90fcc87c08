"""The gradient noise of each likelihood estimator, per tensor, on one fixed minibatch.

usage: python bench/gradient_variance.py RUN_DIR [--draws 100] [--data-dir DIR]

The run's config and fitted parameters, its first training minibatch of real images, and the
loss's gradient with respect to the means and to rho drawn `draws` times under the shared
weight draw (PyMC's) and under per-image noise (`inference.gradient: local`), both with the
closed-form KL, so that only the likelihood's noise differs. Prints, per tensor, the mean
variance of each gradient entry under each estimator and their ratio (local / shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gradient_draws(config, arrays, images, labels, draws: int) -> dict[str, np.ndarray]:
    """{f"{kind}/{tensor}": (draws, size)} gradients of the loss under `config`'s estimator."""
    import pymc as pm
    import pytensor

    from bnn_cli.fit import advi
    from bnn_cli.fit.objective import bound_of
    from bnn_cli.models.build import build_model
    from bnn_cli.posterior import params

    model = build_model(config, images, labels)
    fit = advi.make_advi(model, config.inference, config.seed, (), bound_of(config))
    params.to_approx(fit.approx, arrays)
    (group,) = fit.approx.groups
    loss = fit.approx.set_size_and_deterministic(fit.objective.op.apply(None), 1, 0)
    shared = [group.shared_params["mu"], group.shared_params["rho"]]
    grads = pytensor.grad(loss, shared)
    fn = pm.pytensorf.compile([], grads)
    samples = [fn() for _ in range(draws)]
    out = {}
    for name, where, *_ in group.ordering.values():
        for i, kind in enumerate(("mu", "rho")):
            out[f"{kind}/{name}"] = np.stack([s[i][where] for s in samples])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()

    from bnn_cli.config import load_config
    from bnn_cli.data.datasets import load_splits
    from bnn_cli.engine import backend
    from bnn_cli.posterior import params

    config = load_config(args.run_dir / "config.yaml")
    inference = dataclasses.replace(config.inference, kl="analytic")
    backend.configure(inference.floatX, "c")
    arrays = params.load(args.run_dir, config)
    data = config.data
    splits = load_splits(data.dataset, args.data_dir, data.train_size, data.val_size)
    batch = inference.batch_size
    images, labels = splits.x_train[:batch], splits.y_train
    rows = {}
    for gradient in ("shared", "local"):
        estimator = dataclasses.replace(inference, gradient=gradient)
        run_config = dataclasses.replace(config, inference=estimator)
        draws = gradient_draws(run_config, arrays, images, labels, args.draws)
        rows[gradient] = {key: float(value.var(0).mean()) for key, value in draws.items()}
    print("| tensor | shared draw: mean variance | per-image noise | ratio |")
    print("|---|---|---|---|")
    for key in rows["shared"]:
        shared, local = rows["shared"][key], rows["local"][key]
        print(f"| {key} | {shared:.3g} | {local:.3g} | {local / shared:.3f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
