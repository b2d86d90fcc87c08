"""`bnn evaluate`: rebuild a run's network, restore its approximation, draw the posterior
predictive on the test (or validation) images, and write the reports."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import MofNCompleteColumn, TimeRemainingColumn

from bnn_cli import runs
from bnn_cli.config import Config
from bnn_cli.console import progress_bar
from bnn_cli.errors import ConfigError
from bnn_cli.posterior import params, threshold

logger = logging.getLogger(__name__)


def evaluate_run(
    run_dir: Path,
    draws: int | None,
    split: str,
    data_dir: str | None,
    allow_incomplete: bool,
    console: Console,
    ood: Sequence[str] | None = None,
    save_predictive: bool = False,
    shift: Sequence[str] | None = None,
) -> dict:
    """Evaluate a run in place; returns the metrics written to metrics.json. `ood` names the
    out-of-distribution sets to check (None: the config's `evaluate.ood`), `shift` the dataset
    shifts (None: the config's `evaluate.shift`; `rotate`: the test images rotated). With
    `save_predictive`, also writes predictive.nc (see `bnn_cli.posterior.arviz_files`)."""
    run = runs.open_run(Path(run_dir), allow_incomplete=allow_incomplete)
    config = runs.run_config(run)
    data_dir = runs.run_data_dir(run.path, data_dir)
    arrays = params.load(run.path, config)
    ood_names = ood_sets_for(config, ood)
    shift_names = shifts_for(config, shift)
    from bnn_cli.fit import backend

    mode = backend.configure(config.inference.floatX, config.inference.backend)
    from bnn_cli.data.datasets import load_ood_images, load_splits

    splits = load_splits(
        config.data.dataset, data_dir, config.data.train_size, config.data.val_size
    )
    images, labels = (
        (splits.x_test, splits.y_test) if split == "test" else (splits.x_val, splits.y_val)
    )
    # Every OOD set is read before any work: a missing one fails at once, with nothing written.
    ood_images = {name: load_ood_images(name, data_dir, split, len(images)) for name in ood_names}
    n_draws = config.draws(draws)
    predict = PosteriorPredictive(config, arrays, n_draws, mode, console)
    probs = predict(images)
    # `bnn predict`'s threshold, so that a copied run needs no dataset; saved once the report
    # is in place, so that an evaluation that fails leaves the run as it was.
    val_probs = probs if split == "val" else None
    if split != "val" and len(splits.y_val):
        val_probs = predict(splits.x_val, "val")
    from bnn_cli.report.fit_report import OodSet

    ood_sets = {name: OodSet(x, predict(x, name)) for name, x in ood_images.items()}
    shift_rows = {name: shift_curve(name, predict, images, labels) for name in shift_names}
    scale_draws = prior_scale_draws(config, arrays, n_draws)
    if save_predictive:
        from bnn_cli.posterior.arviz_files import write_predictive

        write_predictive(run.path, probs, labels, split, config.data.dataset, scale_draws)
    from bnn_cli.report.render import write_report

    result = write_report(
        run.path,
        probs,
        labels,
        images,
        split=split,
        config=config.to_dict(),
        status=run.status,
        scale_draws=scale_draws,
        arrays=arrays,
        ood=ood_sets,
        shift=shift_rows,
        console=console,
    )
    if val_probs is not None:
        threshold.save(run.path, n_draws, threshold.of_probabilities(val_probs))
    return result


def ood_sets_for(config: Config, requested: Sequence[str] | None) -> list[str]:
    """The OOD sets to check: those asked for on the command line, else the config's; each
    must be a known dataset other than the one the network was trained on."""
    from bnn_cli.data.datasets import get_spec

    names = list(dict.fromkeys(requested if requested is not None else config.evaluate.ood))
    for name in names:
        get_spec(name)
        if name == config.data.dataset:
            raise ConfigError(
                f"--ood {name}: the run was trained on {name}; out-of-distribution data "
                "must come from another dataset"
            )
    return names


def shifts_for(config: Config, requested: Sequence[str] | None) -> list[str]:
    """The dataset shifts to run: those asked for on the command line, else the config's."""
    from bnn_cli.data.shift import SHIFTS

    names = list(dict.fromkeys(requested if requested is not None else config.evaluate.shift))
    for name in names:
        if name not in SHIFTS:
            raise ConfigError(f"--shift {name}: unknown shift; expected one of {', '.join(SHIFTS)}")
    return names


def shift_curve(name: str, predict, images: np.ndarray, labels: np.ndarray) -> list[dict]:
    """`metrics.shift_row` at each level of shift `name` (each rotation angle)."""
    from bnn_cli.data.shift import shifted
    from bnn_cli.report.metrics import shift_row

    return [
        shift_row(level, predict(moved, f"{name} {level:g}"), labels)
        for level, moved in shifted(name, images)
    ]


class PosteriorPredictive:
    """The run's predictive, compiled once: `self(images, label)` -> (draws, n, classes), with
    a progress bar. The same seed gives the same weight draws on every call."""

    def __init__(self, config: Config, arrays: dict, draws: int, mode, console: Console):
        from bnn_cli.posterior.predictive import compile_predict

        self.config, self.arrays, self.draws, self.console = config, arrays, draws, console
        self.fn = compile_predict(config.model, mode)

    def __call__(self, images: np.ndarray, label: str = "") -> np.ndarray:
        from bnn_cli.posterior.predictive import predictive

        title = f"posterior predictive{' ' + label if label else ''}"
        columns = (MofNCompleteColumn(), TimeRemainingColumn())
        with progress_bar(self.console, title, *columns) as progress:
            task = progress.add_task("draws", total=self.draws)
            return predictive(
                self.fn,
                self.arrays,
                self.config.model,
                images,
                self.draws,
                self.config.seed,
                chunk_size=self.config.evaluate.chunk_size,
                progress=lambda done: progress.update(task, completed=done),
            )


def prior_scale_draws(
    config: Config, arrays: dict[str, np.ndarray], draws: int
) -> dict[str, np.ndarray] | None:
    """Posterior draws of each layer's prior scales (hierarchical runs), (draws, *scale shape):
    the scales live on the log scale in the approximation (PyMC's log transform of a
    HalfNormal). `load_params` has already checked that each is present with its shape."""
    if config.prior.kind != "hierarchical":
        return None
    from bnn_cli.models.architecture import param_specs
    from bnn_cli.models.priors import scale_names
    from bnn_cli.posterior.predictive import softplus

    rng = np.random.default_rng([config.seed, 3])
    out = {}
    for name, factor in scale_names(param_specs(config.model), config.prior).items():
        mu, rho = arrays[f"mu/{factor.key}"], arrays[f"rho/{factor.key}"]
        noise = rng.standard_normal((draws, *np.shape(mu)))
        out[name] = np.exp(mu + softplus(rho) * noise)
    return out
