"""The "uncertain" threshold of `bnn predict`: the predictive entropy below which 95 % of a run's
validation images fall, per number of draws, cached in `<run>/uncertainty_threshold.json`.

It is estimated on the first `SAMPLE` validation images: the 95th percentile of 2,000 entropies
covers 95 % of all of them to about half a point (the binomial error of a 5 % tail in 2,000),
for a fraction of the predictive all 10,000 would cost (docs/results.md, Evaluation).

`bnn evaluate` writes it for its own number of draws, so that a run directory copied to a
machine without the dataset still answers `bnn predict`; `bnn predict` computes any other.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from bnn_cli import atomic
from bnn_cli.errors import BnnError
from bnn_cli.report import metrics

logger = logging.getLogger(__name__)

COVERAGE = 0.95  # the share of validation images that are not flagged uncertain
THRESHOLD_FILE = "uncertainty_threshold.json"
SAMPLE = 2000  # validation images the threshold is estimated on (see above)


def sample(images: np.ndarray) -> np.ndarray:
    """The validation images that set the threshold: the first `SAMPLE`, the same ones for
    every command."""
    return images[:SAMPLE]


def of_probabilities(probs: np.ndarray) -> float:
    """The threshold from the validation images' predictive, (draws, images, classes): of the
    first `SAMPLE` images when it holds more."""
    total, _, _ = metrics.entropy(probs[:, :SAMPLE])
    return float(np.quantile(total, COVERAGE))


def read_cache(run_dir: Path) -> dict[str, float]:
    """{draws: entropy} from the cache file; empty when absent, unreadable or made for another
    coverage (a damaged cache is computed again, never trusted)."""
    try:
        saved = json.loads((Path(run_dir) / THRESHOLD_FILE).read_text(encoding="utf-8"))
        if saved["coverage"] != COVERAGE:
            return {}
        return {str(k): float(v) for k, v in saved["entropy_by_draws"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(run_dir: Path, draws: int, value: float) -> None:
    """Add the threshold for `draws` to the cache. A read-only run still answers: the next
    `bnn predict` computes it again."""
    cache = {**read_cache(run_dir), str(draws): value}
    try:
        atomic.atomic_write_json(
            Path(run_dir) / THRESHOLD_FILE, {"coverage": COVERAGE, "entropy_by_draws": cache}
        )
    except BnnError as exc:
        logger.warning("could not cache the threshold: %s", exc)
