"""write_report on a tiny synthetic run directory: every file, real PNGs, an offline HTML."""

import base64
import csv
import json
import re
import struct

import numpy as np
import pytest
from rich.console import Console

from bnn_cli.config import Config
from bnn_cli.report import metrics
from bnn_cli.report.render import PER_CLASS_COLUMNS, write_report
from bnn_cli.runs.files import read_elbo_csv

# One worker builds the module's report and runs every test that reads it.
pytestmark = pytest.mark.xdist_group("report-render")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMMON_PLOTS = {
    "reliability.png",
    "coverage.png",
    "per_class_uncertainty.png",
    "entropy_hist.png",
    "confusion.png",
    "uncertain_digits.png",
}
METRIC_KEYS = {
    "n_images",
    "n_draws",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "mean_entropy",
    "mean_aleatoric",
    "mean_epistemic",
    "auroc_entropy",
    "auroc_epistemic",
    "coverage_accuracy",
    "coverage_auc",
    "chi_square",
    "chi_square_p",
    "split",
    "draws",
    "evaluated_at",
    "converged",
}


def synthetic_predictions(n=50, draws=6, seed=0):
    """Probabilities that mostly favour the true class, with draws that disagree a little."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    logits = 3.0 * np.eye(10)[labels] + rng.normal(0, 1.5, size=(n, 10))
    logits = logits + rng.normal(0, 0.8, size=(draws, n, 10))
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    images = rng.random((n, 28, 28))
    return probs.astype(np.float32), labels, images


def make_run_dir(path, *, prior="fixed", dataset="mnist", elbo=True):
    config = Config().to_dict()
    config.update(name=f"tiny-{prior}")
    config["prior"]["kind"] = prior
    config["data"]["dataset"] = dataset
    status = {
        "state": "complete",
        "created": "2026-01-01T00:00:00Z",
        "iterations_done": 300,
        "wall_s": 75.5,
    }
    path.mkdir()
    if elbo:
        with open(path / "elbo.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["iteration", "loss", "elapsed_s", "val_accuracy"])
            for i in range(1, 301):
                val = f"{0.5 + i / 1000:.3f}" if i % 100 == 0 else ""
                writer.writerow([i, 5e4 / i + 100, i * 0.25, val])
            handle.write("301,12")  # a torn last line, as after a crash: skipped
    return config, status


@pytest.fixture(scope="module")
def hierarchical_report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run-hier"
    config, status = make_run_dir(run_dir, prior="hierarchical")
    probs, labels, images = synthetic_predictions()
    rng = np.random.default_rng(1)
    scales = {"w0_scale": rng.gamma(4, 0.02, 200), "w1_scale": rng.gamma(4, 0.05, 200)}
    console = Console(record=True, width=100)
    result = write_report(
        run_dir,
        probs,
        labels,
        images,
        split="test",
        config=config,
        status=status,
        scale_draws=scales,
        console=console,
    )
    return run_dir, result, probs, labels, console.export_text()


def test_every_file_is_written(hierarchical_report):
    run_dir = hierarchical_report[0]
    for name in ("metrics.json", "per_class.csv", "report.md", "report.html"):
        assert (run_dir / name).is_file(), name
    plots = {p.name for p in (run_dir / "plots").iterdir()}
    assert plots == COMMON_PLOTS | {"elbo.png", "prior_scales.png"}


def test_plots_are_real_pngs(hierarchical_report):
    for path in (hierarchical_report[0] / "plots").iterdir():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), path.name
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
        assert width > 200 and height > 150, path.name
        assert len(data) > 5000, path.name


def test_html_is_self_contained(hierarchical_report):
    run_dir = hierarchical_report[0]
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    for forbidden in ("http://", "https://", 'src="//', "<script", "<link", "url("):
        assert forbidden not in page.lower(), forbidden
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(list((run_dir / "plots").iterdir()))
    on_disk = {p.read_bytes() for p in (run_dir / "plots").iterdir()}
    assert {base64.b64decode(data) for data in embedded} == on_disk
    assert "tiny-hierarchical" in page and "<table>" in page


def test_metrics_json(hierarchical_report):
    run_dir, result, probs, labels, _ = hierarchical_report

    def no_nan(constant):
        raise AssertionError(f"metrics.json holds {constant}, which is not JSON")

    saved = json.loads((run_dir / "metrics.json").read_text(), parse_constant=no_nan)
    assert set(saved) == METRIC_KEYS
    assert saved == result
    assert (saved["split"], saved["draws"], saved["n_images"]) == ("test", 6, 50)
    assert saved["accuracy"] == pytest.approx(metrics.accuracy(probs, labels))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", saved["evaluated_at"])


def test_per_class_csv(hierarchical_report):
    with open(hierarchical_report[0] / "per_class.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == PER_CLASS_COLUMNS
    assert len(rows) == 11
    assert [r[0] for r in rows[1:]] == [str(c) for c in range(10)]
    assert sum(int(r[1]) for r in rows[1:]) == 50


def test_markdown_links_every_plot(hierarchical_report):
    run_dir = hierarchical_report[0]
    text = (run_dir / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# bnn report: tiny-hierarchical")
    links = re.findall(r"\]\((plots/[^)]+\.png)\)", text)
    assert sorted(links) == sorted(f"plots/{p.name}" for p in (run_dir / "plots").iterdir())
    assert "hierarchical: N(0, s) per tensor" in text and "| Accuracy |" in text
    assert "300 of 50000 iterations" in text and "1 min 16 s" in text


def test_console_summary(hierarchical_report):
    _, result, _, _, printed = hierarchical_report
    assert "Accuracy" in printed and f"{result['accuracy']:.2%}" in printed
    assert "AUROC errors (entropy)" in printed and "Epistemic" in printed


def test_no_temporary_files_are_left(hierarchical_report):
    leftovers = [
        p
        for p in hierarchical_report[0].rglob("*")
        if p.name.startswith(".") or p.name.endswith(".tmp")
    ]
    assert leftovers == []


def test_fixed_prior_without_elbo_csv(tmp_path):
    """No elbo.csv (e.g. a run evaluated before it logged anything): no training plot, no
    prior plot, everything else; Fashion-MNIST gets its class names."""
    run_dir = tmp_path / "run-fixed"
    config, status = make_run_dir(run_dir, dataset="fashion-mnist", elbo=False)
    probs, labels, images = synthetic_predictions(n=30, draws=3, seed=2)
    result = write_report(run_dir, probs, labels, images, split="val", config=config, status=status)
    assert {p.name for p in (run_dir / "plots").iterdir()} == COMMON_PLOTS
    assert result["split"] == "val"
    rows = list(csv.DictReader((run_dir / "per_class.csv").read_text().splitlines()))
    assert rows[0]["class"] == "T-shirt/top" and rows[9]["class"] == "Ankle boot"
    assert "elbo.png" not in (run_dir / "report.html").read_text(encoding="utf-8")


def test_read_elbo_csv_tolerates_gaps(tmp_path):
    assert read_elbo_csv(tmp_path) is None  # no elbo.csv
    (tmp_path / "elbo.csv").write_text("iteration,loss,elapsed_s,val_accuracy\n")
    assert read_elbo_csv(tmp_path) is None
    (tmp_path / "elbo.csv").write_text(
        "iteration,loss,elapsed_s,val_accuracy\n1,10.5,0.1,\n2,9.5,0.2,0.81\n3,oops,0.3,\n"
    )
    elbo = read_elbo_csv(tmp_path)
    np.testing.assert_array_equal(elbo["iteration"], [1, 2])
    np.testing.assert_array_equal(elbo["loss"], [10.5, 9.5])
    assert np.isnan(elbo["val_accuracy"][0]) and elbo["val_accuracy"][1] == 0.81


def test_posterior_ood_and_convergence_parts(tmp_path):
    """A run with approx.npz, diagnostics.csv, a not-converged verdict and an OOD set: the
    warning comes first, the OOD section and the posterior plots are there."""
    from bnn_cli.report.fit_report import OodSet

    run_dir = tmp_path / "run"
    config, status = make_run_dir(run_dir)
    status.update(
        converged=False,
        convergence={"converged": False, "window": [270, 300], "message": "still moving"},
    )
    (run_dir / "diagnostics.csv").write_text(
        "iteration,tensor,size,median_sigma,share_snr_below_1\n"
        "100,w,20,0.001,0.1\n200,w,20,0.002,0.2\n300,w,20,0.004,0.3\n"
    )
    rng = np.random.default_rng(3)
    arrays = {"mu/w": rng.normal(size=(4, 5)), "rho/w": rng.normal(-5, 0.5, size=(4, 5))}
    arrays.update({"mu/b": np.zeros(1), "rho/b": np.full(1, -5.0)})
    probs, labels, images = synthetic_predictions()
    flat = np.full((6, 30, 10), 0.1, dtype=np.float32)  # maximal entropy: clearly out
    result = write_report(
        run_dir,
        probs,
        labels,
        images,
        split="test",
        config=config,
        status=status,
        arrays=arrays,
        ood={"fashion-mnist": OodSet(rng.random((30, 28, 28)), flat)},
    )
    assert result["converged"] is False
    assert result["ood"]["fashion-mnist"]["auroc_entropy"] == 1.0
    assert result["ood"]["fashion-mnist"]["n_images"] == 30
    text = (run_dir / "report.md").read_text()
    assert text.split("\n")[2:5] == [
        "## Warning: the fit had not converged",
        "",
        "**still moving**",
    ]
    assert "| fashion-mnist | 30 | 1.0000 | 0.0000 | 1.3897 / 2.3026 |" in text
    plots = {p.name for p in (run_dir / "plots").iterdir()}
    assert {
        "posterior.png",
        "fit_diagnostics.png",
        "ood_fashion-mnist.png",
        "ood_fashion-mnist_images.png",
    } <= plots
    html_text = (run_dir / "report.html").read_text()
    assert "<strong>still moving</strong>" in html_text
