"""`make bench`: bnn's speed against the two anchors, measured in one run on one machine.

Measures steady iterations per second of bnn's MLP and conv fits and of both anchors
(`../shared/anchors`) in interleaved rounds (bnn, anchor, bnn, anchor, ...: a drift in the
machine's load hits both, and the median of the per-round ratios cancels it), bnn's graph compile
time from a cold compile cache, the peak resident memory of each process, and `bnn evaluate`
(report included) against the hand-written JAX predictive of as many draw-images. Every rate
is timed inside its fit, past compile and warm-up, so it is the same from a cold cache as from a
warm one. Where JAX sees a GPU it adds the GPU rows: bnn against
`jax_mfvi.py` one step per call and with `SCAN=1`, and the shipped configs trained and evaluated
end to end. Writes `bench/results.json` and prints a markdown table.

usage: python bench/run.py [--rounds N] [--mlp-iters N] [--conv-iters N] [--seed-iters N]
                           [--gpu-iters N] [--cpu-k K] [--eval-draws N] [--skip-anchors]
                           [--backends jax,c]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from bnn_cli.fit.steppers import CPU_STEPS_PER_CALL
from bnn_cli.runs import files

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ANCHORS = SHARED / "anchors"
DATA = SHARED / "data"


def run_process(cmd: list[str], env: dict | None = None) -> tuple[str, float, float]:
    """Run a command; return (stdout + stderr, wall seconds, peak RSS in MiB of that process).
    `os.wait4` reaps the child itself, so the memory figure is that process's own."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{output[-3000:]}")
    return output, wall, usage.ru_maxrss / 1024


def steady_rate(run_dir: Path, skip_fraction: float = 0.2, skip_iterations: int = 0) -> float:
    """Iterations per second between the first logged row past `skip_fraction` of the fit (and
    past `skip_iterations`: the first compiled call, whose compile the rows inside it share)
    and the last row: compile and warm-up excluded, whether the caches were cold or warm."""
    elbo = files.read_elbo_csv(run_dir)
    rows = list(zip(elbo["iteration"].astype(int).tolist(), elbo["elapsed_s"], strict=True))
    last_it = rows[-1][0]
    first = next(r for r in rows if r[0] >= max(skip_fraction * last_it, skip_iterations))
    return (last_it - first[0]) / (rows[-1][1] - first[1])


def bnn_fit(
    config: str,
    iters: int,
    runs_dir: Path,
    backend: str,
    evaluate: bool = False,
    env=None,
    steps_per_call: int = 0,
    sets: tuple[str, ...] = (),
) -> dict:
    """A `bnn train` from a cold compile cache; its steady rate, compile time, memory, wall.
    `steps_per_call` 0 is the backend's default K; `sets` more `--set` overrides."""
    log_every = max(1, iters // 10)
    cmd = [
        sys.executable,
        "-m",
        "bnn_cli.cli",
        "train",
        f"configs/{config}.yaml",
        "--runs-dir",
        str(runs_dir),
        "--data-dir",
        str(DATA),
        "--set",
        f"inference.backend={backend}",
    ]
    # A run cut short has no early stopping: its min_iterations would outlast it.
    cut = ["--set", f"inference.iterations={iters}", "--set", "inference.early_stopping=none"]
    if not evaluate:  # a timing run; with evaluate: the shipped config as a user runs it
        cmd += ["--no-eval", *cut, "--set", f"inference.eval_every={log_every * 10}"]
    elif iters:  # the shipped config cut to `iters` (the GPU suite's pass on a CPU)
        cmd += [*cut, "--set", f"inference.eval_every={iters}"]
    if steps_per_call:
        cmd += ["--set", f"inference.steps_per_call={steps_per_call}"]
    for item in sets:
        cmd += ["--set", item]
    with tempfile.TemporaryDirectory() as cache:
        output, wall, rss = run_process(
            cmd, {"PYTENSOR_FLAGS": f"compiledir={cache}", **(env or {})}
        )
    run_dir = Path(output.strip().splitlines()[-1])
    status = json.loads((run_dir / "status.json").read_text())
    k = json.loads((run_dir / "meta.json").read_text())["pytensor"].get("steps_per_call", 1)
    return {
        "config": config,
        "backend": backend,
        "iterations": status["iterations_done"],
        "steps_per_call": k,
        "it_per_s": round(steady_rate(run_dir, skip_iterations=k), 3),
        "compile_s": status["compile_s"],
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(rss),
        "run_dir": str(run_dir),
    }


def bnn_evaluate(run_dir: str, draws: int) -> dict:
    """`bnn evaluate RUN --draws N --ood fashion-mnist` as a user runs it: the predictive of the
    10,000 test digits and the 10,000 Fashion-MNIST test images, the metrics and the report,
    timed as a whole process (compile included)."""
    cmd = [sys.executable, "-m", "bnn_cli.cli", "evaluate", run_dir, "--draws", str(draws)]
    cmd += ["--ood", "fashion-mnist", "--data-dir", str(DATA)]
    _, wall, rss = run_process(cmd, CPU)
    return {"draws": draws, "images": 20000, "seconds": round(wall, 2), "peak_rss_mib": round(rss)}


def predictive_anchor(arch: str, draws: int) -> dict:
    """jax_predictive.py's predictive of the same number of draw-images (compile excluded)."""
    script = str(ANCHORS / "jax_predictive.py")
    output, _, rss = run_process(
        [sys.executable, script, arch, str(draws), "20000", str(DATA / "mnist")], CPU
    )
    seconds = float(re.search(r"predictive_s=([\d.]+)", output).group(1))
    return {"draws": draws, "images": 20000, "seconds": seconds, "peak_rss_mib": round(rss)}


def evaluation_rows(cpu: dict, draws: int) -> dict:
    """bnn's evaluation of each CPU timing run beside the predictive anchor, one round."""
    rows = {}
    for arch in ("mlp", "conv"):
        print(f"bnn evaluate ({arch}, {draws} draws) and jax_predictive.py ...", flush=True)
        bnn = bnn_evaluate(cpu[f"bnn {arch}"]["run_dir"], draws)
        anchor = predictive_anchor(arch, draws)
        rows[arch] = {
            "bnn": bnn,
            "anchor": anchor,
            "ratio": round(bnn["seconds"] / anchor["seconds"], 2),
        }
    return rows


def seed_anchor(iters: int) -> dict:
    """pymc_seed_mlp.py times its steady rate inside the fit (`steady_it/s`): right from a cold
    or a warm compile cache alike. (Differencing two lengths of the whole script was not: the
    short run compiled cold, the long one reused its cache.)"""
    output, _, rss = run_process(
        [sys.executable, str(ANCHORS / "pymc_seed_mlp.py"), str(iters), str(DATA / "mnist")],
        {"PYTENSOR_FLAGS": "floatX=float32"},
    )
    return {
        "it_per_s": float(re.search(r"steady_it/s=([\d.]+)", output).group(1)),
        "fit_s": float(re.search(r"fit_s=([\d.]+)", output).group(1)),
        "test_acc": float(re.search(r"test_acc=([\d.]+)", output).group(1)),
        "peak_rss_mib": round(rss),
    }


def jax_anchor(arch: str, iters: int, scan: bool = False, env=None) -> dict:
    script = str(ANCHORS / "jax_mfvi.py")
    output, _, rss = run_process(
        [sys.executable, script, arch, str(iters), "500", str(DATA / "mnist")],
        {"SCAN": "1" if scan else "0", **(env or {})},
    )
    return {"it_per_s": marginal_rate(output), "peak_rss_mib": round(rss)}


def marginal_rate(output: str) -> float:
    """jax_mfvi.py's rate between its first and last report: its own it/s counts from the first
    step, so with SCAN=1 it would include the compile of the 100-step call."""
    reports = [
        (int(it), float(train_s))
        for it, train_s in re.findall(r"it=(\d+) train_s=([\d.]+)", output)
    ]
    (it0, t0), (it1, t1) = reports[0], reports[-1]
    if it1 == it0 or t1 <= t0:
        return float(re.findall(r"it/s=([\d.]+)", output)[-1])
    return (it1 - it0) / (t1 - t0)


def interleaved(rounds: int, measures: dict, once: frozenset = frozenset()) -> dict:
    """Each measure once per round, in turn, `rounds` times: a drift in the machine's load
    hits bnn and its anchor alike, and the median of the per-round ratios cancels it. The
    measures named in `once` run in the first round only (their ratios are that round's)."""
    seen: dict = {name: [] for name in measures}
    for r in range(rounds):
        for name, measure in measures.items():
            if r and name in once:
                continue
            print(f"round {r + 1}/{rounds}: {name} ...", flush=True)
            seen[name].append(measure())
    return {
        name: {
            **results[0],
            "it_per_s": median([x["it_per_s"] for x in results]),
            "rounds": [x["it_per_s"] for x in results],
        }
        for name, results in seen.items()
    }


def median(values: list[float]) -> float:
    return round(float(statistics.median(values)), 3)


def ratio(results: dict, name: str, anchor: str) -> str:
    """The median over rounds of bnn's rate over the anchor's in the same round."""
    if name not in results or anchor not in results:
        return "—"
    pairs = list(zip(results[name]["rounds"], results[anchor]["rounds"], strict=False))
    one = " (one round)" if len(pairs) == 1 and len(results[name]["rounds"]) > 1 else ""
    return f"{median([a / b for a, b in pairs]):.2f}x {anchor}{one}"


def ctrl_c_check(runs_dir: Path, steps_per_call: int, env=None) -> dict:
    """Ctrl-C during a K-step call: a long mlp fit is sent SIGINT once its first checkpoint is
    written (so the fit is inside a later compiled call); how long it takes to exit, with which
    code, and whether the run says `interrupted` with its parameters saved."""
    cmd = [sys.executable, "-m", "bnn_cli.cli", "train", "configs/mlp.yaml", "--no-eval"]
    cmd += ["--runs-dir", str(runs_dir), "--data-dir", str(DATA)]
    for key, value in (("iterations", 1_000_000), ("eval_every", 10 * steps_per_call)):
        cmd += ["--set", f"inference.{key}={value}"]
    cmd += ["--set", f"inference.steps_per_call={steps_per_call}"]
    before = set(runs_dir.glob("*"))
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        # Ctrl-C's default handling even when this runs in the background (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 600
    run_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        new = set(runs_dir.glob("*")) - before
        run_dir = next(iter(new), None)
        if run_dir and (run_dir / "approx.npz").is_file():
            break
        time.sleep(0.2)
    if run_dir is None or proc.poll() is not None:
        proc.kill()
        raise RuntimeError("the Ctrl-C check's fit did not reach its first checkpoint")
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    seconds = time.perf_counter() - sent
    status = json.loads((run_dir / "status.json").read_text())
    return {
        "steps_per_call": steps_per_call,
        "exit_s": round(seconds, 2),
        "exit_code": code,
        "state": status["state"],
        "iterations_done": status.get("iterations_done"),
        "params_saved": (run_dir / "approx.npz").is_file(),
    }


def jax_platform() -> str:
    """`gpu` when JAX sees one (CUDA or ROCm), else `cpu`; `none` when JAX is missing."""
    try:
        output, _, _ = run_process(
            [sys.executable, "-c", "import jax; print(jax.default_backend())"]
        )
    except RuntimeError:
        return "none"
    return output.strip().splitlines()[-1]


def table(results: dict) -> str:
    rows = ["| measure | value | ratio (median of per-round ratios) |", "|---|---|---|"]
    for device in ("cpu", "gpu", "cuda", "rocm"):
        rates = results.get(device)
        if not rates:
            continue
        for name, fit in rates.items():
            if not name.startswith("bnn"):
                continue
            arch = fit["config"]
            anchors = [f"jax_{arch}", f"jax_{arch}_scan"] + (["pymc_seed_mlp"] * (arch == "mlp"))
            ratios = ", ".join(r for r in (ratio(rates, name, a) for a in anchors) if r != "—")
            label = f"{name.split(' K=')[0]} ({device}, K={fit.get('steps_per_call', 1)})"
            rows.append(f"| {label}, steady it/s | {fit['it_per_s']:.2f} | {ratios} |")
        for name, value in rates.items():
            if not name.startswith("bnn"):
                rows.append(
                    f"| anchor {name} ({device}), steady it/s | {value['it_per_s']:.2f} | |"
                )
        for name, fit in rates.items():
            if name.startswith("bnn"):
                rows.append(
                    f"| {name} ({device}): compile, cold cache | {fit['compile_s']:.1f} s | |"
                )
                rows.append(f"| {name} ({device}): peak RSS | {fit['peak_rss_mib']} MiB | |")
    for name, fit in results.get("shipped", {}).items():
        rows.append(
            f"| {name}: train + evaluate, wall (compile included) | {fit['wall_s']:.1f} s | |"
        )
    for arch, row in results.get("evaluation", {}).items():
        rows.append(
            f"| bnn evaluate {arch} (cpu): {row['bnn']['draws']} draws x 20,000 images, report "
            f"included | {row['bnn']['seconds']:.1f} s | {row['ratio']:.2f}x jax_predictive "
            f"({row['anchor']['seconds']:.1f} s) |"
        )
    return "\n".join(rows)


CPU = {"JAX_PLATFORMS": "cpu"}  # the CPU rows stay CPU rows on a machine with a GPU
# The objective's estimators side by side, on each shipped network: PyMC's Monte Carlo KL at one
# weight draw shared by the minibatch, the closed-form KL at that draw, and the closed-form KL
# with per-image noise.
ESTIMATORS = {
    "shared draw": ("inference.kl=sampled", "inference.gradient=shared", "prior.alpha=1"),
    "closed-form KL": ("inference.kl=analytic", "inference.gradient=shared"),
    "per-image noise": ("inference.kl=analytic", "inference.gradient=local"),
}


def cpu_rates(args, runs_dir: Path) -> dict:
    measures = {}
    for arch, iters in (("mlp", args.mlp_iters), ("conv", args.conv_iters)):
        measures[f"bnn {arch}"] = partial(bnn_fit, arch, iters, runs_dir, "jax", env=CPU)
        if arch == "mlp" and args.cpu_k not in (0, CPU_STEPS_PER_CALL):  # evidence for the default
            measures[f"bnn mlp K={args.cpu_k}"] = partial(
                bnn_fit, arch, iters, runs_dir, "jax", env=CPU, steps_per_call=args.cpu_k
            )
        if not args.skip_anchors:
            measures[f"jax_{arch}"] = partial(jax_anchor, arch, iters, env=CPU)
        if args.estimators:
            for label, sets in ESTIMATORS.items():
                measures[f"bnn {arch} [{label}]"] = partial(
                    bnn_fit, arch, iters, runs_dir, "jax", env=CPU, sets=sets
                )
    # jax_mfvi.py conv's five test reports (untimed, left out of its rate) take about two
    # minutes each on the 2-core box: XLA's CPU runs its vmapped draws of the conv net as a grouped
    # convolution. Three rounds of it were most of the bench's 50 minutes; one is enough to
    # set the conv ratio, while bnn's own conv rate keeps the median of every round.
    rates = interleaved(args.rounds, measures, once=frozenset({"jax_conv"}))
    for backend in args.backends.split(","):
        if backend != "jax":  # slow to compile: one round, its ratio against round one's anchor
            for arch, iters in (("mlp", args.mlp_iters), ("conv", args.conv_iters)):
                print(f"bnn {arch} ({backend}) ...", flush=True)
                fit = bnn_fit(arch, iters, runs_dir, backend)
                rates[f"bnn {arch} {backend}"] = {**fit, "rounds": [fit["it_per_s"]]}
    if not args.skip_anchors:
        print("anchor pymc_seed_mlp ...", flush=True)
        seed = seed_anchor(args.seed_iters)
        rates["pymc_seed_mlp"] = {**seed, "rounds": [seed["it_per_s"]]}
    return rates


def gpu_rates(args, runs_dir: Path, device: str = "gpu") -> tuple[dict, dict]:
    """bnn against jax_mfvi.py one step per call and with SCAN=1 (100 steps per call), and the
    shipped configs trained and evaluated end to end (cut to `--shipped-iters` if given)."""
    measures = {}
    for arch in ("mlp", "conv"):
        measures[f"bnn {arch}"] = partial(bnn_fit, arch, args.gpu_iters, runs_dir, "jax")
        if device == "cpu" and arch == "conv":
            # On a CPU the conv anchor's five untimed test reports took 18 minutes a run here
            # (and 15 GB): `make bench` times it there; this suite's CPU run only has to pass.
            continue
        measures[f"jax_{arch}"] = partial(jax_anchor, arch, args.gpu_iters // 5)
        measures[f"jax_{arch}_scan"] = partial(jax_anchor, arch, args.gpu_iters * 2, scan=True)
    rates = interleaved(args.rounds, measures)
    shipped = {}
    for arch in ("mlp", "conv"):
        print(f"bnn train configs/{arch}.yaml ({device}, with evaluate) ...", flush=True)
        shipped[f"bnn {arch} shipped config ({device})"] = bnn_fit(
            arch, args.shipped_iters, runs_dir, "jax", evaluate=True
        )
    return rates, shipped


def gpu_suite(args) -> None:
    """`make bench-gpu`: the GPU path end to end on JAX's default device (a CPU where there is
    no GPU, cut to 100-iteration timings and 200-iteration shipped fits and without the conv
    anchor, so that it passes in minutes): K = 100 against `SCAN=1 jax_mfvi.py`, the shipped
    configs trained and evaluated, Ctrl-C inside a K-step call."""
    device = jax_platform()
    if device == "cpu" and not args.shipped_iters:
        args.gpu_iters, args.shipped_iters = min(args.gpu_iters, 100), 200
        print("no GPU: the same suite on the CPU, cut to 100 / 200 iterations", flush=True)
    results: dict = {
        "device": device,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory() as runs_dir:
        results[device], results["shipped"] = gpu_rates(args, Path(runs_dir), device)
        print("Ctrl-C during a 100-step call ...", flush=True)
        results["ctrl_c"] = ctrl_c_check(Path(runs_dir), 100)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = ROOT / "bench" / "gpu_results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    c = results["ctrl_c"]
    print(table(results))
    print(
        f"| Ctrl-C in a {c['steps_per_call']}-step call: exit | {c['exit_s']:.2f} s, code "
        f"{c['exit_code']}, {c['state']}, parameters saved: {c['params_saved']} | |"
    )
    print(f"\nwritten {out}")
    ok = c["exit_code"] == 130 and c["state"] == "interrupted" and c["params_saved"]
    if not ok:
        sys.exit("the Ctrl-C check failed: " + json.dumps(c))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp-iters", type=int, default=400)
    parser.add_argument("--conv-iters", type=int, default=80)
    parser.add_argument("--seed-iters", type=int, default=300)
    parser.add_argument("--gpu-iters", type=int, default=10000)
    parser.add_argument(
        "--cpu-k",
        type=int,
        default=1,
        help="also time the CPU MLP at K steps per call, beside the default K (0: no)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved bnn/anchor rounds")
    parser.add_argument(
        "--eval-draws", type=int, default=100, help="draws of the evaluation rows (0: none)"
    )
    parser.add_argument("--skip-anchors", action="store_true")
    parser.add_argument(
        "--no-estimators",
        dest="estimators",
        action="store_false",
        help="leave out the rows of each KL / likelihood-noise estimator",
    )
    parser.add_argument(
        "--suite",
        choices=["cpu", "gpu"],
        default="cpu",
        help="gpu: `make bench-gpu` (see gpu_suite)",
    )
    parser.add_argument(
        "--shipped-iters",
        type=int,
        default=0,
        help="cut the GPU suite's shipped fits (0: as shipped)",
    )
    parser.add_argument(
        "--backends",
        default="jax",
        help="bnn backends to time on the CPU, e.g. jax,c (jax always; c: one round, 3 min more)",
    )
    args = parser.parse_args()
    if not (DATA / "mnist").is_dir():
        sys.exit(f"bench needs the MNIST files in {DATA / 'mnist'}")
    if args.suite == "gpu":
        return gpu_suite(args)
    platform_name = jax_platform()
    results: dict = {
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "jax_platform": platform_name,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory() as runs_dir:
        results["cpu"] = cpu_rates(args, Path(runs_dir))
        if platform_name == "gpu":
            results["gpu"], results["shipped"] = gpu_rates(args, Path(runs_dir))
        if args.eval_draws:
            results["evaluation"] = evaluation_rows(results["cpu"], args.eval_draws)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
