"""The public Python API: open a trained run and use it as in any PyMC workflow.

    from bnn_cli import load_run
    run = load_run("runs/20260101-120000-smoke-1a2b3c")
    run.config.model.hidden          # the typed, resolved configuration
    idata = run.approx.sample(100)   # ArviZ InferenceData of the network's weights
    probs = run.predict(images)      # (draws, images, classes)
    run.members                      # an ensemble's member runs ([] for one fit)

Stable: `load_run` and the documented members of `TrainedRun`. PyMC, PyTensor and JAX are
imported only when `.model`, `.approx` or `.predict` are first used, so `import bnn_cli` and
reading a run's config, status and metrics stay cheap. They live in `bnn_cli.posterior.trained`,
which `bnn predict` is built on too.
"""

from __future__ import annotations

from bnn_cli.posterior.trained import TrainedRun, as_images, load_run

__all__ = ["TrainedRun", "as_images", "load_run"]
