"""A trial inside its fit: each validation reported once to the study (a resumed fit's earlier
ones too), and `Pruned` when the pruner says the trial is behind."""

from __future__ import annotations

import pytest

from bnn_cli.errors import ConfigError
from bnn_cli.fit.loop import FitState, Pruned
from bnn_cli.tune import study as studies
from bnn_cli.tune.spec import load_tune
from bnn_cli.tune.trial import TrialReporter, read_handle, write_handle
from tests.tune_helpers import write_tune


def make_study(tmp_path, pruner: dict | None = None):
    body = {"pruner": pruner or {"kind": "median", "startup_trials": 2}}
    spec = load_tune(write_tune(tmp_path / "spec", body))
    url = studies.default_storage(tmp_path)
    return spec, url, studies.open_study(spec, url)


def handle_for(tmp_path, spec, url, trial) -> dict:
    handle = {
        "storage": url,
        "study": spec.name,
        "trial_id": trial._trial_id,
        "number": trial.number,
        "objective": "val_nll",
        "weights": {"val_nll": 1.0},
        "pruner": dict(spec.pruner.__dict__),
    }
    return read_handle(write_handle(tmp_path / f"t{trial.number}.json", handle))


def finish(study, curve: list[float]) -> None:
    trial = study.ask()
    for step, value in enumerate(curve, start=1):
        trial.report(value, step * 10)
    study.tell(trial, curve[-1])


def state_with(rows: list[tuple[int, float]]) -> FitState:
    state = FitState()
    state.rows = [{"iteration": i, "loss": 1.0, "val_nll": v, "val_accuracy": 0.9} for i, v in rows]
    state.rows.insert(0, {"iteration": 5, "loss": 1.0})  # a loss-only row: not reported
    state.iteration = rows[-1][0]
    return state


def third_trial(tmp_path):
    """A median-pruned study with two trials finished, and the reporter of its third."""
    spec, url, study = make_study(tmp_path)
    finish(study, [0.9, 0.8])
    finish(study, [0.7, 0.6])
    return study, TrialReporter(handle_for(tmp_path, spec, url, study.ask()))


def test_each_validation_is_reported_once_and_a_trial_ahead_goes_on(tmp_path):
    study, reporter = third_trial(tmp_path)
    reporter(None, state_with([(10, 0.5)]))
    reporter(None, state_with([(10, 0.5), (20, 0.4)]))
    assert study.get_trials()[2].intermediate_values == {10: 0.5, 20: 0.4}


def test_a_trial_worse_than_the_median_is_pruned_with_the_reason(tmp_path):
    _, reporter = third_trial(tmp_path)
    with pytest.raises(Pruned) as info:
        reporter(None, state_with([(10, 2.5)]))
    assert str(info.value) == (
        "trial 2 pruned at iteration 10: val_nll 2.5 is not among the study's best at this "
        "point (pruner's verdict)"
    )


def test_no_trial_is_pruned_before_the_pruners_startup_trials(tmp_path):
    spec, url, study = make_study(tmp_path, {"kind": "median", "startup_trials": 3})
    finish(study, [0.9, 0.8])
    finish(study, [0.7, 0.6])
    trial = study.ask()
    TrialReporter(handle_for(tmp_path, spec, url, trial))(None, state_with([(10, 9.0)]))


def test_a_resumed_fit_reports_only_what_the_study_has_not_seen(tmp_path):
    spec, url, study = make_study(tmp_path, {"kind": "none"})
    trial = study.ask()
    trial.report(0.5, 10)
    reporter = TrialReporter(handle_for(tmp_path, spec, url, trial))
    reporter(None, state_with([(10, 0.5), (20, 0.4), (30, 0.3)]))
    assert study.get_trials()[0].intermediate_values == {10: 0.5, 20: 0.4, 30: 0.3}


def test_a_handle_that_is_not_one_is_refused(tmp_path):
    path = tmp_path / "h.json"
    path.write_text('{"storage": "sqlite://"}')
    with pytest.raises(ConfigError, match="is not a trial handle written by bnn tune"):
        read_handle(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_handle(tmp_path / "missing.json")
