"""The figures on awkward inputs; the report tests cover the ordinary case."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from bnn_cli.report import metrics, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_prediction(n=3, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(10), size=(2, n))
    labels = rng.integers(0, 10, size=n)
    return metrics.summarize(probs, labels)


def test_render_closes_its_figure_even_on_error():
    def broken(fig):
        fig.add_subplot()
        raise RuntimeError("drawing failed")

    with pytest.raises(RuntimeError):
        plots.render(broken, figsize=(2, 2))
    assert plt.get_fignums() == []


def size_of(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def savefig_tight(draw) -> bytes:
    fig = plt.figure(figsize=(4, 3), dpi=plots.DPI)
    draw(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=plots.DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def labelled(fig, labelpad=4.0):
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("a label with descenders: (gjpqy)", labelpad=labelpad)
    ax.set_title("title")


@pytest.mark.parametrize(
    "labelpad", [4.0, 26.0, 60.0], ids=["inside", "touching the edge", "beyond the edge"]
)
def test_one_drawing_frames_the_figure_as_tight_does(labelpad):
    """Trimmed to the ink plus savefig's padding, within a few pixels of tight's frame (tight
    measures text boxes, not ink); a label pushed past the canvas is kept, as tight keeps it."""
    ours = plots.render(lambda fig: labelled(fig, labelpad), figsize=(4, 3))
    width, height = size_of(ours)
    tight_width, tight_height = size_of(savefig_tight(lambda fig: labelled(fig, labelpad)))
    assert abs(width - tight_width) <= 4 and abs(height - tight_height) <= 4
    pixels = np.asarray(Image.open(io.BytesIO(ours)).convert("RGB"))
    assert (pixels[-5:] == 255).all()  # the padding below the label is there, white
    if labelpad == 60.0:
        assert height > 3 * plots.DPI  # grown past the 300-pixel canvas to hold the label


def test_elbo_with_negative_and_nan_losses_and_no_validation():
    elbo = {
        "iteration": np.arange(1.0, 6.0),
        "loss": np.array([5.0, -1.0, np.nan, -3.0, -4.0]),
        "val_accuracy": np.full(5, np.nan),
    }
    assert plots.elbo_png(elbo).startswith(PNG_SIGNATURE)
    assert plt.get_fignums() == []


def test_uncertain_digits_with_few_flat_images():
    pred = tiny_prediction(n=3)
    images = np.random.default_rng(1).random((3, 784))  # flat vectors, fewer than 16
    png = plots.uncertain_digits_png(images, pred, [str(c) for c in range(10)])
    assert png.startswith(PNG_SIGNATURE)


def pixels_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)


def has_colour(pixels: np.ndarray, colour: str) -> bool:
    rgb = np.round(np.asarray(to_rgb(colour)) * 255)
    return bool((np.abs(pixels - rgb).max(axis=1) <= 2).any())


def test_uncertain_digits_colour_the_true_class_and_a_wrong_guess():
    """Green bars for the true class; red (a bar and the caption) only where a guess is wrong."""
    rng = np.random.default_rng(2)
    probs = np.full((2, 4, 10), 0.05) + rng.random((2, 4, 10)) * 0.01
    probs[:, np.arange(4), [1, 2, 3, 4]] += 0.5  # predicted: 1, 2, 3, 4
    probs /= probs.sum(axis=2, keepdims=True)
    images = rng.random((4, 28, 28))
    names = [str(c) for c in range(10)]
    right = plots.uncertain_digits_png(
        images, metrics.summarize(probs, np.array([1, 2, 3, 4])), names
    )
    wrong = plots.uncertain_digits_png(
        images, metrics.summarize(probs, np.array([1, 2, 3, 5])), names
    )
    assert has_colour(pixels_of(right), plots.CORRECT)
    assert not has_colour(pixels_of(right), plots.WRONG)
    assert has_colour(pixels_of(wrong), plots.WRONG)


def test_margins_are_in_inches():
    fig = plt.figure(figsize=(10, 5))
    ax = fig.add_subplot()
    plots.margins(fig, left=1.0, right=0.5, bottom=0.25, top=1.0)
    assert ax.get_position().bounds == pytest.approx((0.1, 0.05, 0.85, 0.75))
    plt.close(fig)


def test_confusion_of_a_single_image():
    matrix = metrics.confusion_matrix(np.array([2]), np.array([2]), 10)
    assert plots.confusion_png(matrix, [str(c) for c in range(10)]).startswith(PNG_SIGNATURE)
