"""`make bench`'s figures: the same from a cold compile cache as from a warm one, and ratios
from interleaved rounds."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def elbo_csv(path: Path, compile_s: float, k: int, rate: float = 10.0) -> Path:
    """What a K-step fit logs: the rows inside a call are stamped evenly over it, so the first
    call's rows share its compile."""
    lines = ["iteration,loss,elapsed_s,val_accuracy"]
    for i in range(10, 410, 10):
        elapsed = (compile_s + k / rate) * i / k if i <= k else compile_s + i / rate
        lines.append(f"{i},1.0,{elapsed:.6f},")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("compile_s", [0.5, 60.0], ids=["warm", "cold"])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_bnn_steady_rate_leaves_the_first_call_and_its_compile_out(tmp_path, compile_s, k):
    path = elbo_csv(tmp_path / "elbo.csv", compile_s, k)
    assert bench.steady_rate(path.parent, skip_iterations=k) == pytest.approx(10.0, rel=1e-3)
    if k == 100 and compile_s == 60.0:  # from row 80, inside the first call: compile counted
        assert bench.steady_rate(path.parent) < 8


SEED_COLD = "pymc-seed-mlp floatX=float32 iters=300 fit_s=95.2 it/s=3.15 steady_it/s=9.04 "
SEED_WARM = "pymc-seed-mlp floatX=float32 iters=300 fit_s=40.1 it/s=7.48 steady_it/s=9.11 "


@pytest.mark.parametrize("line", [SEED_COLD, SEED_WARM], ids=["cold", "warm"])
def test_the_seed_anchor_rate_is_the_one_timed_inside_its_fit(monkeypatch, line):
    monkeypatch.setattr(bench, "run_process", lambda cmd, env=None: (line + "test_acc=0.97", 1, 9))
    result = bench.seed_anchor(300)
    assert 9.0 < result["it_per_s"] < 9.2 and result["test_acc"] == 0.97


SCAN_OUTPUT = """device=gpu arch=mlp batch=500 compile+1st step 3.1s
it=4001 train_s=4.2 it/s=952.1 loss=1 test_acc=0.97
it=8001 train_s=5.6 it/s=1428.4 loss=1 test_acc=0.98
it=12001 train_s=7.0 it/s=1714.1 loss=1 test_acc=0.98
"""


def test_the_jax_anchor_rate_leaves_its_first_compiled_call_out():
    # Its own it/s counts from step one, with the 100-step call's compile: 1714 it/s here.
    assert bench.marginal_rate(SCAN_OUTPUT) == pytest.approx(8000 / 2.8)


def test_ratios_are_medians_of_per_round_ratios():
    results = {
        "bnn mlp": {"rounds": [10.0, 5.0, 9.0]},  # the machine got busy in round two
        "jax_mlp": {"rounds": [10.0, 5.0, 10.0]},
    }
    assert bench.ratio(results, "bnn mlp", "jax_mlp") == "1.00x jax_mlp"
    assert bench.ratio(results, "bnn mlp", "missing") == "—"
    measured = iter([{"it_per_s": 3.0}, {"it_per_s": 1.0}, {"it_per_s": 2.0}])
    summary = bench.interleaved(3, {"a": lambda: next(measured)})
    assert summary["a"]["it_per_s"] == 2.0 and summary["a"]["rounds"] == [3.0, 1.0, 2.0]


def test_a_measure_run_once_is_paired_with_the_first_round():
    order = []
    rates = {"bnn conv": iter([4.0, 6.0, 5.0]), "jax_conv": iter([2.0])}

    def measure(name):
        def run():
            order.append(name)
            return {"it_per_s": next(rates[name])}

        return run

    measures = {name: measure(name) for name in rates}
    summary = bench.interleaved(3, measures, once=frozenset({"jax_conv"}))
    assert order == ["bnn conv", "jax_conv", "bnn conv", "bnn conv"]
    assert summary["bnn conv"]["it_per_s"] == 5.0 and summary["jax_conv"]["rounds"] == [2.0]
    assert bench.ratio(summary, "bnn conv", "jax_conv") == "2.00x jax_conv (one round)"


ANCHOR_OUTPUT = (
    "device=cpu arch=conv layout=NHWC draws=20 images=20000 predictive_s=6.25 draw-images/s=64000\n"
)


def test_evaluation_rows_set_bnn_evaluate_against_the_predictive_anchor(monkeypatch):
    def fake(cmd, env=None):  # bnn evaluate: 9.5 s of wall; the anchor prints its own time
        return (ANCHOR_OUTPUT, 1.0, 50) if "jax_predictive.py" in cmd[1] else ("", 9.5, 900)

    monkeypatch.setattr(bench, "run_process", fake)
    cpu = {"bnn mlp": {"run_dir": "runs/a"}, "bnn conv": {"run_dir": "runs/b"}}
    rows = bench.evaluation_rows(cpu, 20)
    assert rows["conv"]["anchor"]["seconds"] == 6.25
    assert rows["conv"]["ratio"] == pytest.approx(9.5 / 6.25, abs=0.01)
    assert "1.52x jax_predictive (6.2 s)" in bench.table({"evaluation": rows})


@pytest.mark.parametrize("device, conv_anchors", [("gpu", True), ("cpu", False)])
def test_the_gpu_suite_on_a_cpu_leaves_the_conv_anchors_to_make_bench(
    monkeypatch, tmp_path, device, conv_anchors
):
    timed = []
    monkeypatch.setattr(bench, "interleaved", lambda rounds, measures: timed.extend(measures))
    monkeypatch.setattr(bench, "bnn_fit", lambda *args, **kwargs: {"wall_s": 1.0})
    args = type("Args", (), {"gpu_iters": 100, "rounds": 1, "shipped_iters": 200})()
    bench.gpu_rates(args, tmp_path, device)
    assert {"bnn mlp", "jax_mlp", "jax_mlp_scan", "bnn conv"} <= set(timed)
    assert ("jax_conv" in timed) == conv_anchors and ("jax_conv_scan" in timed) == conv_anchors
