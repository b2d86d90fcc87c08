"""`bnn predict`: classify image files with a trained run, with the posterior's uncertainty.

Per image: the predicted class, its predictive probability, the predictive entropy and the
mutual information (epistemic part) from `metrics.entropy`, and an `uncertain` flag: the entropy
is above the run's threshold, the entropy that 95 % of its validation images fall below. The
threshold is computed once per number of draws and cached in `<run>/uncertainty_threshold.json`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from bnn_cli import runs
from bnn_cli.data.datasets import get_spec, load_splits
from bnn_cli.data.images import NamedImage, read_images
from bnn_cli.errors import DataError, RunError
from bnn_cli.posterior import threshold
from bnn_cli.posterior.trained import TrainedRun, load_run
from bnn_cli.report import metrics, tables
from bnn_cli.report.tables import Column, Tabular, value

logger = logging.getLogger(__name__)

COLUMNS = (
    "image", "predicted", "label", "probability", "entropy", "mutual_information", "uncertain"
)  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """One image's prediction; entropies in nats."""

    image: str
    predicted: int
    label: str  # the class's name: "7" for a digit, "Ankle boot" for Fashion-MNIST
    probability: float
    entropy: float
    mutual_information: float
    uncertain: bool


@dataclass
class Prediction:
    """The answers of one `bnn predict` call and the files that could not be read."""

    run: Path
    draws: int
    threshold: float  # entropy in nats above which an image is flagged uncertain
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one message per unreadable file


def predict_files(
    run_dir: Path,
    paths: list[Path],
    draws: int | None,
    data_dir: str | None,
    keep_going: bool,
    console: Console,
) -> Prediction:
    """Read every file, then classify all their images at once. An unreadable file raises its
    `DataError` at once, or, with `keep_going`, is listed in `errors` and the others are
    answered. Raises `DataError` when no file could be read."""
    run = load_run(run_dir)
    images, errors = read_all(paths, keep_going)
    if not images:
        raise DataError(f"none of the {len(paths)} files could be read; nothing to predict")
    n_draws = run.config.draws(draws)
    with console.status(f"posterior predictive ({n_draws} draws)"):
        probs = run.predict(np.stack([image.pixels for image in images]), draws=n_draws)
    threshold = entropy_threshold(run, n_draws, data_dir, console)

    answers = summarize(images, probs, threshold, get_spec(run.config.data.dataset).class_names)
    return Prediction(run.path, n_draws, threshold, answers, errors)


def read_all(paths: list[Path], keep_going: bool) -> tuple[list[NamedImage], list[str]]:
    images: list[NamedImage] = []
    errors: list[str] = []
    for path in paths:
        try:
            images += read_images(path)
        except DataError as exc:
            if not keep_going:
                raise
            errors.append(str(exc))
    return images, errors


def summarize(
    images: list[NamedImage],
    probs: np.ndarray,
    threshold: float,
    class_names: tuple[str, ...],
) -> list[Answer]:
    mean = metrics.predictive_mean(probs)
    total, _, epistemic = metrics.entropy(probs)
    predicted = mean.argmax(axis=1)
    return [
        Answer(
            image=image.name,
            predicted=int(predicted[i]),
            label=class_names[predicted[i]],
            probability=float(mean[i, predicted[i]]),
            entropy=float(total[i]),
            mutual_information=float(epistemic[i]),
            uncertain=bool(total[i] > threshold),
        )
        for i, image in enumerate(images)
    ]


def entropy_threshold(run: TrainedRun, draws: int, data_dir: str | None, console: Console) -> float:
    """The predictive entropy below which 95 % of the run's validation images fall, with
    `draws` draws (fewer draws see less disagreement): cached, else computed and cached."""
    cached = threshold.read_cache(run.path).get(str(draws))
    if cached is not None:
        return cached
    if run.config.data.val_size == 0:
        raise RunError(
            f"run '{run.path.name}' has no validation images (data.val_size: 0), which set the "
            "threshold of the 'uncertain' flag"
        )

    config = run.config.data
    data_dir = runs.run_data_dir(run.path, data_dir)
    splits = load_splits(config.dataset, data_dir, config.train_size, config.val_size)
    x_val = threshold.sample(splits.x_val)
    with console.status(f"uncertainty threshold on {len(x_val)} validation images"):
        value = threshold.of_probabilities(run.predict(x_val, draws=draws))
    threshold.save(run.path, draws, value)
    return value


def answer_tabular(prediction: Prediction) -> Tabular:
    """The answers as a table: one row per image, raw values in csv."""
    columns = [
        Column("image", value("image"), no_wrap=True),
        Column("class", value("label"), right=True),
        Column("probability", value("probability", "{:.3f}".format), right=True),
        Column("entropy", value("entropy", "{:.3f}".format), right=True),
        Column("mutual info", value("mutual_information", "{:.3f}".format), right=True),
        Column(
            "uncertain",
            value("uncertain", lambda flag: "yes" if flag else "no"),
            right=True,
            cell_style=lambda record: "bold red" if record["uncertain"] else None,
        ),
    ]
    title = (
        f"{prediction.draws} posterior draws; uncertain: predictive entropy above "
        f"{prediction.threshold:.3f} nats, which {threshold.COVERAGE:.0%} of the run's validation "
        "images fall below"
    )
    records = [asdict(answer) for answer in prediction.answers]
    return Tabular("images", title, columns, list(COLUMNS), records)


def print_answers(prediction: Prediction, fmt: str, console: Console) -> None:
    """`fmt`: one of `tables.FORMATS`. json is one document: the run, the draws and the
    threshold, with the answers under "images"."""
    tab = answer_tabular(prediction)
    if fmt != "json":
        tables.emit(console, [tab], fmt)
        return
    document = {
        "run": str(prediction.run),
        "draws": prediction.draws,
        "uncertain_above_entropy": prediction.threshold,
        "coverage": threshold.COVERAGE,
        "images": tables.json_records(tab),
    }
    tables.print_plain(console, json.dumps(document, indent=2) + "\n")
