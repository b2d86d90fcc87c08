"""The executors: Ray missing, a local Ray, and a cluster started by `ray start` with token
authentication."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bnn_cli import sweep as sweeps
from bnn_cli.errors import ConfigError
from bnn_cli.sweep.executors import TOKEN_HINT, cluster_error, ray_logs_to
from tests.sweep_helpers import (
    ROOT,
    mnist_only,  # noqa: F401 (a fixture)
    quiet,
    tiny_sweep,
)

# Ray clusters on one machine share ports and /tmp/ray: under `pytest -n`, one worker runs them.
pytestmark = pytest.mark.xdist_group("ray")


def test_ray_executor_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    sweep = sweeps.load_sweep(tiny_sweep(tmp_path, {"seed": [0]}))
    with pytest.raises(ConfigError, match=r"the ray executor needs Ray: pip install 'bnn\[ray\]'"):
        sweeps.run_sweep(sweep, tmp_path / "runs", None, quiet(), executor="ray")
    assert not (tmp_path / "runs").exists()


def test_a_token_authentication_failure_says_what_to_set(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    class AuthenticationError(Exception):  # named as Ray names it
        pass

    missing = AuthenticationError(
        "RAY_AUTH_TOKEN_PATH is set but file cannot be opened or is empty: /x/token. Ensure "
        "that the token for the cluster is available in a local file"
    )
    assert cluster_error("h:1", missing, "") == (
        "cannot join the Ray cluster at 'h:1': RAY_AUTH_TOKEN_PATH is set but file cannot be "
        f"opened or is empty: /x/token; {TOKEN_HINT}"
    )
    refused = ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:6379")
    log = (
        "[2026-11-28 10:04:19,029 W 4906 4906] gcs_client.cc:210: Failed to get cluster ID from "
        "GCS server: Unauthenticated: RPC error: InvalidAuthToken: Authentication token is "
        "missing or incorrect\n"
    )
    assert cluster_error("h:1", refused, log) == (
        "cannot join the Ray cluster at 'h:1': it uses token authentication and refused this "
        f"process's token (none, or another cluster's); {TOKEN_HINT}"
    )
    assert cluster_error(None, refused, "") == (
        "cannot start or join the Ray cluster (local): Failed to connect to Ray cluster at "
        "127.0.0.1:6379"
    )


def test_ray_log_lines_go_to_the_log_file_not_the_console(tmp_path, capfd):
    log = tmp_path / "ray.log"
    with ray_logs_to(log):
        os.write(2, b"W gcs_client.cc:210: a warning written by C++\n")
    os.write(2, b"after\n")
    assert log.read_text() == "W gcs_client.cc:210: a warning written by C++\n"
    assert capfd.readouterr().err == "after\n"
    with ray_logs_to(None):  # --debug: the console
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


@pytest.mark.slow
def test_ray_ensemble_on_a_local_cluster(tmp_path, mnist_only, local_ray):  # noqa: F811
    """An ensemble's members are Ray tasks like a sweep's points (the sweep itself runs on Ray
    in the token-cluster test below: one real Ray fit of each kind is enough)."""
    from bnn_cli import ensemble
    from tests.test_ensemble import tiny_config

    members = ensemble.train_ensemble(
        tiny_config(2), tmp_path / "ensemble", str(mnist_only), quiet(), executor="ray"
    )
    assert local_ray.is_initialized()  # the executor used it and left it running
    states = ensemble.members(members)
    assert [m.state for m in states] == ["complete", "complete"]
    assert len({m.seed for m in states}) == 2 and all(m.run_dir.is_dir() for m in states)


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
        # `ray start --block` stops its node's processes on SIGTERM, gracefully: about half a
        # minute. A throw-away test cluster in its own temp dir needs no grace: both nodes at
        # once, then SIGKILL to whatever of their process groups is left after 5 s.
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in reversed(procs):
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the node's raylet and workers too
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_sweep_joins_a_token_authenticated_cluster(tmp_path, mnist_only, token_cluster):  # noqa: F811
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
