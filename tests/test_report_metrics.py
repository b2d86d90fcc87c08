"""Metrics against values worked out by hand on tiny arrays."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_cli.report import metrics

LOG2 = math.log(2)


def one_hot_probs(labels, n_classes=10, draws=2):
    return np.broadcast_to(np.eye(n_classes)[labels], (draws, len(labels), n_classes)).copy()


def test_perfect_confident_predictions():
    labels = np.array([3, 1, 4, 1, 5])
    probs = one_hot_probs(labels)
    result = metrics.compute_metrics(probs, labels)
    assert result["accuracy"] == 1.0
    assert result["nll"] == pytest.approx(0.0, abs=1e-12)
    assert result["brier"] == pytest.approx(0.0)
    assert result["ece"] == pytest.approx(0.0)
    assert result["mean_entropy"] == result["mean_aleatoric"] == result["mean_epistemic"] == 0.0
    # No errors to detect: the AUROCs are undefined, reported as None (JSON null).
    assert result["auroc_entropy"] is None and result["auroc_epistemic"] is None
    assert result["coverage_accuracy"]["0.5"] == 1.0
    assert result["chi_square"] == 0.0 and result["chi_square_p"] == pytest.approx(1.0)


def test_maximally_uncertain_uniform_predictions():
    labels = np.array([0, 1, 2, 3])
    probs = np.full((3, 4, 10), 0.1)
    # Ties in the argmax go to class 0, so only the first image counts as right.
    assert metrics.accuracy(probs, labels) == 0.25
    assert metrics.nll(probs, labels) == pytest.approx(math.log(10))
    assert metrics.brier(probs, labels) == pytest.approx(0.9**2 + 9 * 0.1**2)
    total, aleatoric, epistemic = metrics.entropy(probs)
    np.testing.assert_allclose(total, math.log(10))
    np.testing.assert_allclose(aleatoric, math.log(10))
    np.testing.assert_allclose(epistemic, 0.0, atol=1e-12)
    pred = metrics.summarize(probs, labels)
    # Confidence 0.1 in every image, accuracy 0.25: one bin, gap 0.15.
    assert metrics.ece(pred.confidence, pred.correct) == pytest.approx(0.15)


def test_disagreeing_draws_have_epistemic_uncertainty():
    # Image 0: two confident draws that disagree; image 1: [0.9, 0.1] and [0.5, 0.5].
    probs = np.array([[[1.0, 0.0], [0.9, 0.1]], [[0.0, 1.0], [0.5, 0.5]]])
    total, aleatoric, epistemic = metrics.entropy(probs)
    h = lambda *p: -sum(x * math.log(x) for x in p if x > 0)  # noqa: E731
    assert total[0] == pytest.approx(LOG2)
    assert aleatoric[0] == pytest.approx(0.0)
    assert epistemic[0] == pytest.approx(LOG2)
    assert total[1] == pytest.approx(h(0.7, 0.3))
    assert aleatoric[1] == pytest.approx((h(0.9, 0.1) + h(0.5, 0.5)) / 2)
    assert epistemic[1] == pytest.approx(h(0.7, 0.3) - (h(0.9, 0.1) + LOG2) / 2)
    assert epistemic[1] > 0


def test_nll_and_brier_by_hand():
    probs = np.array([[[0.5, 0.5, 0.0], [0.25, 0.7, 0.05]]])
    labels = np.array([0, 0])
    assert metrics.nll(probs, labels) == pytest.approx((math.log(2) + math.log(4)) / 2)
    brier_0 = 0.5**2 + 0.5**2
    brier_1 = 0.75**2 + 0.7**2 + 0.05**2
    assert metrics.brier(probs, labels) == pytest.approx((brier_0 + brier_1) / 2)


def test_nll_is_floored_for_a_zero_probability():
    probs = np.array([[[1.0, 0.0]]])
    assert metrics.nll(probs, np.array([1])) == pytest.approx(-math.log(1e-12))


def test_ece_of_a_perfectly_calibrated_model_is_zero():
    probs = np.tile([0.7, 0.3], (1, 10, 1))
    labels = np.array([0] * 7 + [1] * 3)
    pred = metrics.summarize(probs, labels)
    assert pred.correct.mean() == pytest.approx(0.7)
    assert metrics.ece(pred.confidence, pred.correct) == pytest.approx(0.0)


def test_ece_by_hand_over_two_bins():
    confidence = np.array([0.9, 0.9, 0.65, 0.65])
    correct = np.array([True, False, True, True])
    # Half the images at 0.9 with accuracy 0.5, half at 0.65 with accuracy 1.
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.65)
    assert metrics.ece(confidence, correct) == pytest.approx(expected)
    table = metrics.reliability_bins(confidence, correct)
    assert table["counts"].sum() == 4
    assert np.count_nonzero(table["counts"]) == 2


@pytest.mark.parametrize(
    "scores, positives, expected",
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),  # perfect separation
        ([0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1], 0.0),  # reversed
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # all tied
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),  # 3 of 4 pairs ordered
        ([1.0, 1.0, 2.0], [1, 0, 0], 0.25),  # one tie (1/2) and one loss
    ],
)
def test_auroc_known_cases(scores, positives, expected):
    assert metrics.auroc(np.array(scores), np.array(positives, bool)) == pytest.approx(expected)


def test_auroc_is_nan_when_a_class_is_empty():
    assert math.isnan(metrics.auroc(np.array([0.1, 0.2]), np.array([False, False])))
    assert math.isnan(metrics.auroc(np.array([0.1, 0.2]), np.array([True, True])))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=12))
def test_auroc_matches_counting_pairs(pairs):
    scores = np.array([s for s, _ in pairs], float)
    positives = np.array([p for _, p in pairs])
    pos, neg = scores[positives], scores[~positives]
    if pos.size == 0 or neg.size == 0:
        return
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert metrics.auroc(scores, positives) == pytest.approx(wins / (pos.size * neg.size))


def test_accuracy_coverage_rejects_the_most_uncertain_first():
    uncertainty = np.array([0.4, 0.1, 0.3, 0.2])
    correct = np.array([True, True, False, True])  # sorted by uncertainty: T, T, F, T
    result = metrics.accuracy_coverage(uncertainty, correct, (1.0, 0.75, 0.5, 0.25, 0.1))
    assert result["at"] == pytest.approx({1.0: 0.75, 0.75: 2 / 3, 0.5: 1.0, 0.25: 1.0, 0.1: 1.0})
    np.testing.assert_allclose(result["coverage"], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(result["accuracy"], [1.0, 1.0, 2 / 3, 0.75])
    assert result["auc"] == pytest.approx((1 + 1 + 2 / 3 + 0.75) / 4)


def test_accuracy_coverage_splits_ties_evenly():
    flat = metrics.accuracy_coverage(np.zeros(4), np.array([True, False, True, False]))
    np.testing.assert_allclose(flat["accuracy"], 0.5)
    partial = metrics.accuracy_coverage(np.array([0.0, 1.0, 1.0]), np.array([True, True, False]))
    np.testing.assert_allclose(partial["accuracy"], [1.0, 0.75, 2 / 3])
    swapped = metrics.accuracy_coverage(np.array([0.0, 1.0, 1.0]), np.array([True, False, True]))
    np.testing.assert_allclose(swapped["accuracy"], partial["accuracy"])


def test_chi_square_by_hand():
    labels = np.array([0, 0, 1, 2])  # expected counts [2, 1, 1]
    probs = np.zeros((2, 4, 3))
    probs[0, np.arange(4), labels] = 1.0  # draw 0 predicts the labels: statistic 0
    probs[1, np.arange(4), [0, 1, 1, 1]] = 1.0  # counts [1, 3, 0]: 1/2 + 4/1 + 1/1 = 5.5
    statistic, p_value = metrics.chi_square(probs, labels)
    assert statistic == pytest.approx(2.75)
    assert p_value == pytest.approx(math.exp(-2.75 / 2))  # chi2 with 2 dof: sf(x) = e^(-x/2)


def test_chi_square_skips_classes_absent_from_the_labels():
    labels = np.array([0, 1])
    probs = np.zeros((1, 2, 3))
    probs[0, :, 2] = 1.0  # predicts the absent class 2 for both: counts [0, 0] vs [1, 1]
    statistic, p_value = metrics.chi_square(probs, labels)
    assert statistic == pytest.approx(2.0)
    assert p_value == pytest.approx(0.15729920705028513)  # chi2.sf(2, df=1)


def test_compute_metrics_keys_and_json():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=(4, 30))
    labels = rng.integers(0, 10, size=30)
    result = metrics.compute_metrics(probs, labels)
    assert list(result) == [
        "n_images", "n_draws", "accuracy", "nll", "brier", "ece", "mean_entropy",
        "mean_aleatoric", "mean_epistemic", "auroc_entropy", "auroc_epistemic",
        "coverage_accuracy", "coverage_auc", "chi_square", "chi_square_p",
    ]  # fmt: skip
    assert result["n_images"] == 30 and result["n_draws"] == 4
    assert list(result["coverage_accuracy"]) == ["0.5", "0.8", "0.9", "0.95", "1.0"]
    assert result["coverage_accuracy"]["1.0"] == pytest.approx(result["accuracy"])
    assert result["mean_entropy"] == pytest.approx(
        result["mean_aleatoric"] + result["mean_epistemic"]
    )
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_per_class_by_hand():
    labels = np.array([0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 1])
    probs = np.eye(3)[predicted][None] * 0.8 + 0.2 / 3
    rows = metrics.per_class(probs, labels, class_names=["zero", "one", "two"])
    assert [r["class"] for r in rows] == ["zero", "one", "two"]
    zero, one, two = rows
    assert (zero["count"], zero["accuracy"], zero["recall"], zero["precision"]) == (2, 0.5, 0.5, 1)
    assert (zero["top_confusion"], zero["top_confusion_count"]) == ("one", 1)
    assert zero["error_share"] == 0.5
    assert (one["accuracy"], one["precision"], one["error_share"]) == (1.0, 0.5, 0.0)
    assert (one["top_confusion"], one["top_confusion_count"]) == ("", 0)
    assert two["precision"] is None  # never predicted
    assert (two["accuracy"], two["top_confusion"], two["error_share"]) == (0.0, "one", 0.5)
    assert zero["mean_confidence"] == pytest.approx(0.8 + 0.2 / 3)
    assert zero["mean_epistemic"] == pytest.approx(0.0)
    assert zero["ece"] == pytest.approx(abs(0.5 - (0.8 + 0.2 / 3)))
    assert set(zero) == {
        "class", "count", "accuracy", "precision", "recall", "mean_confidence", "mean_entropy",
        "mean_aleatoric", "mean_epistemic", "ece", "error_share", "top_confusion",
        "top_confusion_count",
    }  # fmt: skip


def test_per_class_row_for_a_class_without_images():
    labels = np.array([0, 1])
    rows = metrics.per_class(one_hot_probs(labels, n_classes=3), labels)
    assert [r["class"] for r in rows] == ["0", "1", "2"]
    assert rows[2]["count"] == 0
    assert rows[2]["accuracy"] is None and rows[2]["ece"] is None
    assert rows[2]["error_share"] is None  # no errors at all


def test_confusion_matrix_counts():
    matrix = metrics.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


@pytest.mark.parametrize(
    "probs, labels, message",
    [
        (np.ones((4, 10)), np.zeros(4, int), "shape (draws, n, classes)"),
        (np.ones((1, 4, 10)), np.zeros(3, int), "labels must have shape (4,)"),
        (np.ones((1, 2, 10)), np.array([0.0, 1.0]), "labels must be integers"),
        (np.ones((1, 2, 10)), np.array([0, 10]), "labels must lie in 0..9"),
    ],
)
def test_bad_inputs_are_named(probs, labels, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        metrics.summarize(probs, labels)


def test_ood_metrics_separate_in_from_out():
    low, high = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0])
    perfect = metrics.ood_metrics(low, low / 10, high, high / 10)
    assert perfect["auroc_entropy"] == 1.0 and perfect["auroc_mi"] == 1.0
    assert perfect["n_images"] == 2
    assert perfect["mean_entropy_in"] == pytest.approx(0.2)
    assert perfect["mean_mi_out"] == pytest.approx(0.15)
    reversed_ = metrics.ood_metrics(high, low, low, high)
    assert reversed_["auroc_entropy"] == 0.0 and reversed_["auroc_mi"] == 1.0
    json.dumps(perfect)  # plain numbers only
