"""bnn sweep: the sweep file, validation before any run, the local and Ray executors, a failing
and a killed point, resume, and the summary."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from bnn_cli import sweep as sweeps
from bnn_cli.errors import ConfigError, RunError
from bnn_cli.runs import read_status, write_status

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


# ---------------------------------------------------------------- the sweep file


def test_grid_points_and_set_make_validated_points(tmp_path):
    path = write_sweep(
        tmp_path,
        """
        base: smoke.yaml
        grid:
          prior.kind: [fixed, hierarchical]
          seed: [0, 1]
        points:
          - {model.hidden: [32, 32], prior.kind: fixed}
        set: {inference.iterations: 7}
        """,
    )
    sweep = sweeps.load_sweep(path)
    assert sweep.name == "sweep" and sweep.base == (tmp_path / "smoke.yaml").resolve()
    assert sweep.swept_keys == ("prior.kind", "seed", "model.hidden")
    assert [p.label for p in sweep.points] == [
        "prior.kind=fixed-seed=0",
        "prior.kind=fixed-seed=1",
        "prior.kind=hierarchical-seed=0",
        "prior.kind=hierarchical-seed=1",
        "model.hidden=32x32-prior.kind=fixed",
    ]
    third = sweep.points[2].config
    assert third.name == "smoke-prior.kind=hierarchical-seed=0"
    assert third.prior.kind == "hierarchical" and third.seed == 0
    assert third.inference.iterations == 7 and third.model.hidden == (100,)  # set, base
    assert sweep.points[4].config.model.hidden == (32, 32)
    assert len({p.key for p in sweep.points}) == 5


def test_the_shipped_example_sweep_loads():
    sweep = sweeps.load_sweep(SMOKE.parent / "sweeps" / "sweep_smoke.yaml")
    assert sweep.name == "sweep_smoke" and sweep.base == SMOKE
    assert [p.config.name for p in sweep.points] == [
        "smoke-prior.kind=fixed-seed=0",
        "smoke-prior.kind=fixed-seed=1",
        "smoke-prior.kind=hierarchical-seed=0",
        "smoke-prior.kind=hierarchical-seed=1",
    ]


def test_labels_stay_short_and_distinct(tmp_path):
    path = write_sweep(
        tmp_path,
        """
        base: smoke.yaml
        name: my sweep/1
        points:
          - {model.activation: relu, inference.learning_rate: 0.001, inference.batch_size: 100,
             inference.optimizer: adamax, prior.sd: 0.5}
          - {model.activation: relu, inference.learning_rate: 0.001, inference.batch_size: 100,
             inference.optimizer: adamax, prior.sd: 0.25}
        """,
    )
    sweep = sweeps.load_sweep(path)
    assert sweep.name == "my_sweep_1"
    labels = [p.label for p in sweep.points]
    assert len(set(labels)) == 2 and all(len(label) <= sweeps.LABEL_MAX for label in labels)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "base: smoke.yaml\ngrid: {prior.kind: [fixed, hierarchcal]}\n",
            "point 2 of 2 (prior.kind=\"hierarchcal\"): prior.kind: got 'hierarchcal', "
            "expected one of fixed, hierarchical",
        ),
        (
            "base: smoke.yaml\ngrid: {prior.knd: [fixed]}\n",
            "unknown key 'prior.knd' — did you mean 'prior.kind'?",
        ),
        ("base: smoke.yaml\ngird: {seed: [0]}\n", "unknown key 'gird' — did you mean 'grid'?"),
        ("base: smoke.yaml\ngrid: {seed: 3}\n", "grid 'seed' must be a non-empty list of values"),
        ("base: smoke.yaml\ngrid: {seed: []}\n", "grid 'seed' must be a non-empty list"),
        (
            "base: smoke.yaml\ngrid: {seed: [0, 1]}\nset: {seed: 2}\n",
            "'seed' is both in 'set' and swept",
        ),
        ("base: smoke.yaml\npoints: [{seed: 1}, {seed: 1}]\n", "point 2 (seed=1) repeats point 1"),
        ("base: smoke.yaml\n", "has no points: give 'grid:'"),
        ("base: nope.yaml\ngrid: {seed: [0]}\n", "base config '"),
        ("grid: {seed: [0]}\n", "'base' must name a config file"),
        ("base: smoke.yaml\ngrid: {seed.x: [0]}\n", "'seed.x': 'seed' is not a section"),
        ("base: smoke.yaml\npoints: {seed: 1}\n", "'points' must be a list of override mappings"),
        ("base: smoke.yaml\ngrid: [seed]\n", "grid: expected a mapping of dotted keys"),
    ],
)
def test_bad_sweep_files_are_rejected(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        sweeps.load_sweep(write_sweep(tmp_path, text))
    assert message in str(info.value)


def test_bad_grid_fails_the_whole_sweep_before_any_run(tmp_path):
    path = write_sweep(tmp_path, "base: smoke.yaml\ngrid: {seed: [0, 1, -1]}\n")
    runs = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, "-m", "bnn_cli.cli", "sweep", str(path), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"error: sweep file '{path}': point 3 of 3 (seed=-1): seed: got -1, expected a value "
        "of 0 or more"
    )
    assert not runs.exists()  # nothing ran, nothing written


def test_ray_executor_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0]}))
    with pytest.raises(ConfigError, match=r"the ray executor needs Ray: pip install 'bnn\[ray\]'"):
        sweeps.run_sweep(sweep, tmp_path / "runs", None, quiet(), executor="ray")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- executor, crash, resume (fast)

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


def test_a_killed_and_a_failed_point_do_not_stop_the_others_and_resume(
    tmp_path, fake_train, monkeypatch
):
    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0, 1, 2, 3]}))
    runs = tmp_path / "runs"
    monkeypatch.setenv("FAKE_KILL", "1")
    monkeypatch.setenv("FAKE_FAIL", "2")
    console = quiet()
    result = sweeps.run_sweep(sweep, runs, None, console, jobs=2)

    states = {e["label"]: e["state"] for e in result.entries.values()}
    assert states == {"seed=0": "complete", "seed=1": "failed", "seed=2": "failed",
                      "seed=3": "complete"}  # fmt: skip
    errors = {e["label"]: e["error"] for e in result.failed()}
    assert errors == {"seed=1": "killed by SIGKILL", "seed=2": "the fit diverged: boom"}
    killed_run = point_runs(runs, sweep, "seed=1")[0]
    assert read_status(killed_run)["state"] == "failed"  # no longer claims to be running
    assert read_status(killed_run)["message"] == "the train process was killed by SIGKILL"
    assert (point_runs(runs, sweep, "seed=0")[0] / "threads").read_text() == str(
        max(1, sweeps.cpu_count() // 2)
    )
    printed = console.export_text()
    assert "seed=1 after" in printed and "killed by SIGKILL" in printed
    assert "4 points, 2 complete (0 already were), 2 failed" in printed
    with pytest.raises(sweeps.SweepFailed) as info:
        sweeps.raise_if_failed(result)
    assert str(info.value) == (
        "2 of 4 points failed: seed=1 (killed by SIGKILL); seed=2 (the fit diverged: boom)"
    )
    assert info.value.exit_code == 1

    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    assert manifest["state"] == "failed" and manifest["swept_keys"] == ["seed"]
    entry = manifest["points"][1]
    assert entry["overrides"] == {"seed": 1} and entry["run"] == killed_run.name
    assert entry["state"] == "failed" and entry["attempts"] == 1

    # Resume: the complete points are skipped, the failed ones (and one interrupted) run again.
    monkeypatch.delenv("FAKE_KILL")
    monkeypatch.delenv("FAKE_FAIL")
    write_status(point_runs(runs, sweep, "seed=3")[0], "interrupted")
    console = quiet()
    result = sweeps.run_sweep(sweep, runs, None, console, jobs=2)
    assert not result.failed() and result.skipped == ["seed=0"]
    assert [len(point_runs(runs, sweep, f"seed={s}")) for s in range(4)] == [1, 2, 2, 2]
    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    assert manifest["state"] == "complete"
    assert [p["attempts"] for p in manifest["points"]] == [1, 2, 2, 2]
    assert manifest["points"][1]["previous_runs"] == [killed_run.name]
    assert "skip seed=0: already complete" in console.export_text()

    # A lost manifest: complete runs are found again by their names and configs.
    (runs / "sweeps" / "sweep.json").unlink()
    result = sweeps.run_sweep(sweep, runs, None, quiet(), jobs=2)
    assert len(result.skipped) == 4


def test_a_changed_config_runs_the_point_again(tmp_path, fake_train):
    runs = tmp_path / "runs"
    first = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0]}))
    sweeps.run_sweep(first, runs, None, quiet())
    changed = tiny_sweep(tmp_path, {"seed": [0]})
    changed.write_text(changed.read_text().replace("iterations: 60", "iterations: 61"))
    result = sweeps.run_sweep(sweeps.load_sweep(changed), runs, None, quiet())
    assert result.skipped == [] and len(point_runs(runs, first, "seed=0")) == 2


def test_summary_groups_by_the_swept_keys_over_seeds(tmp_path, fake_train):
    path = tiny_sweep(tmp_path, {"prior.kind": ["fixed", "hierarchical"], "seed": [0, 2]})
    result = sweeps.run_sweep(sweeps.load_sweep(path), tmp_path / "runs", None, quiet(), jobs=2)
    console = quiet()
    sweeps.print_summary(result, console)
    printed = console.export_text()
    assert "4 runs, best accuracy first" in printed  # the bnn compare table
    assert "sweep 'sweep': mean ± sd over seed" in printed
    rows = [line for line in printed.splitlines() if "fixed" in line or "hierarchical" in line]
    fixed, hierarchical = rows[-2:]
    assert "2/2" in fixed and "96.00% ± 1.41%" in fixed and "0.3000 ± 0.0000" in fixed
    assert "2/2" in hierarchical and "91.00% ± 1.41%" in hierarchical
    csv_rows = (tmp_path / "runs" / "sweeps" / "sweep.csv").read_text().splitlines()
    assert len(csv_rows) == 5 and csv_rows[0].startswith("run,path,name")


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_the_summary_in_each_format(tmp_path, fake_train, fmt):
    path = tiny_sweep(tmp_path, {"prior.kind": ["fixed", "hierarchical"], "seed": [0, 2]})
    result = sweeps.run_sweep(sweeps.load_sweep(path), tmp_path / "runs", None, quiet(), jobs=2)
    console = Console(file=io.StringIO(), width=80)  # a pipe: narrow, not a terminal
    sweeps.print_summary(result, console, fmt)
    text = console.file.getvalue()
    if fmt == "csv":  # the grouped rows; the runs' rows are in sweeps/sweep.csv
        groups = list(csv.DictReader(text.splitlines()))
        assert [(g["prior.kind"], g["complete"], g["points"]) for g in groups] == [
            ("fixed", "2", "2"),
            ("hierarchical", "2", "2"),
        ]
        assert float(groups[0]["accuracy_mean"]) == pytest.approx(0.96)
        assert float(groups[0]["accuracy_sd"]) == pytest.approx(0.01414, abs=1e-4)
    elif fmt == "json":
        data = json.loads(text)
        assert len(data["runs"]) == 4 and {r["state"] for r in data["runs"]} == {"complete"}
        assert data["groups"][1]["prior.kind"] == "hierarchical"
        assert data["groups"][1]["accuracy_mean"] == pytest.approx(0.91)
    else:
        assert "**4 runs, best accuracy first**" in text
        assert "**sweep 'sweep': mean ± sd over seed**" in text
        assert "| prior.kind | complete | accuracy |" in text
        assert "| fixed | 2/2 | 96.00% ± 1.41% |" in text
        assert "…" not in text


def test_the_same_sweep_twice_at_once_is_refused(tmp_path, fake_train):
    from filelock import FileLock

    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0]}))
    runs = tmp_path / "runs"
    (runs / "sweeps").mkdir(parents=True)
    with FileLock(str(runs / "sweeps" / ".sweep.lock")):
        with pytest.raises(RunError, match="sweep 'sweep' is already running on the runs dir"):
            sweeps.run_sweep(sweep, runs, None, quiet())
    assert not list(runs.glob("2*"))


# ---------------------------------------------------------------- real runs (slow)


@pytest.fixture
def mnist_only(real_data_dir, tmp_path) -> Path:
    """A data folder with the real MNIST and no fashion-mnist: a point on fashion-mnist passes
    validation and then fails at run time."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "mnist").symlink_to(real_data_dir / "mnist")
    return folder


@pytest.mark.slow
def test_local_sweep_two_jobs_with_a_failing_point_then_resume(tmp_path, mnist_only):
    path = tiny_sweep(tmp_path, {"seed": [0, 1]}, points=[{"data.dataset": "fashion-mnist"}])
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "bnn_cli.cli", "sweep", str(path), "--jobs", "2"]
    command += ["--runs-dir", str(runs), "--data-dir", str(mnist_only)]
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run(command, capture_output=True, text=True, check=False, env=env)

    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: 1 of 3 points failed: data.dataset=fashion-mnist (no fashion-mnist data in"
    )
    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    complete = [p for p in manifest["points"] if p["state"] == "complete"]
    assert [p["label"] for p in complete] == ["seed=0", "seed=1"]
    for point in complete:
        run_dir = Path(point["run_dir"])
        assert run_dir.parent == runs.resolve()
        assert run_dir.name.split("-", 2)[2].startswith(f"smoke-{point['label']}-")
        assert read_status(run_dir)["state"] == "complete"
        assert (run_dir / "metrics.json").is_file() and (run_dir / "report.html").is_file()
    assert "2 runs, best accuracy first" in out.stdout  # the compare table...
    assert "sweep 'sweep': mean ± sd over seed" in out.stdout  # ...and the grouped one
    assert "2/2" in out.stdout and "0/1" in out.stdout
    assert (runs / "sweeps" / "sweep.csv").is_file()

    # Resume after seed=1 was interrupted: only it and the failing point run again.
    write_status(Path(complete[1]["run_dir"]), "interrupted")
    out = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert out.returncode == 1, out.stderr
    assert "skip seed=0: already complete" in out.stderr
    manifest = json.loads((runs / "sweeps" / "sweep.json").read_text())
    assert [p["attempts"] for p in manifest["points"]] == [1, 2, 2]
    assert [p["state"] for p in manifest["points"]] == ["complete", "complete", "failed"]
    assert manifest["points"][1]["previous_runs"] == [complete[1]["run"]]


@pytest.mark.slow
def test_ray_sweep_on_a_local_cluster(tmp_path, mnist_only):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'bnn[ray]'")
    # The same tiny model as the local test: PyTensor's compile cache serves both.
    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0, 1]}))
    runs = tmp_path / "runs"
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        console = quiet()
        result = sweeps.run_sweep(sweep, runs, str(mnist_only), console, executor="ray")
    finally:
        ray.shutdown()
    assert not result.failed(), result.entries
    for entry in result.entries.values():
        assert read_status(Path(entry["run_dir"]))["state"] == "complete"
    summary = quiet()
    sweeps.print_summary(result, summary)
    table = summary.export_text()
    assert "2 runs, best accuracy first" in table and "mean ± sd over seed" in table
    assert "2/2" in table


# ---------------------------------------------------------------- a cluster made by `ray start`


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def token_cluster(tmp_path):
    """A head and a second raylet started by `ray start` on 127.0.0.1 with token
    authentication, as a user would; each `ray start --block` runs in a process group of its own,
    which teardown stops (never `ray stop`, which would stop every Ray on the machine)."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'bnn[ray]'")
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        pytest.skip(f"the `ray` command is not installed beside {sys.executable}")
    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    temp = tempfile.mkdtemp(prefix="bnnray-", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    procs: list[subprocess.Popen] = []

    def start(log: Path, *args: str) -> None:
        command = [str(ray_bin), "start", "--block", "--node-ip-address=127.0.0.1"]
        command += ["--num-cpus=1", "--disable-usage-stats", *args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        procs.append(proc)
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`ray start` did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)

    try:
        start(tmp_path / "head.log", "--head", f"--port={port}", f"--temp-dir={temp}")
        start(tmp_path / "node.log", f"--address=127.0.0.1:{port}")
        yield f"127.0.0.1:{port}", env
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its node's processes
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_sweep_joins_a_token_authenticated_cluster(tmp_path, mnist_only, token_cluster):
    address, cluster_env = token_cluster
    path = tiny_sweep(tmp_path / "sweep", {"seed": [0, 1]})
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "bnn_cli.cli", "sweep", str(path), "--executor", "ray"]
    command += ["--address", address, "--runs-dir", str(runs), "--data-dir", str(mnist_only)]
    command += ["--format", "json"]
    # Without the token: one line that says what to set, none of Ray's own log lines.
    bare = {k: v for k, v in cluster_env.items() if not k.startswith("RAY_AUTH")}
    bare["HOME"] = str(tmp_path)  # no ~/.ray/auth_token of the user's
    out = subprocess.run(command, capture_output=True, text=True, env=bare, timeout=240)
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        f"error: cannot join the Ray cluster at '{address}': it uses token authentication and "
        f"refused this process's token (none, or another cluster's); {sweeps.TOKEN_HINT}\n"
    )
    assert "InvalidAuthToken" in (runs / "sweeps" / "sweep" / "ray.log").read_text()
    # With RAY_AUTH_MODE=token and the token: both points run on the cluster.
    out = subprocess.run(command, capture_output=True, text=True, env=cluster_env, timeout=480)
    assert out.returncode == 0, out.stderr
    assert "InvalidAuthToken" not in out.stderr and "gcs_client" not in out.stderr
    summary = json.loads(out.stdout)
    assert [row["state"] for row in summary["runs"]] == ["complete", "complete"]
    assert summary["groups"][0]["complete"] == 2
