"""Figures of the fitted posterior and of out-of-distribution checks: the mean-field scales and
signal-to-noise ratios per tensor, the fit diagnostics over iterations, and in- versus
out-of-distribution uncertainty. Each returns PNG bytes, like `bnn_cli.report.plots`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from bnn_cli.posterior import params
from bnn_cli.report.plots import ALEATORIC, EPISTEMIC, margins, render

IN_COLOR, OUT_COLOR = ALEATORIC, EPISTEMIC
LOG_FLOOR = 1e-6  # mutual information and SNR reach 0; log axes start here


def posterior_png(arrays: dict[str, np.ndarray]) -> bytes:
    """Per tensor (scalars left out): histograms of sigma and of |mu| / sigma, log axes."""
    names = [n for n in params.tensor_names(arrays) if np.size(params.mean(arrays, n)) > 1]
    return render(_draw_posterior, arrays, names, figsize=(9, 1.6 + 1.7 * len(names)))


def _draw_posterior(fig: Figure, arrays: dict[str, np.ndarray], names: Sequence[str]) -> None:
    axes = fig.subplots(len(names), 2, squeeze=False)
    for row, name in zip(axes, names, strict=True):
        mu, sigma = params.mean_and_sd(arrays, name)
        snr = np.abs(mu) / sigma
        for ax, values, color, label in (
            (row[0], sigma, ALEATORIC, "sigma"),
            (row[1], snr, EPISTEMIC, "|mu| / sigma"),
        ):
            ax.hist(
                np.maximum(values, LOG_FLOOR),
                bins=_log_bins(values),
                color=color,
                histtype="stepfilled",  # one polygon, not a patch per bin: drawn faster
            )
            _log_axes(ax)
            ax.axvline(np.median(values), color="black", lw=1, ls="--")
            ax.set_ylabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
            if label.startswith("|"):
                ax.axvline(1.0, color="grey", lw=1, ls=":")
            ax.set_xlabel(label if row is axes[-1] else "", fontsize=8)
    axes[0][0].set_title("standard deviations (median dashed)", fontsize=9)
    axes[0][1].set_title("signal-to-noise |mu| / sigma (1 dotted)", fontsize=9)
    margins(fig, left=0.75, right=0.2, bottom=0.4, top=0.35, wspace=0.22, hspace=0.3)


def _log_axes(ax: Any) -> None:
    """Log scales labelled with plain numbers at 1-2-5 steps: the default labels every minor
    tick when the data span less than a decade, and they overlap."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        narrow = high / max(low, 1e-300) < 100  # under two decades: label 1-2-5 steps
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        # Minor ticks at 2 and 5 only: the default eight per decade make tick layout most of
        # this figure's time, for the same picture (docs/results.md, Evaluation).
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0), numticks=12))
        axis.set_minor_formatter(NullFormatter())


def _log_bins(values: np.ndarray, count: int = 50) -> np.ndarray:
    positive = np.maximum(values, LOG_FLOOR)
    low, high = positive.min(), positive.max()
    if high <= low * 1.001:
        low, high = low / 1.5, high * 1.5
    return np.geomspace(low, high, count)


def fit_diagnostics_png(elbo: dict[str, np.ndarray], tensors: dict[str, dict]) -> bytes:
    """Over iterations: validation NLL and mutual information, and per tensor the median
    sigma and the share of weights with |mu| / sigma < 1."""
    return render(_draw_fit_diagnostics, elbo, tensors, figsize=(10, 6.5))


def _draw_fit_diagnostics(fig: Figure, elbo: dict[str, np.ndarray], tensors: dict) -> None:
    (nll_ax, mi_ax), (sigma_ax, snr_ax) = fig.subplots(2, 2, sharex=True)
    it = elbo["iteration"]
    for ax, key, label, color in (
        (nll_ax, "val_nll", "validation NLL", ALEATORIC),
        (mi_ax, "val_mi", "validation mutual information (nats)", EPISTEMIC),
    ):
        has = np.isfinite(elbo.get(key, np.full_like(it, np.nan)))
        ax.plot(it[has], elbo[key][has], "o-", ms=3, color=color)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    for name, series in tensors.items():
        sigma_ax.plot(series["iteration"], series["median_sigma"], lw=1.2, label=name)
        snr_ax.plot(series["iteration"], series["share_snr_below_1"], lw=1.2, label=name)
    sigma_ax.set_yscale("log")
    sigma_ax.set_title("median sigma per tensor", fontsize=9)
    snr_ax.set_title("share of weights with |mu| / sigma < 1", fontsize=9)
    snr_ax.set_ylim(0, 1)
    for ax in (sigma_ax, snr_ax):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if tensors:
        snr_ax.legend(fontsize=7, ncol=2)
    margins(fig, left=0.8, right=0.2, bottom=0.6, top=0.35, wspace=0.2, hspace=0.18)


def ood_hist_png(
    scores_in: dict[str, np.ndarray], scores_out: dict[str, np.ndarray], name: str
) -> bytes:
    """Predictive entropy and mutual information of in- and out-of-distribution images."""
    return render(_draw_ood_hist, scores_in, scores_out, name, figsize=(10, 3.8))


def _draw_ood_hist(fig: Figure, scores_in: dict, scores_out: dict, name: str) -> None:
    axes = fig.subplots(1, 2)
    for ax, key, label, log in (
        (axes[0], "entropy", "predictive entropy (nats)", False),
        (axes[1], "mi", "mutual information (nats)", True),
    ):
        both = np.concatenate([scores_in[key], scores_out[key]])
        bins = _log_bins(both) if log else np.linspace(0, max(both.max(), 1e-3), 50)
        for values, color, who in (
            (scores_in[key], IN_COLOR, "in distribution (test digits)"),
            (scores_out[key], OUT_COLOR, f"out of distribution ({name})"),
        ):
            shown = np.maximum(values, LOG_FLOOR) if log else values
            ax.hist(shown, bins=bins, color=color, alpha=0.55, label=who, histtype="stepfilled")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("images")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Uncertainty on {name} images against the in-distribution ones", fontsize=10)
    fig.tight_layout()


def ood_images_png(
    images: np.ndarray, entropy: np.ndarray, predicted: np.ndarray, name: str, count: int = 8
) -> bytes:
    """The `count` most and least uncertain out-of-distribution images, with the class the
    network gave each and its predictive entropy."""
    order = np.argsort(-entropy, kind="stable")
    picks = [("most uncertain", order[:count]), ("least uncertain", order[::-1][:count])]
    return render(_draw_ood_images, images, entropy, predicted, picks, name, figsize=(12, 3.6))


def _draw_ood_images(
    fig: Any, images: Any, entropy: Any, predicted: Any, picks: Any, name: Any
) -> None:
    count = max(len(p) for _, p in picks)
    axes = fig.subplots(len(picks), count, squeeze=False)
    side = int(round(np.sqrt(images[0].size)))
    for row, (title, chosen) in zip(axes, picks, strict=True):
        for ax in row:
            ax.axis("off")
        for ax, index in zip(row, chosen, strict=False):
            ax.imshow(images[index].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"pred {predicted[index]}\nH={entropy[index]:.2f}", fontsize=8)
        row[0].text(
            -0.15,
            0.5,
            title,
            transform=row[0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=9,
        )
    fig.suptitle(f"{name}: the most and least uncertain images", fontsize=10)
