"""One trial's side, inside its `bnn train` process: at every validation the fit reports the
objective to the study and asks the pruner whether to go on (Optuna's `trial.report` /
`trial.should_prune`). The tuner hands the trial over as a small JSON file (`--tune-trial`):
the storage URL, the study, the trial's id, the objective and the pruner's settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bnn_cli.atomic import atomic_write_json
from bnn_cli.errors import ConfigError
from bnn_cli.fit.loop import FitState, Pruned
from bnn_cli.tune.spec import objective_of
from bnn_cli.tune.study import make_pruner, open_storage

TRIAL_KEYS = ("storage", "study", "trial_id", "number", "objective", "weights", "pruner")


def write_handle(path: Path, handle: dict[str, Any]) -> Path:
    atomic_write_json(path, handle)
    return path


def read_handle(path: Path) -> dict[str, Any]:
    try:
        handle = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tune-trial '{path}' cannot be read: {exc}") from None
    if not isinstance(handle, dict) or any(k not in handle for k in TRIAL_KEYS):
        raise ConfigError(f"--tune-trial '{path}' is not a trial handle written by bnn tune")
    return handle


class TrialReporter:
    """A fit callback: reports the objective at each validation the study has not seen yet
    (a resumed fit's earlier validations included), then raises `Pruned` when the pruner says
    the trial is not worth finishing."""

    def __init__(self, handle: dict[str, Any]):
        import optuna  # lazy: imports Optuna

        storage = open_storage(handle["storage"])
        study = optuna.load_study(
            study_name=handle["study"], storage=storage, pruner=make_pruner(handle["pruner"])
        )
        self.trial = optuna.trial.Trial(study, handle["trial_id"])
        self.objective, self.number = handle["objective"], handle["number"]
        self.weights = handle["weights"]
        self.reported: set[int] = set(
            self.trial.storage.get_trial(handle["trial_id"]).intermediate_values
        )

    def __call__(self, approx: Any, state: FitState) -> None:
        fresh = [
            (row["iteration"], value)
            for row in state.rows
            if row["iteration"] not in self.reported
            and (value := objective_of(row, self.weights)) is not None
        ]
        for iteration, value in fresh:
            self.trial.report(value, step=iteration)
            self.reported.add(iteration)
        if fresh and self.trial.should_prune():
            iteration, value = fresh[-1]
            raise Pruned(
                f"trial {self.number} pruned at iteration {iteration}: "
                f"{self.objective} {value:.4g} is not among the study's best at "
                "this point (pruner's verdict)"
            )
