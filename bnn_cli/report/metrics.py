"""Metrics of a posterior predictive distribution: pure numpy (and scipy), no I/O.

Inputs throughout: `probs`, float array (draws, n, classes), the class probabilities that each
posterior draw predicts for each image; `labels`, int array (n,), the true classes.

The prediction is the argmax of the predictive mean (ties go to the lowest class index, as
`np.argmax` does). Entropies are in nats. The uncertainty split is the usual one for Bayesian
networks: total = H[mean_d p_d], aleatoric = mean_d H[p_d], epistemic = total - aleatoric, the
mutual information between the label and the weights (zero when all draws agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import xlogy

NLL_FLOOR = 1e-12  # a probability of exactly 0 for the true class would make the NLL infinite
ECE_BINS = 15  # the usual choice since Guo et al. (2017)
HEADLINE_COVERAGES = (0.5, 0.8, 0.9, 0.95, 1.0)
CURVE_COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


@dataclass(frozen=True)
class Predictive:
    """Per-image summaries of the predictive distribution, computed once and shared by the
    metrics, the per-class table and the plots."""

    mean_probs: np.ndarray  # (n, classes) predictive mean
    labels: np.ndarray  # (n,) true classes
    predicted: np.ndarray  # (n,) argmax of the predictive mean
    correct: np.ndarray  # (n,) bool
    confidence: np.ndarray  # (n,) max predictive probability
    total: np.ndarray  # (n,) predictive entropy H[mean p]
    aleatoric: np.ndarray  # (n,) mean over draws of H[p_draw]
    epistemic: np.ndarray  # (n,) mutual information, total - aleatoric

    @property
    def n_classes(self) -> int:
        return self.mean_probs.shape[1]


def summarize(probs: np.ndarray, labels: np.ndarray) -> Predictive:
    """Check the shapes and compute the per-image summaries."""
    probs, labels = _check_inputs(probs, labels)
    mean_probs = predictive_mean(probs)
    predicted = np.argmax(mean_probs, axis=1)
    total, aleatoric, epistemic = entropy(probs)
    return Predictive(
        mean_probs=mean_probs,
        labels=labels,
        predicted=predicted,
        correct=predicted == labels,
        confidence=mean_probs.max(axis=1),
        total=total,
        aleatoric=aleatoric,
        epistemic=epistemic,
    )


def _check_inputs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape (draws, n, classes), got {probs.shape}")
    if labels.shape != (probs.shape[1],):
        raise ValueError(f"labels must have shape ({probs.shape[1]},), got {labels.shape}")
    if probs.shape[0] < 1 or probs.shape[1] < 1:
        raise ValueError(f"probs needs at least one draw and one image, got {probs.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= probs.shape[2]:
        raise ValueError(
            f"labels must lie in 0..{probs.shape[2] - 1}, got {labels.min()}..{labels.max()}"
        )
    return probs, labels.astype(np.int64)


def predictive_mean(probs: np.ndarray) -> np.ndarray:
    """The posterior predictive class probabilities, (n, classes), in float64."""
    return np.asarray(probs).mean(axis=0, dtype=np.float64)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(predictive_mean(probs), axis=1) == labels))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log predictive probability of the true class (floored at 1e-12)."""
    return _nll_of_mean(predictive_mean(probs), labels)


def _nll_of_mean(mean_probs: np.ndarray, labels: np.ndarray) -> float:
    p_true = mean_probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(p_true, NLL_FLOOR))))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of the squared distance between the predictive mean and the one-hot
    label (0 for perfect, 2 at worst)."""
    return _brier_of_mean(predictive_mean(probs), labels)


def _brier_of_mean(mean_probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.eye(mean_probs.shape[1])[labels]
    return float(np.mean(np.sum((mean_probs - onehot) ** 2, axis=1)))


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Equal-width confidence bins (lo, hi] on [0, 1]: edges, counts, and per bin the mean
    confidence and the accuracy (nan where a bin is empty)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / counts
        acc = np.bincount(index, weights=correct, minlength=bins) / counts
    return {"edges": edges, "counts": counts, "confidence": mean_conf, "accuracy": acc}


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over bins of (bin share) * |accuracy - confidence|."""
    table = reliability_bins(confidence, correct, bins)
    counts = table["counts"]
    if counts.sum() == 0:
        return math.nan
    filled = counts > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float(np.sum(counts[filled] * gaps) / counts.sum())


def _entropy_of(p: np.ndarray) -> np.ndarray:
    """H[p] over the last axis in nats, with 0 log 0 = 0."""
    return -np.sum(xlogy(p, p), axis=-1)


def entropy(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image (total, aleatoric, epistemic) entropy in nats. Epistemic is clipped at 0:
    it is non-negative in exact arithmetic (Jensen) and only rounding makes it dip below."""
    total = _entropy_of(predictive_mean(probs))
    aleatoric = _entropy_of(np.asarray(probs, dtype=np.float64)).mean(axis=0)
    epistemic = np.maximum(total - aleatoric, 0.0)
    return total, aleatoric, epistemic


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for telling positives from negatives: the
    Mann-Whitney probability that a random positive scores above a random negative, ties
    counting one half. nan when either class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy import stats  # lazy: half a second to import, and most commands never need it

    ranks = stats.rankdata(scores)  # ties get their average rank
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def ood_metrics(
    entropy_in: np.ndarray, mi_in: np.ndarray, entropy_out: np.ndarray, mi_out: np.ndarray
) -> dict[str, Any]:
    """How well the predictive entropy and the mutual information tell out-of-distribution
    images (the positives) from in-distribution ones: AUROCs and the mean scores of each."""
    is_out = np.r_[np.zeros(len(entropy_in), bool), np.ones(len(entropy_out), bool)]
    return {
        "n_images": int(len(entropy_out)),
        "auroc_entropy": _plain(auroc(np.r_[entropy_in, entropy_out], is_out)),
        "auroc_mi": _plain(auroc(np.r_[mi_in, mi_out], is_out)),
        "mean_entropy_in": _plain(np.mean(entropy_in)),
        "mean_entropy_out": _plain(np.mean(entropy_out)),
        "mean_mi_in": _plain(np.mean(mi_in)),
        "mean_mi_out": _plain(np.mean(mi_out)),
    }


def accuracy_coverage(
    uncertainty: np.ndarray, correct: np.ndarray, coverages: Sequence[float] = CURVE_COVERAGES
) -> dict[str, Any]:
    """Accuracy on the images kept when the most uncertain are rejected.

    `uncertainty`: higher means less sure (pass an entropy, or -confidence). Keeping k of n
    images gives coverage k/n; images tied in uncertainty at the cut are kept in proportion
    (the expected accuracy under a random tie-break), so the curve does not depend on the
    images' order. Returns:
      `at`: {coverage: accuracy} for the requested coverages (k = ceil(coverage * n), >= 1);
      `coverage`, `accuracy`: the full curve over k = 1..n, for plotting;
      `auc`: the area under that curve, the mean accuracy over k = 1..n (a Riemann sum on the
      uniform grid of coverages): the overall accuracy for an uninformative ranking, higher
      when the errors are the most uncertain images.
    """
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    n = uncertainty.size
    if n == 0:
        raise ValueError("accuracy_coverage needs at least one image")
    order = np.argsort(uncertainty, kind="stable")
    sorted_unc = uncertainty[order]
    cum_correct = np.concatenate([[0.0], np.cumsum(correct[order])])
    kept = np.arange(1, n + 1)
    # The tie group of the last kept image spans sorted positions [start, end).
    start = np.searchsorted(sorted_unc, sorted_unc[kept - 1], side="left")
    end = np.searchsorted(sorted_unc, sorted_unc[kept - 1], side="right")
    group_rate = (cum_correct[end] - cum_correct[start]) / (end - start)
    curve = (cum_correct[start] + (kept - start) * group_rate) / kept
    at = {}
    for coverage in coverages:
        k = min(n, max(1, math.ceil(coverage * n - 1e-9)))
        at[float(coverage)] = float(curve[k - 1])
    return {"at": at, "coverage": kept / n, "accuracy": curve, "auc": float(curve.mean())}


def chi_square(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Chi-square goodness of fit of the predicted label counts to the true label counts.

    The original 2016 notebook summarized its predictive draws with a chi-square statistic;
    this is a well-defined dataset-level version of it. For each posterior draw d, take the
    labels that draw predicts (argmax of p_d per image) and count them per class, O_d[c];
    the expected counts E[c] are the true label counts. Then

        statistic = mean over draws of  sum_c (O_d[c] - E[c])^2 / E[c]

    summed over the classes present among the labels (a class absent from the labels has no
    expected count to compare with). The p-value is the chi-square survival function of the
    averaged statistic with (classes present - 1) degrees of freedom. Small values mean the
    draws predict each class about as often as it occurs; it says nothing about which images
    are right. Returns (statistic, p_value); (nan, nan) with fewer than two classes present.
    """
    probs, labels = _check_inputs(probs, labels)
    n_classes = probs.shape[2]
    expected = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = expected > 0
    if present.sum() < 2:
        return math.nan, math.nan
    draw_labels = np.argmax(probs, axis=2)  # (draws, n)
    observed = np.stack([np.bincount(row, minlength=n_classes) for row in draw_labels])
    terms = (observed[:, present] - expected[present]) ** 2 / expected[present]
    statistic = float(terms.sum(axis=1).mean())
    from scipy import stats  # lazy, as in auroc

    p_value = float(stats.chi2.sf(statistic, df=int(present.sum()) - 1))
    return statistic, p_value


def compute_metrics(
    probs: np.ndarray, labels: np.ndarray, *, summary: Predictive | None = None
) -> dict[str, Any]:
    """The headline metrics as plain, JSON-ready Python numbers (None where undefined, e.g. an
    AUROC when no image is misclassified). Pass `summary` to reuse one already computed."""
    pred = summary if summary is not None else summarize(probs, labels)
    # Rejecting by total entropy: the same score as the headline AUROC.
    coverage = accuracy_coverage(pred.total, pred.correct, HEADLINE_COVERAGES)
    chi2_stat, chi2_p = chi_square(probs, labels)
    errors = ~pred.correct
    return {
        "n_images": int(pred.labels.size),
        "n_draws": int(np.shape(probs)[0]),
        "accuracy": _plain(np.mean(pred.correct)),
        "nll": _nll_of_mean(pred.mean_probs, pred.labels),
        "brier": _brier_of_mean(pred.mean_probs, pred.labels),
        "ece": _plain(ece(pred.confidence, pred.correct)),
        "mean_entropy": _plain(pred.total.mean()),
        "mean_aleatoric": _plain(pred.aleatoric.mean()),
        "mean_epistemic": _plain(pred.epistemic.mean()),
        "auroc_entropy": _plain(auroc(pred.total, errors)),
        "auroc_epistemic": _plain(auroc(pred.epistemic, errors)),
        "coverage_accuracy": {str(c): _plain(a) for c, a in coverage["at"].items()},
        "coverage_auc": _plain(coverage["auc"]),
        "chi_square": _plain(chi2_stat),
        "chi_square_p": _plain(chi2_p),
    }


def shift_row(level: float, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """One level of a dataset shift (e.g. a rotation angle): the metrics that show how accuracy
    and calibration hold up as the inputs move away from the training data."""
    pred = summarize(probs, labels)
    return {
        "level": level,
        "accuracy": _plain(np.mean(pred.correct)),
        "nll": _nll_of_mean(pred.mean_probs, pred.labels),
        "ece": _plain(ece(pred.confidence, pred.correct)),
        "brier": _brier_of_mean(pred.mean_probs, pred.labels),
        "mean_entropy": _plain(pred.total.mean()),
        "mean_mi": _plain(pred.epistemic.mean()),
    }


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    flat = np.asarray(labels) * n_classes + np.asarray(predicted)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    summary: Predictive | None = None,
) -> list[dict[str, Any]]:
    """One row per true class. `accuracy` and `recall` coincide here (both are the share of
    the class's images predicted right); `precision` is over the images predicted as the
    class; `error_share` is the class's share of all errors; `top_confusion` is the wrong
    class its images are most often taken for ('' if none). None where a value is undefined
    (a class with no images, or never predicted)."""
    pred = summary if summary is not None else summarize(probs, labels)
    n_classes = pred.n_classes
    names = list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names for {n_classes} classes")
    confusion = confusion_matrix(pred.labels, pred.predicted, n_classes)
    total_errors = int((~pred.correct).sum())
    return [_class_row(c, names, pred, confusion, total_errors) for c in range(n_classes)]


def _class_row(
    c: int, names: list[str], pred: Predictive, confusion: np.ndarray, total_errors: int
) -> dict[str, Any]:
    mine = pred.labels == c
    count = int(mine.sum())
    predicted_as_c = int(confusion[:, c].sum())
    wrong = confusion[c].copy()
    wrong[c] = 0
    top = int(np.argmax(wrong))
    errors = count - int(confusion[c, c])
    return {
        "class": names[c],
        "count": count,
        "accuracy": _mean_or_none(pred.correct[mine]),
        "precision": _plain(confusion[c, c] / predicted_as_c) if predicted_as_c else None,
        "recall": _mean_or_none(pred.correct[mine]),
        "mean_confidence": _mean_or_none(pred.confidence[mine]),
        "mean_entropy": _mean_or_none(pred.total[mine]),
        "mean_aleatoric": _mean_or_none(pred.aleatoric[mine]),
        "mean_epistemic": _mean_or_none(pred.epistemic[mine]),
        "ece": _plain(ece(pred.confidence[mine], pred.correct[mine])) if count else None,
        "error_share": _plain(errors / total_errors) if total_errors else None,
        "top_confusion": names[top] if wrong[top] > 0 else "",
        "top_confusion_count": int(wrong[top]),
    }


def _mean_or_none(values: np.ndarray) -> float | None:
    return _plain(np.mean(values)) if values.size else None


def _plain(value: Any) -> float | None:
    """A Python float for JSON; None for nan (JSON has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else value
