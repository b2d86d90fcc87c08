"""A trained run opened for use from Python: `load_run` -> `TrainedRun` (its config, status,
metrics, approx.npz's parameters, the PyMC model and approximation, the posterior predictive).

Public as `bnn_cli.load_run` and `bnn_cli.api` (see there); `bnn predict` is built on it too,
which is why it lives in posterior/, below both. PyMC, PyTensor and JAX are imported only when
`.model`, `.approx` or `.predict` are first used, so opening a run and reading its config,
status and metrics stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bnn_cli import runs
from bnn_cli.config import Config
from bnn_cli.errors import RunError
from bnn_cli.posterior import params
from bnn_cli.runs import ensemble, files


def load_run(path: str | Path, allow_incomplete: bool = False) -> TrainedRun:
    """Open the run directory `path` and return a `TrainedRun`.

    Raises `bnn_cli.errors.RunError` when the directory is missing, is not a run, or the run is
    not `complete` (unless `allow_incomplete`: then an interrupted run's saved parameters are
    used; for an ensemble, the complete members). The parameters in approx.npz are checked
    against the config on first use.
    """
    if ensemble.is_ensemble(Path(path)):
        chosen = ensemble.usable_members(Path(path), allow_incomplete, console=None)
        run = runs.open_run(Path(path), allow_incomplete=True)
        members = [load_run(member.run_dir) for member in chosen if member.run_dir]
        return TrainedRun(run.path, runs.run_config(run), run.status, members)
    run = runs.open_run(Path(path), allow_incomplete=allow_incomplete)
    return TrainedRun(run.path, runs.run_config(run), run.status)


class TrainedRun:
    """A run directory opened for use from Python; get one from `load_run`."""

    def __init__(
        self,
        path: Path,
        config: Config,
        status: dict[str, Any],
        members: list[TrainedRun] | None = None,
    ) -> None:
        self.path = Path(path)  #: the run directory
        self.config = config  #: `bnn_cli.config.Config`, the run's resolved configuration
        self.status = status  #: status.json as a dict (`state`, `iterations_done`, ...)
        #: an ensemble's (complete) member runs, each a `TrainedRun`; [] for one fit
        self.members = list(members or [])

    def _single(self, what: str) -> None:
        if self.members:
            raise RunError(
                f"'{self.path.name}' is an ensemble of {len(self.members)} fits with no single "
                f"{what}: use run.members[i].{what}"
            )

    def __repr__(self) -> str:
        return f"TrainedRun('{self.path}', state={self.status.get('state')!r})"

    @property
    def metrics(self) -> dict[str, Any] | None:
        """metrics.json of the last `bnn evaluate` as a dict, or None if never evaluated."""
        return files.read_metrics(self.path)

    @cached_property
    def params(self) -> dict[str, np.ndarray]:
        """The fitted mean-field parameters, `mu/<name>` and `rho/<name>` arrays (PyMC's
        softplus-parametrised scale, in the unconstrained space), checked against the config."""
        self._single("params")

        return params.load(self.path, self.config)

    def prior_scales(self, draws: int = 100) -> dict[str, np.ndarray] | None:
        """Posterior draws of each layer's learned prior scale, `<tensor>_scale` -> (draws,
        *scale shape) (one per tensor, input or output unit, as `prior.scale_per` says), the
        draws the report's prior-scale plot shows; None for a fixed prior. Under the collapsed
        hyperprior they come from the inverse-gamma posterior of each group's variance."""
        self._single("prior_scales")
        return params.prior_scale_draws(self.config, self.params, draws)

    @cached_property
    def _compile_mode(self) -> str | None:
        """Sets PyTensor's floatX for this run; the compile mode of its backend."""
        from bnn_cli.engine import backend  # lazy: imports PyTensor

        return backend.configure(self.config.inference.floatX, self.config.inference.backend)

    @cached_property
    def model(self) -> Any:
        """The run's `pm.Model`, rebuilt from the config: the same variables, priors and
        likelihood as in training. The minibatch containers `x_batch` / `y_batch` hold zeros
        (set them with `pm.set_data` to evaluate the likelihood on images of your own)."""
        self._single("model")
        self._compile_mode  # noqa: B018 (floatX must be set before the model is built)
        from bnn_cli.models.build import build_model  # lazy: imports PyMC, PyTensor

        batch = self.config.inference.batch_size
        images = np.zeros((batch, 28, 28), dtype=np.float32)
        labels = np.zeros(self.config.data.train_size, dtype=np.int64)  # sets total_size
        return build_model(self.config, images, labels)

    @cached_property
    def approx(self) -> Any:
        """PyMC's mean-field approximation (`pymc.variational.approximations.MeanField`) of
        `.model` with the saved parameters restored: `run.approx.sample(100)` returns an ArviZ
        `InferenceData` of 100 posterior draws of every weight and bias tensor."""
        self._single("approx")
        from bnn_cli.fit.advi import make_advi  # lazy: imports PyMC, PyTensor

        approx = make_advi(self.model, self.config.inference, self.config.seed).approx
        params.to_approx(approx, self.params)
        return approx

    def predict(
        self, images: np.ndarray, draws: int | None = None, seed: int | None = None
    ) -> np.ndarray:
        """Posterior predictive class probabilities of `images`, a float32 array of shape
        (draws, images, classes); each row sums to 1.

        `images`: (28, 28) or (n, 28, 28) in MNIST's format, a white digit on black, floats in
        [0, 1] or uint8 0-255 (`bnn_cli.data.images.read_images` makes files into this). `draws`:
        posterior draws (default: the config's `evaluate.draws`); `seed`: the draws' seed
        (default: the run's seed, as `bnn evaluate` uses). An ensemble's predictive is the
        equal mixture of its members': the draws split among them, each with its own seed (or
        `seed` + its index), as in `bnn evaluate`.
        """
        pixels = as_images(images)
        from bnn_cli.posterior.predictive import mixture  # PyTensor: on first use

        total = self.config.draws(draws)
        if not self.members:
            own = self.config.seed if seed is None else seed
            sources = [(self.params, total, own)]
        else:
            # One compiled network for all members: they share the architecture.
            counts = ensemble.split_draws(total, len(self.members))
            sources = [
                (member.params, count, member.config.seed if seed is None else seed + i)
                for i, (member, count) in enumerate(zip(self.members, counts, strict=True))
            ]
        return mixture(
            self._predict_fn,
            sources,
            self.config.model,
            pixels,
            self.config.evaluate.chunk_size,
        )

    @cached_property
    def _predict_fn(self) -> Callable[..., Any]:
        mode = self._compile_mode
        from bnn_cli.posterior.predictive import compile_predict  # lazy: imports PyTensor

        return compile_predict(self.config.model, mode)


def as_images(images: np.ndarray) -> np.ndarray:
    """float32 (n, 28, 28) in [0, 1] from one image or a stack, uint8 or float."""
    array = np.asarray(images)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise ValueError(f"images must have shape (28, 28) or (n, 28, 28), got {array.shape}")
    if array.dtype == np.uint8:
        return (array / 255.0).astype(np.float32)
    return array.astype(np.float32)
