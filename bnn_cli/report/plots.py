"""The report's figures, each rendered to PNG bytes (the caller writes them atomically and
embeds them in the HTML). Matplotlib runs on the Agg backend: no display needed."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # before pyplot: render off-screen, on servers and in CI alike

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import LogNorm, to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from PIL import Image  # noqa: E402
from PIL.PngImagePlugin import PngInfo  # noqa: E402

from bnn_cli.report.metrics import Predictive, accuracy_coverage, ece, reliability_bins  # noqa: E402

log = logging.getLogger(__name__)

DPI = 100  # small files: the report embeds every image
ALEATORIC, EPISTEMIC = "#4c72b0", "#dd8452"
CORRECT, WRONG = "#55a868", "#c44e52"
SMOOTH_ABOVE = 200  # loss curves with more points than this get a running mean on top
MARGIN = 1.0  # inches drawn around the canvas: room for what spills over its edges


def render(draw: Callable[..., None], *args: Any, figsize: tuple[float, float]) -> bytes:
    """Create a figure, let `draw(fig, *args)` fill it, and return it as PNG bytes. The
    figure is always closed: pyplot keeps every open figure alive otherwise."""
    fig = plt.figure(figsize=figsize, dpi=DPI)
    try:
        draw(fig, *args)
        return tight_png(fig)
    finally:
        plt.close(fig)


def tight_png(fig: Figure) -> bytes:
    """The figure as PNG, trimmed to what is drawn plus savefig's padding: the picture
    `savefig(bbox_inches="tight")` gives, from one drawing instead of two (tight lays the whole
    figure out and measures it, then draws it again: a quarter of a report's plotting time). The
    drawing takes in a margin around the canvas, so a label pushed past an edge still shows, as
    it does with tight; anything further out gets tight's own."""
    width, height = fig.get_size_inches()
    frame = Bbox.from_extents(-MARGIN, -MARGIN, width + MARGIN, height + MARGIN)
    fig.savefig(io.BytesIO(), format="rgba", dpi=DPI, bbox_inches=frame)
    canvas = cast(FigureCanvasAgg, fig.canvas)  # Agg, as chosen above
    pixels = np.asarray(canvas.renderer.buffer_rgba())  # what was just drawn, with its shape
    background = np.round(np.asarray(to_rgba(fig.get_facecolor())) * 255).astype(np.uint8)
    ink = np.any(pixels != background, axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    pad = round(plt.rcParams["savefig.pad_inches"] * DPI)
    buffer = io.BytesIO()
    if rows.size == 0 or not _within(rows, cols, pad, ink.shape):
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()
    trimmed = pixels[rows[0] - pad : rows[-1] + 1 + pad, cols[0] - pad : cols[-1] + 1 + pad]
    Image.fromarray(trimmed).save(buffer, format="png", pnginfo=_png_info())
    return buffer.getvalue()


def margins(
    fig: Figure, left: float, right: float, bottom: float, top: float, **space: float
) -> None:
    """Subplot margins in inches, fixed, where `fig.tight_layout()` would measure every label
    first (a third of a figure's time). Labels that spill past the canvas still show:
    `tight_png` frames the drawing, not the canvas; `space` is subplots_adjust's wspace and
    hspace."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
        **space,
    )  # fmt: skip


def _within(rows: np.ndarray, cols: np.ndarray, pad: int, shape: tuple[int, ...]) -> bool:
    """Whether the drawing and its padding stay off the margin's outer edge (past it, the
    drawing may have been cut)."""
    return bool(
        min(rows[0], cols[0]) >= pad and rows[-1] + pad < shape[0] and cols[-1] + pad < shape[1]
    )


def _png_info() -> PngInfo:
    """The text chunk Matplotlib's own PNGs carry."""
    info = PngInfo()
    info.add_text(
        "Software", f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"
    )
    return info


def elbo_png(elbo: dict[str, np.ndarray]) -> bytes:
    """Loss over iterations (log scale when positive), validation accuracy on a twin axis."""
    return render(_draw_elbo, elbo, figsize=(7.5, 4))


def _draw_elbo(fig: Figure, elbo: dict[str, np.ndarray]) -> None:
    ax = fig.add_subplot()
    it, loss = elbo["iteration"], elbo["loss"]
    finite = np.isfinite(loss)
    it, loss = it[finite], loss[finite]
    smooth = len(loss) > SMOOTH_ABOVE
    ax.plot(it, loss, color=ALEATORIC, lw=0.8, alpha=0.35 if smooth else 1.0, label="loss")
    if smooth:
        window = max(len(loss) // 100, 5)
        kernel = np.ones(window) / window
        ax.plot(
            it[window - 1 :],
            np.convolve(loss, kernel, mode="valid"),
            color=ALEATORIC,
            lw=1.6,
            label=f"running mean ({window})",
        )
    if loss.size and np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (negative ELBO)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    has_val = np.isfinite(elbo["val_accuracy"])
    if has_val.any():
        twin = ax.twinx()
        twin.plot(
            elbo["iteration"][has_val],
            elbo["val_accuracy"][has_val],
            "o-",
            color=EPISTEMIC,
            ms=3,
            lw=1.2,
            label="validation accuracy",
        )
        twin.set_ylabel("validation accuracy")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="center right", fontsize=8)
    ax.set_title("Training: loss and validation accuracy")


def reliability_png(pred: Predictive) -> bytes:
    """Accuracy against confidence per bin, the diagonal, and the bin counts below."""
    return render(_draw_reliability, pred, figsize=(5.5, 6))


def _draw_reliability(fig: Figure, pred: Predictive) -> None:
    table = reliability_bins(pred.confidence, pred.correct)
    edges, counts = table["edges"], table["counts"]
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    filled = counts > 0
    grid = GridSpec(2, 1, height_ratios=[3, 1], hspace=0.08, figure=fig)
    top = fig.add_subplot(grid[0])
    top.bar(
        centers[filled],
        table["accuracy"][filled],
        width=width[filled],
        color=ALEATORIC,
        edgecolor="white",
        label="accuracy",
    )
    gap_low = np.minimum(table["accuracy"], table["confidence"])[filled]
    gap = np.abs(table["accuracy"] - table["confidence"])[filled]
    top.bar(
        centers[filled],
        gap,
        bottom=gap_low,
        width=width[filled],
        color=WRONG,
        alpha=0.3,
        edgecolor=WRONG,
        hatch="//",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.tick_params(labelbottom=False)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"Reliability (ECE {ece(pred.confidence, pred.correct):.4f})")
    bottom = fig.add_subplot(grid[1], sharex=top)
    bottom.bar(centers, counts, width=width, color="grey", edgecolor="white")
    for x, count in zip(centers[filled], counts[filled], strict=True):
        bottom.annotate(str(count), (x, count), ha="center", va="bottom", fontsize=6)
    if counts.max() > 0:
        bottom.set_yscale("symlog", linthresh=1)
        bottom.set_ylim(0, counts.max() * 4)
    bottom.set(xlabel="confidence (max predictive probability)", ylabel="images")


def per_class_uncertainty_png(rows: Sequence[dict[str, Any]]) -> bytes:
    """Stacked bars: mean aleatoric + mean epistemic = mean predictive entropy, per class."""
    return render(_draw_per_class_uncertainty, rows, figsize=(7.5, 4))


def _draw_per_class_uncertainty(fig: Figure, rows: Sequence[dict[str, Any]]) -> None:
    ax = fig.add_subplot()
    names = [str(r["class"]) for r in rows]
    aleatoric = np.array([r["mean_aleatoric"] or 0.0 for r in rows])
    epistemic = np.array([r["mean_epistemic"] or 0.0 for r in rows])
    x = np.arange(len(rows))
    ax.bar(x, aleatoric, color=ALEATORIC, label="aleatoric (mean entropy of each draw)")
    ax.bar(x, epistemic, bottom=aleatoric, color=EPISTEMIC, label="epistemic (mutual information)")
    ax.set_xticks(
        x,
        names,
        rotation=30 if max(map(len, names)) > 3 else 0,
        ha="right" if max(map(len, names)) > 3 else "center",
    )
    ax.set(xlabel="true class", ylabel="mean entropy (nats)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Predictive uncertainty per class")


def entropy_hist_png(pred: Predictive) -> bytes:
    """Histograms of total entropy and of mutual information, correct vs wrong images."""
    return render(_draw_entropy_hist, pred, figsize=(9, 3.6))


def _draw_entropy_hist(fig: Figure, pred: Predictive) -> None:
    top = np.log(pred.n_classes)
    panels = [
        ("predictive entropy (nats)", pred.total),
        ("mutual information (nats)", pred.epistemic),
    ]
    for i, (label, values) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 2, i)
        bins = np.linspace(0, max(top if i == 1 else values.max(), 1e-6), 31)
        for mask, name, color in (
            (pred.correct, "correct", CORRECT),
            (~pred.correct, "wrong", WRONG),
        ):
            if mask.any():
                ax.hist(
                    values[mask],
                    bins=list(bins),
                    density=True,
                    alpha=0.55,
                    color=color,
                    label=f"{name} ({int(mask.sum())})",
                    histtype="stepfilled",  # one polygon, not a patch per bin: drawn faster
                )
        ax.set(xlabel=label, ylabel="density" if i == 1 else None)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.suptitle("Uncertainty of correct and wrong predictions")


def confusion_png(matrix: np.ndarray, names: Sequence[str]) -> bytes:
    return render(_draw_confusion, matrix, names, figsize=(6.5, 5.5))


def _draw_confusion(fig: Figure, matrix: np.ndarray, names: Sequence[str]) -> None:
    """Counts in the cells; colour on a log scale so that the rare confusions show."""
    ax = fig.add_subplot()
    shown = np.where(matrix > 0, matrix, np.nan)
    image = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(matrix.max(), 2)))
    threshold = np.sqrt(max(matrix.max(), 1))  # geometric mid-point of the log colour scale
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > threshold else "black",
            )
    ticks = np.arange(len(names))
    ax.set_xticks(
        ticks,
        names,
        rotation=45 if max(map(len, names)) > 3 else 0,
        ha="right" if max(map(len, names)) > 3 else "center",
    )
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (counts)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="images (log scale)")


def uncertain_digits_png(
    images: np.ndarray, pred: Predictive, names: Sequence[str], count: int = 16
) -> bytes:
    """The `count` images with the highest predictive entropy, each above a bar chart of its
    predictive distribution (true class green, wrong prediction red)."""
    chosen = np.argsort(-pred.total, kind="stable")[:count]
    cols = min(4, len(chosen)) or 1
    rows = max(1, int(np.ceil(len(chosen) / cols)))
    width, height = cols * DIGIT_PITCH[0], rows * DIGIT_PITCH[1] + DIGITS_TITLE
    return render(
        _draw_uncertain_digits,
        images,
        pred,
        names,
        chosen,
        cols,
        rows,
        figsize=(DIGIT_INCHES * width, DIGIT_INCHES * height),
    )


# The grid of digits is drawn in one axes, in units of a picture's side: one axes per picture
# and per bar chart made most of an evaluation's plotting time (their ticks and layout).
DIGIT_PITCH = (1.3, 1.95)  # a cell's width and height: title, picture, bars, labels, gaps
DIGITS_TITLE = 0.3  # the figure's title, above the cells
CAPTION = 0.35  # a picture's two-line caption, between the cell's top and the picture
DIGIT_INSET = 0.15  # (DIGIT_PITCH[0] - 1) / 2: each picture centred in its cell
BARS = (0.08, 0.42)  # the bar chart's gap below its picture, and its height
DIGIT_INCHES = 1.45  # inches per unit


def _draw_uncertain_digits(
    fig: Figure,
    images: np.ndarray,
    pred: Predictive,
    names: Sequence[str],
    chosen: np.ndarray,
    cols: int,
    rows: int,
) -> None:
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    slots = [divmod(slot, cols) for slot in range(len(chosen))]
    corners = [(c * DIGIT_PITCH[0] + DIGIT_INSET, -r * DIGIT_PITCH[1] - CAPTION) for r, c in slots]
    side = int(round(np.sqrt(images[0].size)))
    for (left, top), index in zip(corners, chosen, strict=True):
        true, guess = int(pred.labels[index]), int(pred.predicted[index])
        picture = images[index].reshape(side, side)
        ax.imshow(picture, cmap="gray_r", vmin=0, vmax=1, extent=(left, left + 1, top - 1, top))
        ax.text(
            left + 0.5,
            top + 0.04,
            f"true {names[true]} · pred {names[guess]}\nH={pred.total[index]:.2f}"
            f" MI={pred.epistemic[index]:.2f}",
            ha="center",
            va="bottom",
            fontsize=8,
            color="black" if true == guess else WRONG,
        )
    _draw_digit_bars(ax, corners, pred, chosen, names)
    ax.set_xlim(0, cols * DIGIT_PITCH[0])
    ax.set_ylim(-rows * DIGIT_PITCH[1], DIGITS_TITLE)
    ax.set_aspect("equal")
    title = "Most uncertain images (predictive entropy)"
    ax.text(cols * DIGIT_PITCH[0] / 2, DIGITS_TITLE / 2, title, ha="center", fontsize=10)


def _draw_digit_bars(
    ax: Any,
    corners: list[tuple[float, float]],
    pred: Predictive,
    chosen: np.ndarray,
    names: Sequence[str],
) -> None:
    """Below each picture (its top-left corner in `corners`) the predictive distribution: true
    class green, a wrong prediction red. One call draws every cell's bars, one their frames:
    each call costs more than the shapes it draws."""
    classes = pred.n_classes
    offsets = (np.arange(classes) + 0.5) / classes
    lefts = np.array([left for left, _ in corners])
    floors = np.array([top for _, top in corners]) - 1 - sum(BARS)
    colors = np.full((len(chosen), classes), "lightgrey", dtype=object)
    cells = np.arange(len(chosen))
    colors[cells, pred.predicted[chosen]] = WRONG  # overwritten below where it is right
    colors[cells, pred.labels[chosen]] = CORRECT
    x = lefts[:, None] + offsets
    ax.bar(
        x.ravel(),
        pred.mean_probs[chosen].ravel() * BARS[1],
        0.8 / classes,
        np.repeat(floors, classes),
        color=list(colors.ravel()),
    )
    bar_frames = zip(lefts, floors, strict=True)
    frames = [Rectangle((left, floor), 1, BARS[1]) for left, floor in bar_frames]
    frames += [Rectangle((left, top - 1), 1, 1) for left, top in corners]  # the pictures'
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="black", lw=0.8))
    ax.hlines(floors + BARS[1] / 2, lefts, lefts + 1, colors="grey", lw=0.4, ls=":")
    labels = zip(x.ravel(), np.repeat(floors, classes), list(names) * len(chosen), strict=True)
    for x_class, floor, name in labels:
        ax.text(x_class, floor - 0.02, name[:2], ha="center", va="top", fontsize=5)


def coverage_png(pred: Predictive) -> bytes:
    """Accuracy on the images kept when the most uncertain are rejected."""
    return render(_draw_coverage, pred, figsize=(6, 4))


def _draw_coverage(fig: Figure, pred: Predictive) -> None:
    ax = fig.add_subplot()
    for name, score, color in (
        ("by predictive entropy", pred.total, ALEATORIC),
        ("by mutual information", pred.epistemic, EPISTEMIC),
    ):
        curve = accuracy_coverage(score, pred.correct)
        ax.plot(
            curve["coverage"],
            curve["accuracy"],
            color=color,
            label=f"{name} (area {curve['auc']:.4f})",
        )
    ax.axhline(pred.correct.mean(), color="grey", ls=":", lw=1, label="no rejection")
    ax.set(xlim=(0, 1), xlabel="coverage (share of images kept)", ylabel="accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy when rejecting the most uncertain images")


def prior_scales_png(scale_draws: dict[str, np.ndarray]) -> bytes:
    """Posterior of the hierarchical prior's scales: one scale per tensor as an ArviZ forest
    plot; scales per unit (draws, *shape) as each tensor's sorted posterior medians, and the
    first dense layer's per-pixel scales as a 28x28 picture."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz announces its refactor on import
        import arviz as az  # lazy: imports ArviZ
    scalars = {n: d for n, d in scale_draws.items() if np.ndim(d) == 1}
    units = {n: np.median(d, axis=0).ravel() for n, d in scale_draws.items() if np.ndim(d) > 1}
    if not units:
        posterior = {name: np.asarray(d, float).reshape(1, -1) for name, d in scalars.items()}
        data = az.from_dict(posterior=posterior)
        height = 1.2 + 0.45 * len(posterior)
        return render(_draw_prior_scales, az, data, list(posterior), figsize=(7, height))
    pixels = next((m for m in units.values() if m.size == 28 * 28), None)
    return render(_draw_unit_scales, scalars, units, pixels, figsize=(11, 4))


def _draw_unit_scales(fig: Figure, scalars: dict, units: dict, pixels: Any) -> None:
    grid = GridSpec(1, 2 if pixels is None else 3, figure=fig, wspace=0.35)
    ax = fig.add_subplot(grid[0, 0])
    for name, medians in units.items():
        ax.plot(np.linspace(0, 1, len(medians)), np.sort(medians)[::-1], label=name, lw=1.2)
    ax.set(yscale="log", xlabel="share of units (largest scale first)", ylabel="scale")
    ax.set_title("Per-unit prior scales (posterior medians)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[0, 1])
    names = list(scalars)
    medians = [float(np.median(scalars[n])) for n in names]
    ax.barh(names, medians, color=ALEATORIC)
    ax.set(xscale="log", xlabel="scale (posterior median)")
    ax.set_title("One scale per tensor", fontsize=10)
    if pixels is not None:
        ax = fig.add_subplot(grid[0, 2])
        image = ax.imshow(pixels.reshape(28, 28), cmap="magma", norm=LogNorm())
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title("Scale per input pixel", fontsize=10)
        ax.set_axis_off()


def _draw_prior_scales(fig: Figure, az: Any, data: Any, names: list[str]) -> None:
    ax = fig.add_subplot()
    az.plot_forest(data, var_names=names, combined=True, hdi_prob=0.94, ax=ax, textsize=9)
    ax.set_title("Posterior of the prior scales (94% HDI)", fontsize=10)
    low, high = ax.get_xlim()
    if low > 0 and high / low > 20:  # weight and bias scales can differ by orders of magnitude
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("scale")


SHIFT_PANELS = (
    ("accuracy", "accuracy"),
    ("nll", "NLL"),
    ("ece", "ECE"),
    ("mean_entropy", "mean predictive entropy (nats)"),
)


def shift_png(curves: dict[str, Sequence[dict[str, Any]]], shift: str = "rotate") -> bytes:
    """Accuracy, NLL, ECE and mean entropy over the shift's levels (rotation angles), one line
    per run: the report draws its own run, `bnn compare --plot-shift` several."""
    return render(_draw_shift, curves, shift, figsize=(10, 6.5))


def _draw_shift(fig: Figure, curves: dict[str, Sequence[dict[str, Any]]], shift: str) -> None:
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (key, label) in zip(axes, SHIFT_PANELS, strict=True):
        for name, rows in curves.items():
            levels = [row["level"] for row in rows]
            values = [np.nan if row[key] is None else row[key] for row in rows]
            ax.plot(levels, values, marker="o", ms=3, label=name)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in axes[2:]:
        ax.set_xlabel("rotation (degrees)" if shift == "rotate" else shift)
    if len(curves) > 1:
        axes[0].legend(fontsize=8)
    fig.suptitle("Test images rotated: accuracy and calibration as the shift grows")
