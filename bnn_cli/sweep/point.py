"""One point, one process: `bnn train` on the point's config in a child process of its own, so
a point that fails or crashes (even SIGKILL) is reported while the others go on."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnn_cli.errors import SIGINT_FROM_PARENT, ExitCode, RunError
from bnn_cli.runs import read_status, utc_now, write_status

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one point; plain data, so it travels to Ray workers."""

    label: str
    config_name: str
    config_file: str
    runs_dir: str
    data_dir: str | None
    log_file: str
    threads: int
    evaluate: bool = True
    # More `bnn train` arguments (a tuner's trial handle, `--resume RUN_DIR` with an empty
    # config_file); a resumed run's directory is known beforehand.
    extra_args: tuple[str, ...] = ()
    run_dir: str | None = None
    # The child dies with the thread that started it (Linux): a tuner killed outright leaves no
    # fit running on behind it that its next start would not know of.
    die_with_parent: bool = False


LIVE: set[subprocess.Popen] = set()  # children running in this process, for Ctrl-C


STOPPING = threading.Event()


def run_point(task: Task) -> dict[str, Any]:
    """Run `bnn train` on the point's config in a child process; return its outcome. Never
    raises for a failed point: the outcome says `failed` and why."""
    if STOPPING.is_set():
        return {"state": "interrupted", "error": "the sweep was interrupted", "run_dir": None}
    command = [sys.executable, "-m", "bnn_cli.cli", "train"]
    command += [task.config_file] if task.config_file else []
    command += ["--runs-dir", task.runs_dir]
    if task.data_dir:
        command += ["--data-dir", task.data_dir]
    if not task.evaluate:
        command.append("--no-eval")
    command += task.extra_args
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, str(task.threads)), SIGINT_FROM_PARENT: "1"}
    before = set(runs_named(Path(task.runs_dir), task.config_name))
    start = time.perf_counter()
    with open(task.log_file, "ab") as log:
        log.write(f"\n=== {utc_now()} {' '.join(command)}\n".encode())
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches the sweep, which passes it on once
            preexec_fn=_die_with_parent if task.die_with_parent else None,
        )
        stdout = _wait(proc)
    wall_s = round(time.perf_counter() - start, 2)
    lines = stdout.decode(errors="replace").strip().splitlines()
    run_dir = Path(lines[-1]) if proc.returncode == 0 and lines else None
    if run_dir is None and task.run_dir:
        run_dir = Path(task.run_dir)
    if run_dir is None:
        new = sorted(set(runs_named(Path(task.runs_dir), task.config_name)) - before)
        run_dir = new[-1] if new else None
    return _outcome(proc.returncode, run_dir, log_tail(task.log_file, offset), wall_s)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGKILL when the parent thread ends."""
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child outlives a killed parent
        pass


def _wait(proc: subprocess.Popen) -> bytes:
    LIVE.add(proc)
    try:
        if STOPPING.is_set():
            proc.send_signal(signal.SIGINT)
        try:
            return proc.communicate()[0]
        except KeyboardInterrupt:  # a cancelled Ray task: stop the run, keep its parameters
            proc.send_signal(signal.SIGINT)
            return proc.communicate()[0]
    finally:
        LIVE.discard(proc)


def _outcome(rc: int, run_dir: Path | None, tail: str, wall_s: float) -> dict[str, Any]:
    try:
        status = read_status(run_dir, missing_ok=True) if run_dir else None
    except RunError:
        status = None
    run_state = status["state"] if status else None
    outcome = {"run_dir": str(run_dir) if run_dir else None, "wall_s": wall_s, "returncode": rc}
    if rc == 0 and run_state in ("complete", "pruned"):
        return {**outcome, "state": run_state, "error": None}
    if rc < 0:
        error = f"killed by {signal.Signals(-rc).name}" if -rc in _SIGNALS else f"signal {-rc}"
        if run_dir and run_state == "running":  # the process is gone: make the run honest
            write_status(run_dir, "failed", message=f"the train process was {error}")
    else:
        error = _error_line(tail) or f"bnn train exited with code {rc}"
        if rc == 0:
            error = f"bnn train exited 0 but its run is {run_state or 'missing'}"
    interrupted = rc in (ExitCode.INTERRUPTED, -signal.SIGINT) or run_state == "interrupted"
    return {**outcome, "state": "interrupted" if interrupted else "failed", "error": error}


_SIGNALS = {int(s) for s in signal.Signals}


def log_tail(path: str | Path, offset: int) -> str:
    """What was written to the file at `path` after `offset` (its last 20,000 bytes)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read()[-20_000:].decode(errors="replace")


def _error_line(text: str) -> str | None:
    errors = [line[len("error: ") :] for line in text.splitlines() if line.startswith("error: ")]
    return errors[-1].strip() if errors else None


def runs_named(runs_dir: Path, config_name: str) -> list[Path]:
    """Run directories `<stamp>-<config_name>-<6 hex>` in runs_dir, oldest first."""
    pattern = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(config_name)}-[0-9a-f]{{6}}")
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if pattern.fullmatch(p.name))
