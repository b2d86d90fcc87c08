"""An ensemble's directory (see `bnn_cli.ensemble` for its life cycle): `ensemble.json`, the
members' seeds, run directories and states, which members an evaluation may use, and how the
draws of the mixture are shared out among them. Read by `bnn evaluate` and the Python API,
written by `bnn train`; below both, so that neither imports the sweep that trains the members.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bnn_cli import atomic
from bnn_cli.config import Config
from bnn_cli.console import warning
from bnn_cli.errors import RunError
from bnn_cli.runs.store import read_status

ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"


@dataclass(frozen=True)
class Member:
    index: int
    seed: int
    run_dir: Path | None  # None: never started
    state: str  # complete, failed, interrupted, running or missing

    @property
    def label(self) -> str:
        return f"m{self.index}"


def is_ensemble(run_dir: Path) -> bool:
    return (Path(run_dir) / ENSEMBLE_FILE).is_file()


def write_members(run_dir: Path, config: Config, manifest: dict) -> list[Member]:
    found = []
    for i in range(config.inference.ensemble or 0):
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


def status_of(member_dir: Path | None) -> dict[str, Any]:
    """A member's status.json; empty when it has no directory yet or its status is unreadable."""
    try:
        status = read_status(member_dir, missing_ok=True) if member_dir else None
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
        found.append(Member(index, seed, member_dir, status_of(member_dir).get("state", "missing")))
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
        warning(
            console,
            f"evaluating {len(complete)} of {len(found)} members "
            f"({', '.join(m.label for m in complete)}); missing: "
            f"{', '.join(f'{m.label} ({m.state})' for m in missing)}",
        )
    return complete


def split_draws(total: int, n_members: int) -> list[int]:
    """`total` draws shared out among the members, at least one each (the first get the
    remainder): the mixture's predictive has about `total` draws whatever its size."""
    base, extra = divmod(max(total, n_members), n_members)
    return [base + (i < extra) for i in range(n_members)]
