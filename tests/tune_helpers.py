"""What the tune tests share: tiny tune files on the smoke model, and studies made by hand."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from tests.sweep_helpers import SMOKE

# A few seconds per real trial: the smoke model, shrunk, with four validations to prune at.
TINY = {
    "inference.iterations": 40,
    "inference.eval_every": 10,
    "inference.batch_size": 100,
    "model.hidden": [16],
    "data.train_size": 2000,
    "data.val_size": 500,
    "evaluate.val_draws": 2,
}
SPACE = {
    "inference.learning_rate": {"type": "float", "low": 1e-5, "high": 3e-2, "log": True},
    "prior.gain": {"type": "float", "low": 0.5, "high": 4.0},
}


def write_tune(folder: Path, body: dict | str, name: str = "tune.yaml") -> Path:
    """A tune file beside a copy of the smoke config; `body` as a mapping (the tiny defaults
    filled in) or as YAML text taken as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "smoke.yaml").write_text(SMOKE.read_text())
    path = folder / name
    if isinstance(body, str):
        path.write_text(textwrap.dedent(body))
        return path
    full = {"base": "smoke.yaml", "set": dict(TINY), "space": SPACE, "trials": 3, **body}
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    return path
