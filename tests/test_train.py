"""`bnn train` end to end on the real MNIST files: the run directory, seeding, interruption."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bnn_cli import runs
from bnn_cli.config import load_config
from bnn_cli.fit import steppers
from bnn_cli.train import train

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "inference.iterations=40",
    "inference.eval_every=20",
    "model.hidden=[16]",
    "data.train_size=2000",
    "data.val_size=500",
    "evaluate.draws=4",
]


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115


@pytest.mark.slow
def test_smoke_config_end_to_end_through_the_cli(real_data_dir, tmp_path):
    """The shipped smoke config: trains, evaluates, and beats 90 % test accuracy."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bnn_cli.cli",
            "train",
            str(ROOT / "configs" / "smoke.yaml"),
            "--runs-dir",
            str(tmp_path),
            "--data-dir",
            str(real_data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "complete" and status["iterations_done"] == 1000
    for name in (
        "config.yaml",
        "meta.json",
        "elbo.csv",
        "approx.npz",
        "metrics.json",
        "per_class.csv",
        "report.md",
        "report.html",
    ):
        assert (run_dir / name).is_file(), name
    header = (run_dir / "elbo.csv").read_text().splitlines()[0]
    assert header == "iteration,loss,elapsed_s,val_accuracy,val_nll,val_mi"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.90
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["seeds"]["config"] == 0 and "pymc" in meta["versions"]
    device = meta["pytensor"]["device"]  # "cpu", or e.g. "gpu: NVIDIA H200" where JAX has one
    assert device == "cpu" or device.startswith(("gpu: ", "cuda: ", "rocm: "))
    k = meta["pytensor"]["steps_per_call"]
    assert f"fitting with PyTensor's jax backend on {device}, {k} step(s) per call" in result.stderr


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_parameters(real_data_dir, tmp_path):
    config = load_config(ROOT / "configs" / "smoke.yaml", TINY)
    first = train(config, tmp_path / "a", str(real_data_dir), quiet())
    second = train(config, tmp_path / "b", str(real_data_dir), quiet())
    other_seed = train(
        load_config(ROOT / "configs" / "smoke.yaml", [*TINY, "seed=1"]),
        tmp_path / "c",
        str(real_data_dir),
        quiet(),
    )
    a, b, c = (np.load(d / "approx.npz") for d in (first, second, other_seed))
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["mu/out_w"], c["mu/out_w"])
    assert (first / "elbo.csv").read_text().split("\n")[1].split(",")[1] == (
        second / "elbo.csv"
    ).read_text().split("\n")[1].split(",")[1]


@pytest.mark.slow
@pytest.mark.parametrize(("k", "saved"), [(1, 25), (10, 20)])
def test_interrupted_fit_saves_parameters_and_says_interrupted(
    real_data_dir, tmp_path, monkeypatch, k, saved
):
    """Ctrl-C during iteration 26: one step per call stops there; with 10 steps per call the
    call in flight is dropped and the parameters after iteration 20 are saved."""
    config = load_config(ROOT / "configs" / "smoke.yaml", [*TINY, f"inference.steps_per_call={k}"])
    stepper = steppers.OneStep if k == 1 else steppers.MultiStep
    real_call = stepper.__call__

    def interrupted_call(self, start):
        if start == saved:
            raise KeyboardInterrupt
        return real_call(self, start)

    monkeypatch.setattr(stepper, "__call__", interrupted_call)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, str(real_data_dir), quiet())
    (run_dir,) = runs.list_runs(tmp_path)
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and status["iterations_done"] == saved
    assert "mu/out_w" in np.load(run_dir / "approx.npz").files
    assert json.loads((run_dir / "meta.json").read_text())["pytensor"]["steps_per_call"] == k
    with pytest.raises(Exception, match="interrupted, not complete"):
        runs.open_run(run_dir)
    assert runs.open_run(run_dir, allow_incomplete=True).status["state"] == "interrupted"


@pytest.mark.slow
def test_a_short_fit_records_diagnostics_and_is_flagged_not_converged(real_fashion_dir, tmp_path):
    """40 iterations from start_sigma: the scales are still being pushed at full step. On
    Fashion-MNIST, with the real MNIST digits as its out-of-distribution set."""
    from bnn_cli.posterior.evaluate import evaluate_run

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    fashion = ["data.dataset=fashion-mnist", "evaluate.ood=[mnist]"]
    config = load_config(ROOT / "configs" / "smoke.yaml", [*TINY, *fashion, "evaluate.val_draws=3"])
    run_dir = train(config, tmp_path, str(real_fashion_dir), console)
    status = runs.read_status(run_dir)
    assert status["converged"] is False
    verdict = status["convergence"]
    # the last 10 % opens at 36, moved back to the last call boundary (K = 10 on a CPU: 30)
    k = steppers.steps_per_call(config.inference)
    assert verdict["window"] == [36 - 36 % k, 40] and set(verdict["tensors"]) == {
        "dense1_w",
        "dense1_b",
        "out_w",
        "out_b",
    }
    assert "warning: the approximation was still moving when the fit stopped" in " ".join(
        buffer.getvalue().split()
    )
    assert "Raise inference.iterations (now 40)" in verdict["message"]

    with open(run_dir / "elbo.csv") as handle:
        evals = [r for r in csv.DictReader(handle) if r["val_nll"]]
    assert [int(r["iteration"]) for r in evals] == [20, 40]
    assert all(float(r["val_nll"]) > 0 and float(r["val_mi"]) >= 0 for r in evals)
    with open(run_dir / "diagnostics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["iteration"], r["tensor"]) for r in rows[:8]] == [
        (str(iteration), tensor)
        for iteration in (0, 20)
        for tensor in ("dense1_w", "dense1_b", "out_w", "out_b")
    ]
    sigma = [float(r["median_sigma"]) for r in rows if r["tensor"] == "dense1_w"]
    assert sigma[0] == pytest.approx(config.inference.start_sigma, rel=1e-3)
    assert sigma[0] < sigma[1] < sigma[2]  # growing from there, step by step

    result = evaluate_run(
        run_dir,
        draws=4,
        split="test",
        data_dir=str(real_fashion_dir),
        allow_incomplete=False,
        console=console,
    )
    ood = json.loads((run_dir / "metrics.json").read_text())["ood"]["mnist"]
    assert ood == result["ood"]["mnist"] and ood["n_images"] == 10_000
    # A 40-step network has no reliable opinion on digits yet: check the numbers' sense only.
    assert 0.0 <= ood["auroc_entropy"] <= 1.0 and 0.0 <= ood["auroc_mi"] <= 1.0
    assert ood["mean_entropy_in"] == pytest.approx(result["mean_entropy"])
    assert ood["mean_mi_in"] == pytest.approx(result["mean_epistemic"])
    report = (run_dir / "report.md").read_text()
    assert report.split("\n")[2] == "## Warning: the fit had not converged"
    assert "## Out-of-distribution images" in report
    for plot in ("posterior.png", "fit_diagnostics.png", "ood_mnist.png"):
        assert (run_dir / "plots" / plot).read_bytes().startswith(b"\x89PNG"), plot
    assert "ood_mnist_images.png" in report
    assert "| Ankle boot | 1000 |" in report  # the per-class table names the clothes
    with open(run_dir / "per_class.csv") as handle:
        assert [r["class"] for r in csv.DictReader(handle)][:2] == ["T-shirt/top", "Trouser"]


@pytest.mark.slow
def test_a_missing_ood_set_fails_before_anything_is_written(real_data_dir, tmp_path, bnn_here):
    config = load_config(ROOT / "configs" / "smoke.yaml", TINY)
    run_dir = train(config, tmp_path / "runs", str(real_data_dir), quiet())
    only_mnist = tmp_path / "data"
    only_mnist.mkdir()
    (only_mnist / "mnist").symlink_to(real_data_dir / "mnist")
    result = bnn_here("evaluate", run_dir, "--ood", "fashion-mnist", "--data-dir", only_mnist)
    assert result.returncode == 3, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: no fashion-mnist data in '{only_mnist / 'fashion-mnist'}' (run 'bnn "
            "download-mnist --dataset fashion-mnist"
        )
    )
    assert not (run_dir / "metrics.json").exists()


def rising_validation(monkeypatch, nlls):
    """Validation figures that follow `nlls`, one per validation; returns the parameters each
    validation saw, in order."""
    from bnn_cli import train as train_module

    seen = []

    def figures(predict_fn, arrays, config, splits):
        seen.append(arrays)
        nll = nlls[len(seen) - 1]
        return {"val_accuracy": 0.9, "val_nll": nll, "val_mi": 0.01}

    monkeypatch.setattr(train_module, "validation_figures", figures)
    return seen


EARLY = [
    "inference.iterations=60",
    "inference.eval_every=10",
    "inference.early_stopping=val_nll",
    "inference.patience=2",
    "model.hidden=[16]",
    "data.train_size=2000",
    "data.val_size=500",
    "evaluate.draws=4",
]


@pytest.mark.slow
def test_early_stopping_stops_when_validation_rises_and_keeps_the_best_point(
    real_data_dir, tmp_path, monkeypatch
):
    from bnn_cli.report.compare import collect_row

    seen = rising_validation(monkeypatch, [0.5, 0.4, 0.6, 0.7, 0.3, 0.2])
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    run_dir = train(
        load_config(ROOT / "configs" / "smoke.yaml", EARLY), tmp_path, str(real_data_dir), console
    )
    status = runs.read_status(run_dir)
    assert status["state"] == "complete" and status["iterations_done"] == 40
    assert status["kept_iteration"] == 20 and status["stopped_early"] is True
    verdict = status["convergence"]
    assert verdict["stopped_on_validation"] and verdict["kept_iteration"] == 20
    assert "stopped on validation at iteration 40" in buffer.getvalue()
    assert "warning" not in buffer.getvalue()
    with np.load(run_dir / "approx.npz") as saved:
        for key, value in seen[1].items():  # the second validation: iteration 20
            np.testing.assert_array_equal(saved[key], value)
        assert not np.array_equal(saved["mu/out_w"], seen[3]["mu/out_w"])
    assert collect_row(run_dir)["kept_iteration"] == 20


@pytest.mark.slow
def test_an_interrupted_fit_with_early_stopping_saves_its_best_point(
    real_data_dir, tmp_path, monkeypatch
):
    seen = rising_validation(monkeypatch, [0.5, 0.4, 0.6, 0.7])
    config = load_config(ROOT / "configs" / "smoke.yaml", [*EARLY, "inference.steps_per_call=10"])
    real_call = steppers.MultiStep.__call__

    def interrupted_call(self, start):
        if start == 30:
            raise KeyboardInterrupt
        return real_call(self, start)

    monkeypatch.setattr(steppers.MultiStep, "__call__", interrupted_call)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, str(real_data_dir), quiet())
    (run_dir,) = runs.list_runs(tmp_path)
    assert runs.read_status(run_dir)["state"] == "interrupted"
    with np.load(run_dir / "approx.npz") as saved:
        np.testing.assert_array_equal(saved["mu/out_w"], seen[1]["mu/out_w"])


@pytest.mark.slow
def test_a_tempered_fit_says_so_in_its_report_and_in_compare(real_data_dir, tmp_path):
    from bnn_cli.posterior.evaluate import evaluate_run
    from bnn_cli.report.compare import collect_row

    config = load_config(
        ROOT / "configs" / "smoke.yaml",
        [*TINY, "inference.kl_weight=0.2", "inference.kl_warmup=20"],
    )
    run_dir = train(config, tmp_path, str(real_data_dir), quiet())
    evaluate_run(run_dir, None, "test", str(real_data_dir), False, quiet())
    assert "tempered: KL x0.2, warm-up 20 it" in (run_dir / "report.md").read_text()
    assert collect_row(run_dir)["objective"] == "tempered: KL x0.2, warm-up 20 it"


@pytest.mark.slow
def test_a_map_fit_is_one_network_and_says_so(real_data_dir, tmp_path):
    """inference.method map: the same model and minibatches, a point estimate; its predictive
    is one network (1 draw, mutual information 0), and its report and bnn compare say MAP."""
    from bnn_cli.fit.advi import MAP_SIGMA
    from bnn_cli.posterior.evaluate import evaluate_run
    from bnn_cli.report.compare import collect_row

    config = load_config(
        ROOT / "configs" / "smoke.yaml", [*TINY, "inference.method=map", "inference.kl_weight=0.5"]
    )
    run_dir = train(config, tmp_path, str(real_data_dir), quiet())
    metrics = evaluate_run(run_dir, 50, "test", str(real_data_dir), False, quiet())
    assert metrics["draws"] == 1 and metrics["mean_epistemic"] == 0
    assert metrics["accuracy"] > 0.5  # 40 steps of a 16-unit MLP: well above chance
    arrays = np.load(run_dir / "approx.npz")
    rho = np.log(np.expm1(MAP_SIGMA))
    assert all(np.allclose(arrays[k], rho) for k in arrays.files if k.startswith("rho/"))
    assert "MAP, " in (run_dir / "report.md").read_text()
    assert collect_row(run_dir)["objective"] == "MAP (no posterior, prior x0.5)"
