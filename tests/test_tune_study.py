"""The study database: storage URLs that cannot be opened, a database that is not a study, a
direction that changed, the budget, and a continued study's cut-off trials."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from bnn_cli.errors import ConfigError, ExitCode
from bnn_cli.fit import resume as fit_resume
from bnn_cli.runs import create_run_dir, write_status
from bnn_cli.tune import study as studies
from bnn_cli.tune.spec import load_tune
from tests.tune_helpers import write_tune


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_checkpoint(run, config) -> None:
    """The part of checkpoint.npz that says which config it was written with (no arrays)."""
    meta = json.dumps({"config_sha256": fit_resume.config_hash(config)})
    np.savez(run / fit_resume.FILE_NAME, **{fit_resume.META: np.array(meta)})


@pytest.fixture
def spec(tmp_path):
    return load_tune(write_tune(tmp_path / "spec", {}))


def test_a_new_study_is_created_then_continued(tmp_path, spec):
    url = studies.default_storage(tmp_path)
    assert url == f"sqlite:///{tmp_path / 'study.db'}"
    study = studies.open_study(spec, url)
    study.tell(study.ask(), 0.5)
    again = studies.open_study(spec, url)
    assert [t.value for t in again.trials] == [0.5] and again.study_name == "tune"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("hello"), "is not an SQLite database (give a new file or an "),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE songs (x)").connection.commit(),
            "is a database, but not of Optuna studies (its tables: songs); give a new file",
        ),
    ],
)
def test_a_file_that_is_not_a_study_database_is_refused_untouched(tmp_path, spec, make, message):
    path = tmp_path / "other.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        studies.open_study(spec, f"sqlite:///{path}")
    assert message in str(info.value) and info.value.exit_code == ExitCode.USAGE
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////no/such/folder/study.db", "the folder '/no/such/folder' does not exist"),
        ("nosuchdb://host/x", "--storage 'nosuchdb://host/x' cannot be opened: "),
        (
            "postgresql://bnn@127.0.0.1:1/x",
            "its database's Python driver is not installed (pip install ",
        ),
    ],
)
def test_a_storage_url_that_cannot_be_opened_is_named(spec, url, message):
    with pytest.raises(ConfigError) as info:
        studies.open_study(spec, url)
    assert message in str(info.value)


def test_a_study_made_to_minimize_is_not_continued_to_maximize(tmp_path, spec):
    url = studies.default_storage(tmp_path)
    studies.open_study(spec, url)
    other = load_tune(write_tune(tmp_path / "spec", {"objective": "val_accuracy"}))
    with pytest.raises(ConfigError, match="was created to minimize, and the tune file asks to"):
        studies.open_study(other, url)


def test_a_trial_whose_tuner_died_is_failed_and_retried_once_from_its_run(tmp_path, spec):
    study = studies.open_study(spec, studies.default_storage(tmp_path))
    done = study.ask()
    studies.suggest(done, spec.space)
    study.tell(done, 0.3)
    cut = study.ask()
    params = studies.suggest(cut, spec.space)
    run = create_run_dir(tmp_path / "runs", "tune-t0001")
    write_status(run, "running", pid=dead_pid(), host=__import__("platform").node())
    write_checkpoint(run, spec.config_for(params, "tune-t0001"))
    attrs = {**studies.owner_attrs(), "pid": dead_pid(), "config_name": "tune-t0001"}
    studies.set_attrs(study, cut._trial_id, attrs)
    assert studies.counted(study) == 2

    assert studies.reconcile(study, spec, tmp_path / "runs") == [1]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["error"] == "its bnn tune was killed"
    assert trials[2].user_attrs == {"retry_of": 1, "resume": str(run)}
    assert studies.counted(study) == 1  # the cut-off trial no longer counts; its retry will
    assert studies.reconcile(study, spec, tmp_path / "runs") == []  # once only
    retry = study.ask()
    assert studies.suggest(retry, spec.space) == params


def test_a_cut_trial_whose_run_cannot_go_on_is_retried_from_scratch_and_says_why(tmp_path, spec):
    study = studies.open_study(spec, studies.default_storage(tmp_path))
    first, second = study.ask(), study.ask()
    for trial in (first, second):
        studies.suggest(trial, spec.space)
    runs = tmp_path / "runs"
    foreign = create_run_dir(runs, "tune-t0000")
    write_status(foreign, "interrupted")
    write_checkpoint(foreign, spec.config_for({}, "another"))
    for trial, name in ((first, "tune-t0000"), (second, "tune-t0001")):  # t0001: no run at all
        attrs = {**studies.owner_attrs(), "pid": dead_pid(), "config_name": name}
        studies.set_attrs(study, trial._trial_id, attrs)

    assert studies.reconcile(study, spec, runs) == [0, 1]
    retries = [t.user_attrs for t in study.get_trials()[2:]]
    assert retries == [
        {"retry_of": 0, "started_over": "its checkpoint was written with another configuration"},
        {"retry_of": 1, "started_over": "its run was not found"},
    ]


def test_a_trial_of_a_live_tuner_is_left_running(tmp_path, spec):
    study = studies.open_study(spec, studies.default_storage(tmp_path))
    trial = study.ask()
    studies.set_attrs(study, trial._trial_id, studies.owner_attrs())
    assert studies.reconcile(study, spec, tmp_path) == []
    assert study.get_trials()[0].state == TrialState.RUNNING


def test_suggest_covers_every_kind(tmp_path):
    spec = load_tune(
        write_tune(
            tmp_path,
            {
                "space": {
                    "inference.kl_warmup": {"type": "int", "low": 0, "high": 20, "step": 10},
                    "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
                    "prior.gain": {"type": "float", "low": 0.5, "high": 4.0, "step": 0.5},
                }
            },
        )
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = studies.suggest(study.ask(), spec.space)
    assert values["inference.kl_warmup"] in (0, 10, 20)
    assert values["model.activation"] in ("relu", "tanh")
    assert values["prior.gain"] * 2 == int(values["prior.gain"] * 2)


def test_of_two_tuners_asking_at_once_past_the_budget_the_later_trial_gives_way(tmp_path, spec):
    study = studies.open_study(spec, studies.default_storage(tmp_path))
    first, second = study.ask(), study.ask()  # both tuners saw room for one more of 2
    assert not studies.surplus(study, first, 2) and not studies.surplus(study, second, 2)
    third = study.ask()
    assert studies.surplus(study, third, 2)
    assert study.get_trials()[2].state == TrialState.FAIL
    assert studies.counted(study) == 2


def test_a_continued_study_draws_new_values_not_its_first_starts_again(tmp_path, spec):
    url = studies.default_storage(tmp_path)
    first = studies.open_study(spec, url)
    values = [studies.suggest(first.ask(), spec.space) for _ in range(2)]
    again = studies.open_study(spec, url)  # a restart: the same seed in the tune file
    assert studies.suggest(again.ask(), spec.space) not in values
    (tmp_path / "other").mkdir()
    fresh = studies.open_study(spec, studies.default_storage(tmp_path / "other"))
    assert studies.suggest(fresh.ask(), spec.space) == values[0]  # a new study: reproducible
