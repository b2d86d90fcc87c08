"""The figures on awkward inputs; the report tests cover the ordinary case."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

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


def test_confusion_of_a_single_image():
    matrix = metrics.confusion_matrix(np.array([2]), np.array([2]), 10)
    assert plots.confusion_png(matrix, [str(c) for c in range(10)]).startswith(PNG_SIGNATURE)
