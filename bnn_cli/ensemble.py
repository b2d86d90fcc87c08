"""An ensemble of fits: `bnn train` of a config with `inference.ensemble: N`.

The N members are the same config with seeds seed, seed + 1, ..., seed + N - 1 (member 0 is
the plain run of that seed), each an ordinary run directory under the ensemble's `members/`,
trained by the sweep's executors (local processes, or Ray tasks on a cluster), so a member that
fails or is killed leaves the others intact. The ensemble's own directory holds

    config.yaml, meta.json, status.json   like any run (status: the members' progress)
    ensemble.json                          each member's index, seed, run and state
    members/<run>/ ...                     the members' run directories
    members/sweeps/<name>.json             the executor's manifest (attempts, errors, logs)

and, from `bnn evaluate`, the report of the equal mixture of the members' predictives (the
draws split among them), with each member's own figures beside it. Training the same config
again resumes the newest such directory: members already complete are kept, not refit, and a
member cut off after a validation goes on from its checkpoint (`bnn train --resume`, through the
sweep's manifest) rather than starting over.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from bnn_cli import atomic, runs
from bnn_cli.config import MAX_NAME, Config, config_from_dict, config_yaml
from bnn_cli.data.datasets import load_splits
from bnn_cli.errors import BnnError, ExitCode, RunError
from bnn_cli.runs import files
from bnn_cli.runs.ensemble import (
    ENSEMBLE_FILE,
    MEMBERS_DIR,
    Member,
    is_ensemble,
    members,
    split_draws,
    status_of,
    usable_members,
    write_members,
)
from bnn_cli.sweep import Point, Sweep, cpu_count, run_sweep, runs_named


class EnsembleIncomplete(BnnError):
    """Some members failed; the others are complete and kept (exit 5, like a sweep's)."""

    exit_code = ExitCode.PARTIAL


def member_config(config: Config, index: int) -> Config:
    """Member `index`: the same fit with seed + index, as a plain run named `<name>-m<index>`."""
    suffix = f"-m{index}"
    raw = config.to_dict()
    raw["name"] = config.name[: MAX_NAME - len(suffix)] + suffix
    raw["seed"] = config.seed + index
    raw["inference"]["ensemble"] = None
    return config_from_dict(raw)


def train_ensemble(
    config: Config,
    runs_dir: Path,
    data_dir: str | None,
    console: Console,
    argv: list[str] | None = None,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
) -> Path:
    """Fit the members not complete yet (in a new ensemble directory, or the newest one of the
    same config); returns the ensemble's directory once every member is complete."""
    # The data first, as for one fit: a missing file is reported before anything is written.
    load_splits(config.data.dataset, data_dir, config.data.train_size, config.data.val_size)
    run_dir = _resumable(Path(runs_dir), config)
    done_before = sum(m.state == "complete" for m in members(run_dir)) if run_dir else 0
    if run_dir is None:
        run_dir = _create(Path(runs_dir), config, argv, data_dir)
        console.print(f"ensemble directory: {run_dir}", highlight=False)
    else:
        console.print(
            f"resuming ensemble {run_dir}: {done_before} of {config.inference.ensemble} "
            "members already complete (kept)",
            highlight=False,
        )
    total = config.inference.ensemble or 0
    jobs = jobs or (min(total, cpu_count()) if executor == "local" else None)
    status = runs.read_status(run_dir, missing_ok=True) or {}
    if status.get("state") == "running" and not runs.process_gone(status):
        raise RunError(
            f"ensemble '{run_dir.name}' is being trained by another process (pid "
            f"{status.get('pid')}); wait for it, or stop it first"
        )
    earlier_s = float(status.get("wall_s") or 0.0)
    runs.write_status(
        run_dir, "running", members_total=total, pid=os.getpid(), host=platform.node()
    )
    start = time.perf_counter()
    try:
        run_sweep(
            _as_sweep(run_dir, config),
            run_dir / MEMBERS_DIR,
            data_dir,
            console,
            executor=executor,
            jobs=jobs,
            address=address,
        )
    except KeyboardInterrupt:
        _record(run_dir, config, "interrupted", earlier_s + time.perf_counter() - start)
        raise
    except BaseException as exc:
        _record(run_dir, config, "failed", earlier_s + time.perf_counter() - start, str(exc))
        raise
    state = _record(run_dir, config, None, earlier_s + time.perf_counter() - start)
    if state != "complete":
        missing = [m for m in members(run_dir) if m.state != "complete"]
        shown = ", ".join(f"{m.label} ({m.state})" for m in missing)
        raise EnsembleIncomplete(
            f"ensemble '{run_dir.name}': {len(missing)} of {total} members did not complete: "
            f"{shown}; train it again to refit only those (see "
            f"{run_dir / MEMBERS_DIR / 'sweeps'} for their logs)"
        )
    return run_dir


def _create(runs_dir: Path, config: Config, argv: list[str] | None, data_dir: str | None) -> Path:
    run_dir = runs.create_run_dir(runs_dir, config.name)
    atomic.atomic_write_text(run_dir / "config.yaml", config_yaml(config))
    fields = {
        **files.host_fields(),
        "command_line": list(argv or []),
        "seeds": {"members": [config.seed + i for i in range(config.inference.ensemble or 0)]},
        "started": runs.utc_now(),
    }
    files.write_meta(run_dir, files.new_meta(fields, data_dir))
    write_members(run_dir, config, {})
    return run_dir


def _as_sweep(run_dir: Path, config: Config) -> Sweep:
    """The members as the points of a sweep, so that they run on its executors and resume."""
    points = []
    for i in range(config.inference.ensemble or 0):
        member = member_config(config, i)
        overrides = {"seed": member.seed}
        key = json.dumps(overrides, sort_keys=True)
        points.append(Point(key, f"m{i}", overrides, member))
    path = run_dir / "config.yaml"
    return Sweep(config.name, path, path, ("seed",), tuple(points), kind="ensemble", evaluate=False)


def _record(
    run_dir: Path, config: Config, state: str | None, wall_s: float, error: str = ""
) -> str:
    """ensemble.json and status.json from the manifest; returns the ensemble's state."""
    manifest = _manifest(run_dir, config)
    found = write_members(run_dir, config, manifest)
    done = sum(m.state == "complete" for m in found)
    if state is None:
        state = "complete" if done == len(found) else "failed"
    fields: dict[str, Any] = {
        "members_total": len(found),
        "members_complete": done,
        "wall_s": round(wall_s, 2),
    }
    statuses = [status_of(m.run_dir) for m in found]
    done_its = [
        s["iterations_done"]
        for s in statuses
        if s.get("state") == "complete" and s.get("iterations_done") is not None
    ]
    if done_its:
        fields["iterations_done"] = min(done_its)
    if state == "complete":
        fields["finished"] = runs.utc_now()
        verdicts = [s.get("converged") for s in statuses]
        fields["converged"] = None if None in verdicts else all(verdicts)
    else:
        missing = ", ".join(m.label for m in found if m.state != "complete")
        if state == "interrupted":
            error = f"interrupted with {done} of {len(found)} members complete; train it again "
            error += "to resume (complete members are kept)"
        fields["message"] = error or f"members {missing} did not complete"
    runs.mark_ended(run_dir, state, **fields)
    return state


def _manifest(run_dir: Path, config: Config) -> dict[str, dict[str, Any]]:
    path = run_dir / MEMBERS_DIR / "sweeps" / f"{config.name}.json"
    try:
        points = json.loads(path.read_text(encoding="utf-8"))["points"]
        return {p["label"]: p for p in points}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _resumable(runs_dir: Path, config: Config) -> Path | None:
    """The newest ensemble directory of this very config (same members), if any."""
    for run_dir in reversed(runs_named(runs_dir, config.name)):
        if not is_ensemble(run_dir):
            continue
        try:
            raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
            if config_from_dict(raw) == config:
                return run_dir
        except (BnnError, OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
    return None


__all__ = [
    "ENSEMBLE_FILE",
    "EnsembleIncomplete",
    "Member",
    "is_ensemble",
    "member_config",
    "members",
    "split_draws",
    "train_ensemble",
    "usable_members",
]
