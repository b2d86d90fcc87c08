"""`bnn evaluate`: rebuild a run's network, restore its approximation, draw the posterior
predictive on the test (or validation) images, and write the reports."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import MofNCompleteColumn, TimeRemainingColumn

from bnn_cli import runs
from bnn_cli.config import Config
from bnn_cli.console import progress_bar
from bnn_cli.data.datasets import get_spec, load_ood_images, load_splits
from bnn_cli.data.shift import SHIFTS, shifted
from bnn_cli.errors import ConfigError
from bnn_cli.posterior import params, threshold
from bnn_cli.posterior.arviz_files import write_predictive
from bnn_cli.report import metrics as m
from bnn_cli.report.fit_report import OodSet, ood_results
from bnn_cli.report.metrics import shift_row
from bnn_cli.report.render import write_report
from bnn_cli.runs import ensemble

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
    run_dir = Path(run_dir)
    chosen = None
    if ensemble.is_ensemble(run_dir):  # a missing member is named before anything is loaded
        chosen = ensemble.usable_members(run_dir, allow_incomplete, console)
    run = runs.open_run(run_dir, allow_incomplete=allow_incomplete or chosen is not None)
    config = runs.run_config(run)
    data_dir = runs.run_data_dir(run.path, data_dir)
    sources = fitted_sources(run, config, chosen, config.draws(draws))
    ood_names = ood_sets_for(config, ood)
    shift_names = shifts_for(config, shift)
    from bnn_cli.engine import backend  # lazy: imports PyTensor

    mode = backend.configure(config.inference.floatX, config.inference.backend)

    splits = load_splits(
        config.data.dataset, data_dir, config.data.train_size, config.data.val_size
    )
    images, labels = (
        (splits.x_test, splits.y_test) if split == "test" else (splits.x_val, splits.y_val)
    )
    # Every OOD set is read before any work: a missing one fails at once, with nothing written.
    ood_images = {name: load_ood_images(name, data_dir, split, len(images)) for name in ood_names}
    predict = PosteriorPredictive(config.model, sources, mode, console, config.evaluate.chunk_size)
    n_draws = predict.draws
    probs = predict(images)
    # `bnn predict`'s threshold, so that a copied run needs no dataset; saved once the report
    # is in place, so that an evaluation that fails leaves the run as it was.
    val_probs = probs if split == "val" else None
    if split != "val" and len(splits.y_val):
        val_probs = predict(threshold.sample(splits.x_val), "val threshold")

    ood_sets = {name: OodSet(x, predict(x, name)) for name, x in ood_images.items()}
    shift_rows = {name: shift_curve(name, predict, images, labels) for name in shift_names}
    scale_draws = concat_draws(
        [params.prior_scale_draws(source.config, source.arrays, source.draws) for source in sources]
    )
    member_rows = (
        member_metrics(sources, predict.slices(), probs, labels, ood_sets) if chosen else None
    )
    if save_predictive:
        write_predictive(run.path, probs, labels, split, config.data.dataset, scale_draws)

    result = write_report(
        run.path,
        probs,
        labels,
        images,
        split=split,
        config=config.to_dict(),
        status=run.status,
        scale_draws=scale_draws,
        arrays=None if chosen else sources[0].arrays,  # an ensemble: no one posterior to plot
        ood=ood_sets,
        shift=shift_rows,
        members=member_rows,
        console=console,
    )
    if val_probs is not None:
        threshold.save(run.path, n_draws, threshold.of_probabilities(val_probs))
    return result


def ood_sets_for(config: Config, requested: Sequence[str] | None) -> list[str]:
    """The OOD sets to check: those asked for on the command line, else the config's; each
    must be a known dataset other than the one the network was trained on."""
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
    names = list(dict.fromkeys(requested if requested is not None else config.evaluate.shift))
    for name in names:
        if name not in SHIFTS:
            raise ConfigError(f"--shift {name}: unknown shift; expected one of {', '.join(SHIFTS)}")
    return names


def shift_curve(name: str, predict: Any, images: np.ndarray, labels: np.ndarray) -> list[dict]:
    """`metrics.shift_row` at each level of shift `name` (each rotation angle)."""
    return [
        shift_row(level, predict(moved, f"{name} {level:g}"), labels)
        for level, moved in shifted(name, images)
    ]


@dataclass(frozen=True)
class Source:
    """One fitted approximation to draw from: a run's, or one ensemble member's."""

    label: str  # "" for a plain run, m0, m1, ... for members
    config: Config  # its own seed drives its draws
    arrays: dict
    draws: int


def fitted_sources(run: Any, config: Config, chosen: Any, draws: int) -> list[Source]:
    """What the predictive draws from: the run's approximation, or each chosen member's, with
    the draws split among them (an equal mixture)."""
    if chosen is None:
        return [Source("", config, params.load(run.path, config), draws)]
    counts = ensemble.split_draws(draws, len(chosen))
    sources = []
    for member, count in zip(chosen, counts, strict=True):
        member_run = runs.open_run(member.run_dir)
        member_config = runs.run_config(member_run)
        arrays = params.load(member.run_dir, member_config)
        sources.append(Source(member.label, member_config, arrays, count))
    return sources


class PosteriorPredictive:
    """The predictive of one run, or the equal mixture of an ensemble's members, compiled once:
    `self(images, label)` -> (draws, n, classes), each source's draws in turn, with a progress
    bar. The same seeds give the same weight draws on every call."""

    def __init__(
        self, model: Any, sources: list[Source], mode: Any, console: Console, chunk_size: int
    ) -> None:
        self.model, self.sources, self.console = model, sources, console
        self.chunk_size = chunk_size
        self.draws = sum(source.draws for source in sources)
        # lazy: PyTensor and JAX load here, so a run that cannot be evaluated is refused at once
        from bnn_cli.posterior.predictive import compile_predict

        self.fn = compile_predict(model, mode)

    def slices(self) -> list[slice]:
        """Each source's draws in the arrays this returns."""
        ends = np.cumsum([0] + [source.draws for source in self.sources])
        return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]

    def __call__(self, images: np.ndarray, label: str = "") -> np.ndarray:
        title = f"posterior predictive{' ' + label if label else ''}"
        columns = (MofNCompleteColumn(), TimeRemainingColumn())
        from bnn_cli.posterior.predictive import mixture  # lazy, as in __init__

        with progress_bar(self.console, title, *columns) as progress:
            task = progress.add_task("draws", total=self.draws)
            return mixture(
                self.fn,
                [(source.arrays, source.draws, source.config.seed) for source in self.sources],
                self.model,
                images,
                self.chunk_size,
                progress=lambda done: progress.update(task, completed=done),
            )


def member_metrics(sources: Any, slices: Any, probs: Any, labels: Any, ood_sets: Any) -> list[dict]:
    """Each member's own figures, from its share of the mixture's draws."""
    rows = []
    for source, part in zip(sources, slices, strict=True):
        own = probs[part]
        summary = m.summarize(own, labels)
        row = {"member": source.label, "seed": source.config.seed, "draws": source.draws}
        row.update(m.compute_metrics(own, labels, summary=summary))
        ood = {name: OodSet(oset.images, oset.probs[part]) for name, oset in ood_sets.items()}
        row["ood"] = ood_results(summary, ood)
        rows.append(row)
    return rows


def concat_draws(parts: list[dict | None]) -> dict | None:
    """The members' prior-scale draws as one set (None when the runs have no scales)."""
    found = [part for part in parts if part is not None]
    if not parts or parts[0] is None:
        return None
    return {name: np.concatenate([part[name] for part in found]) for name in found[0]}
