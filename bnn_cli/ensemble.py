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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from bnn_cli import atomic, runs
from bnn_cli.config import MAX_NAME, Config, config_from_dict, config_yaml
from bnn_cli.errors import BnnError, ExitCode, RunError

ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"


class EnsembleIncomplete(BnnError):
    """Some members failed; the others are complete and kept (exit 5, like a sweep's)."""

    exit_code = ExitCode.PARTIAL


@dataclass(frozen=True)
class Member:
    index: int
    seed: int
    run_dir: Path | None  # None: never started
    state: str  # complete, failed, interrupted, running or missing

    @property
    def label(self) -> str:
        return f"m{self.index}"


def member_config(config: Config, index: int) -> Config:
    """Member `index`: the same fit with seed + index, as a plain run named `<name>-m<index>`."""
    suffix = f"-m{index}"
    raw = config.to_dict()
    raw["name"] = config.name[: MAX_NAME - len(suffix)] + suffix
    raw["seed"] = config.seed + index
    raw["inference"]["ensemble"] = None
    return config_from_dict(raw)


def is_ensemble(run_dir: Path) -> bool:
    return (Path(run_dir) / ENSEMBLE_FILE).is_file()


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
    from bnn_cli.data.datasets import load_splits
    from bnn_cli.sweep import cpu_count, run_sweep

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
    total = config.inference.ensemble
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
    from bnn_cli import __version__
    from bnn_cli.data.datasets import resolve_data_dir
    from bnn_cli.versions import installed_versions

    run_dir = runs.create_run_dir(runs_dir, config.name)
    atomic.atomic_write_text(run_dir / "config.yaml", config_yaml(config))
    meta = {
        "bnn_version": __version__,
        "versions": installed_versions(),
        "host": platform.node(),
        "command_line": list(argv or []),
        "seeds": {"members": [config.seed + i for i in range(config.inference.ensemble)]},
        "started": runs.utc_now(),
        "data_dir": str(resolve_data_dir(data_dir).resolve()),  # a fallback for evaluate
    }
    atomic.atomic_write_json(run_dir / "meta.json", meta)
    _write_members(run_dir, config, {})
    return run_dir


def _as_sweep(run_dir: Path, config: Config):
    """The members as the points of a sweep, so that they run on its executors and resume."""
    from bnn_cli.sweep import Point, Sweep

    points = []
    for i in range(config.inference.ensemble):
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
    found = _write_members(run_dir, config, manifest)
    done = sum(m.state == "complete" for m in found)
    if state is None:
        state = "complete" if done == len(found) else "failed"
    fields: dict[str, Any] = {
        "members_total": len(found),
        "members_complete": done,
        "wall_s": round(wall_s, 2),
    }
    statuses = [_status_of(m.run_dir) for m in found]
    done_its = [s.get("iterations_done") for s in statuses if s.get("state") == "complete"]
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
    try:
        runs.write_status(run_dir, state, **fields)
    except BnnError:
        pass  # a full disk must not hide the error that ended the ensemble
    return state


def _manifest(run_dir: Path, config: Config) -> dict[str, dict[str, Any]]:
    path = run_dir / MEMBERS_DIR / "sweeps" / f"{config.name}.json"
    try:
        points = json.loads(path.read_text(encoding="utf-8"))["points"]
        return {p["label"]: p for p in points}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_members(run_dir: Path, config: Config, manifest: dict) -> list[Member]:
    found = []
    for i in range(config.inference.ensemble):
        entry = manifest.get(f"m{i}", {})
        # Relative to the ensemble: a copied or moved ensemble still finds its members.
        run = Path(MEMBERS_DIR) / Path(entry["run_dir"]).name if entry.get("run_dir") else None
        state = entry.get("state", "missing") if run else "missing"
        found.append(Member(i, config.seed + i, run_dir / run if run else None, state))
    atomic.atomic_write_json(
        run_dir / ENSEMBLE_FILE,
        {
            "members": [
                {
                    "index": m.index,
                    "seed": m.seed,
                    "run": f"{MEMBERS_DIR}/{m.run_dir.name}" if m.run_dir else None,
                    "state": m.state,
                }
                for m in found
            ]
        },
    )
    return found


def _status_of(member_dir: Path | None) -> dict[str, Any]:
    """A member's status.json; empty when it has no directory yet or its status is unreadable."""
    try:
        status = runs.read_status(member_dir, missing_ok=True) if member_dir else None
    except RunError:
        status = None
    return status or {}


def members(run_dir: Path) -> list[Member]:
    """The members ensemble.json lists, each with its run directory's state now."""
    run_dir = Path(run_dir)
    path = run_dir / ENSEMBLE_FILE
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["members"]
        entries = [(int(e["index"]), int(e["seed"]), e.get("run")) for e in listed]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(f"'{path}' is missing or corrupt (not an ensemble's member list)") from None
    found = []
    for index, seed, run in entries:
        member_dir = run_dir / run if run else None
        found.append(
            Member(index, seed, member_dir, _status_of(member_dir).get("state", "missing"))
        )
    return found


def usable_members(run_dir: Path, allow_incomplete: bool, console: Console | None) -> list[Member]:
    """The complete members to evaluate. One missing or incomplete refuses (exit 4, naming
    it) unless `allow_incomplete`, which then says (on `console`) which members are used."""
    found = members(run_dir)
    complete = [m for m in found if m.state == "complete"]
    missing = [m for m in found if m.state != "complete"]
    if missing and not allow_incomplete:
        first = missing[0]
        where = f" ({first.run_dir.name})" if first.run_dir else ""
        raise RunError(
            f"ensemble '{Path(run_dir).name}': member {first.label}{where} is {first.state}, "
            f"not complete ({len(missing)} of {len(found)} members missing); train the "
            f"ensemble again to finish it, or evaluate with --allow-incomplete to use the "
            f"{len(complete)} complete members"
        )
    if not complete:
        raise RunError(f"ensemble '{Path(run_dir).name}' has no complete member to evaluate")
    if missing and console is not None:
        console.print(
            f"warning: evaluating {len(complete)} of {len(found)} members "
            f"({', '.join(m.label for m in complete)}); missing: "
            f"{', '.join(f'{m.label} ({m.state})' for m in missing)}",
            style="yellow",
            highlight=False,
        )
    return complete


def _resumable(runs_dir: Path, config: Config) -> Path | None:
    """The newest ensemble directory of this very config (same members), if any."""
    from bnn_cli.sweep import runs_named

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


def split_draws(total: int, n_members: int) -> list[int]:
    """`total` draws shared out among the members, at least one each (the first get the
    remainder): the mixture's predictive has about `total` draws whatever its size."""
    base, extra = divmod(max(total, n_members), n_members)
    return [base + (i < extra) for i in range(n_members)]


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
