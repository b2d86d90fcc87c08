"""`<runs>/sweeps/<name>.json`: each point's overrides, run, state and error. Running a sweep
again skips the points whose run is complete (with the same config) and runs the rest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from bnn_cli.atomic import atomic_write_json
from bnn_cli.config import config_from_dict
from bnn_cli.console import warning
from bnn_cli.errors import BnnError, ExitCode
from bnn_cli.fit.resume import can_resume
from bnn_cli.runs import read_status, utc_now
from bnn_cli.sweep.point import runs_named
from bnn_cli.sweep.spec import Point, Sweep


class SweepFailed(BnnError):
    """Some points failed; the others completed and the summary is printed (exit 1)."""

    exit_code = ExitCode.PARTIAL


@dataclass
class SweepResult:
    sweep: Sweep
    runs_dir: Path
    manifest_path: Path
    entries: dict[str, dict[str, Any]]  # by point key, in sweep order
    skipped: list[str] = field(default_factory=list)  # labels already complete

    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.entries.values() if e["state"] != "complete"]


def prepare(sweep: Sweep, runs_dir: Path, console: Console) -> SweepResult:
    """Fresh manifest entries, keeping each point's history; skip points already complete."""
    path = runs_dir / "sweeps" / f"{sweep.name}.json"
    previous = read_manifest(path, console)
    result = SweepResult(sweep, runs_dir, path, {})
    for point in sweep.points:
        old = previous.get(point.key, {})
        done = _complete_run(point, runs_dir, old.get("run"))
        resume = None if done else _resumable_run(point, runs_dir, old.get("run"))
        current = done or resume
        history = list(old.get("previous_runs", []))
        if old.get("run") and old["run"] != (current.name if current else None):
            history.append(old["run"])
        result.entries[point.key] = {
            "label": point.label,
            "overrides": point.overrides,
            "config_name": point.config.name,
            "state": "complete" if done else "pending",
            "run": current.name if current else None,
            "run_dir": str(current) if current else None,
            "resume": str(resume) if resume else None,  # goes on from its checkpoint
            "error": None,
            "wall_s": old.get("wall_s") if done else None,
            "attempts": old.get("attempts", 0),
            "previous_runs": history,
        }
        if done:
            result.skipped.append(point.label)
    write_manifest(result, "running")
    return result


def _complete_run(point: Point, runs_dir: Path, recorded: str | None) -> Path | None:
    """The point's complete run with the same config: the recorded one, else the newest found
    by name (a sweep stopped before it could record the run)."""
    candidates = ([runs_dir / recorded] if recorded else []) + runs_named(
        runs_dir, point.config.name
    )[::-1]
    for run_dir in candidates:
        try:
            status = read_status(run_dir, missing_ok=True)
            raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
            config = config_from_dict(raw)  # defaults filled in, as for the point
        except (BnnError, OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if status and status["state"] == "complete" and config == point.config:
            return run_dir
    return None


def _resumable_run(point: Point, runs_dir: Path, recorded: str | None) -> Path | None:
    """The point's run cut off after a checkpoint (interrupted, killed, failed), with the same
    config: `bnn train --resume` goes on with it rather than starting the point over. The
    recorded one, else the newest found by name."""
    candidates = ([runs_dir / recorded] if recorded else []) + runs_named(
        runs_dir, point.config.name
    )[::-1]
    for run_dir in candidates:
        if can_resume(run_dir, point.config):
            return run_dir
    return None


def read_manifest(path: Path, console: Console) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        points = json.loads(path.read_text(encoding="utf-8"))["points"]
        return {p["key"]: p for p in points}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        warning(console, f"'{path}' is corrupt; complete runs are found by their names")
        return {}


def write_manifest(result: SweepResult, state: str) -> None:
    sweep = result.sweep
    atomic_write_json(
        result.manifest_path,
        {
            "sweep": sweep.name,
            "sweep_file": str(sweep.path.resolve()),
            "base": str(sweep.base),
            "swept_keys": list(sweep.swept_keys),
            "state": state,
            "updated": utc_now(),
            "points": [{"key": key, **entry} for key, entry in result.entries.items()],
        },
    )


def raise_if_failed(result: SweepResult) -> None:
    failed = result.failed()
    if not failed:
        return
    shown = "; ".join(f"{e['label']} ({e['error']})" for e in failed[:3])
    more = f"; and {len(failed) - 3} more (see {result.manifest_path})" if len(failed) > 3 else ""
    raise SweepFailed(f"{len(failed)} of {len(result.entries)} points failed: {shown}{more}")
