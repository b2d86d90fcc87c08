"""`make bench`: bnn's speed against the two anchors, measured in one run on one machine.

Measures steady iterations per second of bnn's MLP and conv fits and of both anchors
(`../shared/anchors`), bnn's graph compile time from a cold PyTensor cache, the peak resident
memory of each process, and posterior predictive throughput. Writes `bench/results.json` and
prints a markdown table with the ratios (absolute times on shared machines drift; ratios from
one run hold).

usage: python bench/run.py [--mlp-iters N] [--conv-iters N] [--skip-anchors] [--backends jax,c]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def steady_rate(elbo_csv: Path, skip_fraction: float = 0.2) -> float:
    """Iterations per second between the first logged row past `skip_fraction` of the fit and
    the last row: compile and warm-up excluded."""
    with elbo_csv.open() as handle:
        rows = [(int(r["iteration"]), float(r["elapsed_s"])) for r in csv.DictReader(handle)]
    last_it = rows[-1][0]
    first = next(r for r in rows if r[0] >= skip_fraction * last_it)
    return (last_it - first[0]) / (rows[-1][1] - first[1])


def bnn_fit(config: str, iters: int, runs_dir: Path, backend: str) -> dict:
    """A short `bnn train` from a cold compile cache; its steady rate, compile time, memory."""
    log_every = max(1, iters // 10)
    cmd = [
        sys.executable,
        "-m",
        "bnn_cli.cli",
        "train",
        f"configs/{config}.yaml",
        "--no-eval",
        "--runs-dir",
        str(runs_dir),
        "--data-dir",
        str(DATA),
        "--set",
        f"inference.iterations={iters}",
        "--set",
        f"inference.eval_every={log_every * 10}",
        "--set",
        f"inference.backend={backend}",
    ]
    with tempfile.TemporaryDirectory() as cache:
        output, wall, rss = run_process(cmd, {"PYTENSOR_FLAGS": f"compiledir={cache}"})
    run_dir = Path(output.strip().splitlines()[-1])
    status = json.loads((run_dir / "status.json").read_text())
    return {
        "config": config,
        "backend": backend,
        "iterations": iters,
        "it_per_s": round(steady_rate(run_dir / "elbo.csv"), 3),
        "compile_s": status["compile_s"],
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(rss),
        "run_dir": str(run_dir),
    }


def predictive_throughput(run_dir: str, draws: int = 100) -> dict:
    """Posterior predictive on the 10,000 test images with `draws` draws, timed in a child."""
    code = (
        "import sys, time, json, numpy as np\n"
        "from bnn_cli import backend, runs\n"
        "from bnn_cli.evaluate import run_config, load_params\n"
        "from bnn_cli.data.datasets import load_splits\n"
        "from bnn_cli.predict import compile_predict, predictive\n"
        f"run = runs.load_run('{run_dir}'); config = run_config(run)\n"
        "mode = backend.configure(config.inference.floatX, config.inference.backend)\n"
        "arrays = load_params(run.path, config)\n"
        f"s = load_splits('mnist', '{DATA}', 50000, 10000)\n"
        "fn = compile_predict(config.model, mode)\n"
        "t = time.perf_counter()\n"
        f"p = predictive(fn, arrays, config.model, s.x_test, {draws}, 0, 1000)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'shape': list(p.shape)}))\n"
    )
    output, _, rss = run_process([sys.executable, "-c", code])
    result = json.loads(output.strip().splitlines()[-1])
    return {
        "draws": draws,
        "images": 10000,
        "seconds": round(result["seconds"], 2),
        "peak_rss_mib": round(rss),
    }


def seed_anchor(short: int, long: int) -> dict:
    """pymc_seed_mlp.py prints rates that include compile; two lengths give the steady rate."""
    times = {}
    rss = 0.0
    for iters in (short, long):
        output, _, peak = run_process(
            [sys.executable, str(ANCHORS / "pymc_seed_mlp.py"), str(iters), str(DATA / "mnist")],
            {"PYTENSOR_FLAGS": "floatX=float32"},
        )
        times[iters] = float(re.search(r"fit_s=([\d.]+)", output).group(1))
        accuracy = float(re.search(r"test_acc=([\d.]+)", output).group(1))
        rss = max(rss, peak)
    return {
        "it_per_s": round((long - short) / (times[long] - times[short]), 3),
        "fit_s": times,
        "test_acc": accuracy,
        "peak_rss_mib": round(rss),
    }


def jax_anchor(arch: str, iters: int) -> dict:
    output, _, rss = run_process(
        [sys.executable, str(ANCHORS / "jax_mfvi.py"), arch, str(iters), "500", str(DATA / "mnist")]
    )
    rates = [float(x) for x in re.findall(r"it/s=([\d.]+)", output)]
    return {"it_per_s": rates[-1], "peak_rss_mib": round(rss)}


def table(results: dict) -> str:
    anchors = results.get("anchors", {})
    rows = ["| measure | value | ratio |", "|---|---|---|"]

    def ratio(a: float, key: str) -> str:
        return f"{a / anchors[key]['it_per_s']:.2f}x {key}" if key in anchors else "—"

    for backend, fits in results["bnn"].items():
        mlp, conv = fits["mlp"]["it_per_s"], fits["conv"]["it_per_s"]
        rows.append(
            f"| bnn mlp ({backend}), steady it/s | {mlp:.2f} | {ratio(mlp, 'jax_mlp')}, "
            f"{ratio(mlp, 'pymc_seed_mlp')} |"
        )
        rows.append(
            f"| bnn conv ({backend}), steady it/s | {conv:.2f} | {ratio(conv, 'jax_conv')} |"
        )
    for key, value in anchors.items():
        rows.append(f"| anchor {key}, steady it/s | {value['it_per_s']:.2f} | |")
    for backend, fits in results["bnn"].items():
        for arch in ("mlp", "conv"):
            fit = fits[arch]
            rows.append(
                f"| bnn {arch} ({backend}): compile, cold cache | {fit['compile_s']:.1f} s | |"
            )
            rows.append(f"| bnn {arch} ({backend}): peak RSS | {fit['peak_rss_mib']} MiB | |")
    pred = results["predictive"]
    rows.append(
        f"| bnn mlp ({pred['backend']}): predictive, {pred['images']} images x "
        f"{pred['draws']} draws | {pred['seconds']:.1f} s | |"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp-iters", type=int, default=400)
    parser.add_argument("--conv-iters", type=int, default=80)
    parser.add_argument("--skip-anchors", action="store_true")
    parser.add_argument(
        "--backends", default="jax,c", help="bnn backends to time, the first also for prediction"
    )
    args = parser.parse_args()
    if not (DATA / "mnist").is_dir():
        sys.exit(f"bench needs the MNIST files in {DATA / 'mnist'}")
    results: dict = {
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bnn": {},
    }
    with tempfile.TemporaryDirectory() as runs_dir:
        for backend in args.backends.split(","):
            fits = results["bnn"][backend] = {}
            for config, iters in (("mlp", args.mlp_iters), ("conv", args.conv_iters)):
                print(f"bnn {config} ({backend}): {iters} iterations ...", flush=True)
                fits[config] = bnn_fit(config, iters, Path(runs_dir), backend)
        first = next(iter(results["bnn"].values()))["mlp"]
        print(f"bnn mlp ({first['backend']}): posterior predictive ...", flush=True)
        results["predictive"] = {
            "backend": first["backend"],
            **predictive_throughput(first["run_dir"]),
        }
    if not args.skip_anchors and ANCHORS.is_dir():
        anchors = results["anchors"] = {}
        print("anchor jax_mfvi mlp / conv ...", flush=True)
        try:
            anchors["jax_mlp"] = jax_anchor("mlp", args.mlp_iters)
            anchors["jax_conv"] = jax_anchor("conv", args.conv_iters)
        except RuntimeError as exc:  # JAX missing: report without that ratio
            print(f"jax anchor skipped: {str(exc).splitlines()[-1]}", flush=True)
        print("anchor pymc_seed_mlp ...", flush=True)
        anchors["pymc_seed_mlp"] = seed_anchor(100, 300)
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
