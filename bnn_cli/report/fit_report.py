"""The report's posterior parts: whether the fit had converged (shown first), the fitted
scales and the diagnostics over iterations, and the out-of-distribution checks. `report.py`
assembles them with the rest; this module computes and describes, it writes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn_cli.report import metrics as m
from bnn_cli.runs import files

log = logging.getLogger(__name__)

PLOT_CAPTIONS = {
    "posterior.png": "The fitted mean-field posterior: standard deviations and signal-to-noise "
    "ratios per tensor",
    "fit_diagnostics.png": "Fit diagnostics over iterations: validation NLL and mutual "
    "information, median sigma and share of weights with |mu|/sigma < 1",
}


@dataclass
class OodSet:
    """Out-of-distribution images and the network's predictive on them (draws, n, classes)."""

    images: np.ndarray
    probs: np.ndarray


def ood_results(pred: m.Predictive, ood: dict[str, OodSet]) -> dict[str, dict[str, Any]]:
    """metrics.json's `ood` section: per set, how well entropy and mutual information tell its
    images from the in-distribution ones."""
    out = {}
    for name, oset in ood.items():
        total, _, epistemic = m.entropy(oset.probs)
        out[name] = m.ood_metrics(pred.total, pred.epistemic, total, epistemic)
    return out


def convergence_paragraphs(status: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(section title, paragraphs) on the verdict recorded at the end of the fit."""
    verdict = status.get("convergence")
    if not isinstance(verdict, dict):
        return None
    if verdict.get("stopped_on_validation"):
        return "Kept the best validation point", [
            f"{verdict.get('message', '')[:1].upper()}{verdict.get('message', '')[1:]}. The "
            "parameters reported below are those of that iteration: chosen on validation data, "
            "not run to the ELBO's optimum."
        ]
    first, last = verdict.get("window", ["?", "?"])
    if verdict.get("converged"):
        return "Convergence", [
            f"The approximation had settled over the last iterations ({first}-{last}): no "
            "tensor's standard deviations were still being pushed one way and the loss was "
            "flat, so the uncertainty below is the fitted posterior's."
        ]
    return "Warning: the fit had not converged", [f"**{verdict.get('message', '')}**"]


def posterior_jobs(
    run_dir: Path, arrays: dict[str, np.ndarray] | None, elbo: dict[str, np.ndarray] | None
) -> dict[str, Callable[[], bytes]]:
    from bnn_cli.report import fit_plots  # lazy: imports matplotlib, SciPy

    jobs: dict[str, Callable[[], bytes]] = {}
    if arrays:
        jobs["posterior.png"] = lambda: fit_plots.posterior_png(arrays)
    tensors = files.read_diagnostics_csv(run_dir)
    if elbo is not None and (tensors or np.isfinite(elbo.get("val_nll", [np.nan])).any()):
        jobs["fit_diagnostics.png"] = lambda: fit_plots.fit_diagnostics_png(elbo, tensors)
    return jobs


def ood_jobs(
    pred: m.Predictive, ood: dict[str, OodSet], class_names: list[str]
) -> dict[str, Callable[[], bytes]]:
    from bnn_cli.report import fit_plots  # lazy: imports matplotlib, SciPy

    jobs: dict[str, Callable[[], bytes]] = {}
    scores_in = {"entropy": pred.total, "mi": pred.epistemic}
    for name, oset in ood.items():
        total, _, epistemic = m.entropy(oset.probs)
        predicted = np.asarray(class_names)[m.predictive_mean(oset.probs).argmax(axis=1)]
        scores_out = {"entropy": total, "mi": epistemic}
        jobs[f"ood_{name}.png"] = _bind(fit_plots.ood_hist_png, scores_in, scores_out, name)
        jobs[f"ood_{name}_images.png"] = _bind(
            fit_plots.ood_images_png, oset.images, total, predicted, name
        )
    return jobs


def _bind(fn: Callable[..., bytes], *args: Any) -> Callable[[], bytes]:
    return lambda: fn(*args)


def ood_caption(plot_name: str) -> str | None:
    stem = plot_name.removeprefix("ood_").removesuffix(".png")
    if stem.endswith("_images"):
        return f"{stem.removesuffix('_images')}: the most and least uncertain images"
    return f"{stem}: uncertainty of in- and out-of-distribution images"


def ood_table(
    results: dict[str, dict[str, Any]], fmt: Callable[[Any], str]
) -> tuple[list[str], list[list[str]]]:
    headers = [
        "set",
        "images",
        "AUROC (entropy)",
        "AUROC (mutual information)",
        "entropy in / out",
        "mutual information in / out",
    ]
    rows = [
        [
            name,
            str(r["n_images"]),
            fmt(r["auroc_entropy"]),
            fmt(r["auroc_mi"]),
            f"{fmt(r['mean_entropy_in'])} / {fmt(r['mean_entropy_out'])}",
            f"{fmt(r['mean_mi_in'])} / {fmt(r['mean_mi_out'])}",
        ]
        for name, r in results.items()
    ]
    return headers, rows


OOD_EXPLAINED = (
    "Images of another dataset, which the network has never seen, should get a higher "
    "predictive entropy and a higher mutual information (disagreement between posterior "
    "draws) than the test digits. The AUROC is the probability that a random "
    "out-of-distribution image scores above a random in-distribution one (0.5 chance, 1 "
    "perfect)."
)
