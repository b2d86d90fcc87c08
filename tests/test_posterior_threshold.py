"""The "uncertain" threshold: the 95th percentile of the predictive entropy on the first
`SAMPLE` validation images."""

import numpy as np
import pytest

from bnn_cli.posterior import threshold
from bnn_cli.report import metrics


def dirichlet_predictive(images: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(10, 0.3), size=(4, images)).astype(np.float32)


def test_the_threshold_is_the_95th_percentile_of_the_first_sample_images():
    probs = dirichlet_predictive(threshold.SAMPLE + 1500)
    probs[:, threshold.SAMPLE :] = 0.1  # the images past the sample: the highest entropy of all
    total, _, _ = metrics.entropy(probs[:, : threshold.SAMPLE])
    assert threshold.of_probabilities(probs) == pytest.approx(np.quantile(total, 0.95))
    assert len(threshold.sample(np.zeros((threshold.SAMPLE + 1500, 28, 28)))) == threshold.SAMPLE


def test_the_sample_covers_95_percent_of_all_validation_images_to_about_a_point():
    """What the sample costs: its percentile, applied to all 10,000 images, covers 95 % to
    within the binomial error of a 5 % tail in 2,000 images (about 0.5 points)."""
    probs = dirichlet_predictive(10_000, seed=1)
    total, _, _ = metrics.entropy(probs)
    assert (total <= threshold.of_probabilities(probs)).mean() == pytest.approx(0.95, abs=0.01)


def test_fewer_validation_images_than_the_sample_use_them_all():
    probs = dirichlet_predictive(300)
    total, _, _ = metrics.entropy(probs)
    assert threshold.of_probabilities(probs) == pytest.approx(np.quantile(total, 0.95))
