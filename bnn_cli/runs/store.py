"""The run directory's life cycle: create (never overwrite), status, load, list.

Layout (a contract, see the README): config.yaml, status.json, meta.json, elbo.csv, approx.npz,
then metrics.json, per_class.csv, report.md, report.html and plots/ from `bnn evaluate`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, overload

import yaml

from bnn_cli.atomic import atomic_write_json, pid_alive
from bnn_cli.config import Config, config_from_dict
from bnn_cli.data.datasets import resolve_data_dir
from bnn_cli.errors import BnnError, RunError
from bnn_cli.runs import files

logger = logging.getLogger(__name__)

# `pruned`: a tuner stopped the fit on its validation figures; its parameters are saved.
STATES = ("running", "complete", "failed", "interrupted", "pruned")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_run_dir(runs_dir: Path, config_name: str) -> Path:
    """A new, unique run directory `<UTC yyyymmdd-HHMMSS>-<name>-<6 hex>`. `mkdir` without
    `exist_ok` makes two runs started in the same second get distinct directories."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(
            f"cannot create runs directory '{runs_dir}': {exc.strerror} "
            "(choose another with --runs-dir or $BNN_RUNS_DIR)"
        ) from None
    if not os.access(runs_dir, os.W_OK):
        raise RunError(
            f"runs directory '{runs_dir}' is not writable (choose another with "
            "--runs-dir or $BNN_RUNS_DIR)"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = runs_dir / f"{stamp}-{config_name}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"cannot create run directory in '{runs_dir}': {exc.strerror}") from None
    raise RunError(f"could not find a free run directory name in '{runs_dir}'")


def write_status(
    run_dir: Path, state: str, clear: tuple[str, ...] = (), **fields: Any
) -> dict[str, Any]:
    """Update status.json atomically; keeps earlier fields (e.g. `created`) but those named in
    `clear` (a resumed run's message of how it ended before)."""
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    status = read_status(run_dir, missing_ok=True) or {"created": utc_now()}
    for key in clear:
        status.pop(key, None)
    status.update(fields)
    status["state"] = state
    status["updated"] = utc_now()
    atomic_write_json(Path(run_dir) / "status.json", status)
    return status


def mark_ended(run_dir: Path, state: str, **fields: Any) -> None:
    """Record how a run (or an ensemble) ended. Failing to (a full disk) must not hide the error
    that ended it: it is logged, the run then keeps saying `running`, and `evaluate` tells that
    its process is gone."""
    try:
        write_status(run_dir, state, **fields)
    except BnnError as exc:
        logger.warning("could not mark %s as %s: %s", run_dir, state, exc)


@overload
def read_status(run_dir: Path, missing_ok: Literal[False] = False) -> dict[str, Any]: ...
@overload
def read_status(run_dir: Path, missing_ok: bool) -> dict[str, Any] | None: ...
def read_status(run_dir: Path, missing_ok: bool = False) -> dict[str, Any] | None:
    path = Path(run_dir) / "status.json"
    if not path.is_file():
        if missing_ok:
            return None
        raise RunError(f"'{run_dir}' has no status.json: not a bnn run directory")
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunError(f"'{path}' is corrupt (not JSON)") from None
    except OSError as exc:
        raise RunError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if not isinstance(status, dict) or status.get("state") not in STATES:
        raise RunError(f"'{path}' is corrupt (no valid 'state')")
    return status


@dataclass(frozen=True)
class Run:
    path: Path
    status: dict[str, Any]
    config: dict[str, Any]


def open_run(run_dir: Path, allow_incomplete: bool = False) -> Run:
    """Open a run for reading; refuses one that is missing or not complete (unless allowed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "not found"
        raise RunError(f"run directory '{run_dir}' {what}")
    status = read_status(run_dir)
    if status["state"] != "complete" and not allow_incomplete:
        raise RunError(incomplete_message(run_dir, status))
    config_path = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"run '{run_dir.name}' has no config.yaml") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise RunError(f"'{config_path}' is corrupt (not YAML)") from None
    except OSError as exc:
        raise RunError(f"cannot read '{config_path}': {exc.strerror or exc}") from None
    if not isinstance(config, dict):
        raise RunError(f"'{config_path}' is corrupt (not a mapping)")
    return Run(run_dir, status, config)


def recorded_data_dir(run_dir: Path) -> str | None:
    """The data directory the run was trained from (meta.json), or None."""
    meta = files.read_meta(run_dir)
    value = meta.get("data_dir") if meta is not None else None
    return value if isinstance(value, str) else None


def run_data_dir(run_dir: Path, data_dir: str | None) -> str:
    """Where to read a run's data: `--data-dir`, `$BNN_DATA_DIR`, the folder it was trained
    from, the user cache directory, in that order."""
    return str(resolve_data_dir(data_dir, recorded_data_dir(run_dir)))


def run_config(run: Run) -> Config:
    """The run's config.yaml as a validated `Config`."""
    try:
        return config_from_dict(run.config)
    except BnnError as exc:
        raise RunError(f"run '{run.path.name}' has an invalid config.yaml: {exc}") from None


def incomplete_message(run_dir: Path, status: dict[str, Any]) -> str:
    """Why a run that is not complete cannot be evaluated, and what the user can do."""
    name, state = Path(run_dir).name, status["state"]
    if (Path(run_dir) / "approx.npz").is_file():
        hint = " (use --allow-incomplete to evaluate the parameters it saved)"
    else:
        hint = " (it saved no parameters)"
    if state == "running":
        pid = status.get("pid")
        if process_gone(status):
            return (
                f"run '{name}' is running, not complete, but its process (pid {pid}) is gone: "
                f"it was killed{hint}"
            )
        where = f" (pid {pid})" if pid else ""
        return (
            f"run '{name}' is running, not complete: it may still be training{where}; "
            "wait for it to finish, or use --allow-incomplete to evaluate the parameters "
            "saved so far"
        )
    if state == "failed" and status.get("message"):
        reason = " ".join(str(status["message"]).split())
        reason = reason if len(reason) <= 300 else reason[:299] + "…"
        return f"run '{name}' is failed, not complete: {reason}{hint}"
    return f"run '{name}' is {state}, not complete{hint}"


def process_gone(status: dict[str, Any]) -> bool:
    """True when the process that wrote a `running` status is known to be dead: it ran on this
    host and its pid is gone (it was killed, e.g. by SIGKILL or the out-of-memory killer)."""
    pid = status.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    return status.get("host") == platform.node() and not pid_alive(pid)


def list_runs(runs_dir: Path) -> list[Path]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if (p / "status.json").is_file())
