"""What the sweep tests share: tiny sweep files, a stand-in for `bnn train`, a data folder."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from bnn_cli import sweep as sweeps

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
# A few seconds per real point: the smoke model, shrunk.
TINY = {
    "inference.iterations": 60,
    "inference.eval_every": 30,
    "model.hidden": [16],
    "data.train_size": 5000,
    "evaluate.draws": 5,
}


def write_sweep(folder: Path, text: str, name: str = "sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "smoke.yaml").write_text(SMOKE.read_text())
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def tiny_sweep(folder: Path, grid: dict, points: list | None = None) -> Path:
    body = {"base": "smoke.yaml", "grid": grid, "set": TINY}
    if points:
        body["points"] = points
    return write_sweep(folder, yaml.safe_dump(body, sort_keys=False))


def quiet() -> Console:
    return Console(record=True, width=200)


FAKE_TRAIN = """\
#!{python}
# Stands in for `python -m bnn_cli.cli train CONFIG --runs-dir RUNS`: makes a run directory,
# then completes, fails (exit 1) or is SIGKILLed as $FAKE_FAIL / $FAKE_KILL say.
import json, os, signal, sys
from pathlib import Path
import yaml
config_path, runs = sys.argv[4], Path(sys.argv[6])
config = yaml.safe_load(open(config_path))
run = runs / f"20260101-000000-{{config['name']}}-{{os.urandom(3).hex()}}"
run.mkdir(parents=True)
(run / "config.yaml").write_text(open(config_path).read())
(run / "threads").write_text(os.environ["OMP_NUM_THREADS"])
def status(state, **more):
    (run / "status.json").write_text(json.dumps({{"state": state, **more}}))
status("running")
if str(config["seed"]) == os.environ.get("FAKE_KILL"):
    os.kill(os.getpid(), signal.SIGKILL)
if str(config["seed"]) == os.environ.get("FAKE_FAIL"):
    status("failed", message="boom")
    print("error: the fit diverged: boom", file=sys.stderr)
    sys.exit(1)
accuracy = 0.9 + 0.01 * config["seed"] + (0.05 if config["prior"]["kind"] == "fixed" else 0)
metrics = {{"accuracy": accuracy, "nll": 0.3, "ece": 0.02, "mean_epistemic": 0.01,
            "auroc_entropy": 0.8, "split": "test"}}
(run / "metrics.json").write_text(json.dumps(metrics))
status("complete", wall_s=1.0, iterations_done=60)
print(run)
"""


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    """Points run a small script instead of `bnn train`: the sweep's own logic, in a second."""
    script = tmp_path / "fake-python"
    script.write_text(FAKE_TRAIN.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))
    return script


def point_runs(runs: Path, sweep, label: str) -> list[Path]:
    point = next(p for p in sweep.points if p.label == label)
    return sweeps.runs_named(runs, point.config.name)


@pytest.fixture
def mnist_only(real_data_dir, tmp_path) -> Path:
    """A data folder with the real MNIST and no fashion-mnist: a point on fashion-mnist passes
    validation and then fails at run time."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "mnist").symlink_to(real_data_dir / "mnist")
    return folder
