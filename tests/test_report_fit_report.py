"""The report's posterior parts: the convergence paragraph and the diagnostics file."""

import numpy as np

from bnn_cli.report import fit_report
from bnn_cli.runs import files


def test_convergence_paragraph_warns_or_confirms():
    assert fit_report.convergence_paragraphs({}) is None  # runs from before the verdict
    moving = {"convergence": {"converged": False, "window": [9, 10], "message": "still moving"}}
    assert fit_report.convergence_paragraphs(moving) == (
        "Warning: the fit had not converged",
        ["**still moving**"],
    )
    title, (text,) = fit_report.convergence_paragraphs(
        {"convergence": {"converged": True, "window": [9000, 10000]}}
    )
    assert title == "Convergence" and "(9000-10000)" in text


def test_diagnostics_csv_becomes_series_per_tensor(tmp_path):
    path = tmp_path / "diagnostics.csv"
    path.write_text(
        "iteration,tensor,size,median_sigma,share_snr_below_1\n"
        "10,w,4,0.001,0.25\n10,b,2,0.002,0.5\n20,w,4,0.003,0.75\n20,b,torn"
    )
    series = files.read_diagnostics_csv(tmp_path)
    assert list(series) == ["w", "b"]
    np.testing.assert_array_equal(series["w"]["median_sigma"], [0.001, 0.003])
    np.testing.assert_array_equal(series["b"]["iteration"], [10])  # the torn row is skipped
    assert files.read_diagnostics_csv(tmp_path / "absent") == {}


def test_ood_captions_name_the_set():
    assert fit_report.ood_caption("ood_fashion-mnist.png").startswith("fashion-mnist: uncertainty")
    assert fit_report.ood_caption("ood_fashion-mnist_images.png") == (
        "fashion-mnist: the most and least uncertain images"
    )
