"""What a study leaves: best.yaml that `bnn train` reads as it is, the trials table and CSV, and
the report with its pictures; the share of iterations pruning saved."""

from __future__ import annotations

import csv
import io

import optuna
from optuna.trial import TrialState

from bnn_cli.config import load_config
from bnn_cli.tune import report
from bnn_cli.tune import study as studies
from bnn_cli.tune.spec import load_tune
from tests.tune_helpers import write_tune

PNG = b"\x89PNG\r\n\x1a\n"


def a_study(tmp_path):
    """Four complete trials, one pruned at iteration 10 of 40, one failed."""
    spec = load_tune(write_tune(tmp_path / "spec", {}))
    study = studies.open_study(spec, studies.default_storage(tmp_path))
    dist = {
        "inference.learning_rate": optuna.distributions.FloatDistribution(1e-5, 3e-2, log=True),
        "prior.gain": optuna.distributions.FloatDistribution(0.5, 4.0),
    }
    curves = [(0.01, 1.0, [0.5, 0.4, 0.3, 0.2]), (0.003, 2.0, [0.6, 0.5, 0.45, 0.25]),
              (0.02, 3.0, [0.7, 0.6, 0.5, 0.3]), (0.001, 0.5, [0.4, 0.35, 0.3, 0.15])]  # fmt: skip
    for lr, gain, curve in curves:
        study.add_trial(
            optuna.trial.create_trial(
                params={"inference.learning_rate": lr, "prior.gain": gain},
                distributions=dist,
                value=curve[-1],
                intermediate_values={10 * (i + 1): v for i, v in enumerate(curve)},
                user_attrs={"run_dir": f"/runs/t{lr}", "wall_s": 12.5},
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={"inference.learning_rate": 1e-5, "prior.gain": 1.0},
            distributions=dist,
            state=TrialState.PRUNED,
            intermediate_values={10: 2.3},
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"inference.learning_rate": 0.03, "prior.gain": 4.0},
            distributions=dist,
            state=TrialState.FAIL,
            user_attrs={"error": "the loss became nan at iteration 3"},
        )
    )
    return spec, study


def test_best_yaml_is_the_best_trials_config_with_where_it_came_from(tmp_path):
    spec, study = a_study(tmp_path)
    path = report.write_best(spec, study, tmp_path)
    text = path.read_text()
    assert text.startswith("# The best trial of study 'tune'")
    assert "# trial 3, val_nll 0.15 on the validation split," in text
    assert "inference.learning_rate=0.001, prior.gain=0.5" in text
    config = load_config(path)
    assert config.inference.learning_rate == 0.001 and config.prior.gain == 0.5
    assert config.name == "tune-best" and config.inference.iterations == 40


def test_no_best_yaml_without_a_complete_trial(tmp_path):
    spec = load_tune(write_tune(tmp_path / "spec", {}))
    study = studies.open_study(spec, studies.default_storage(tmp_path))
    assert report.write_best(spec, study, tmp_path) is None


def test_the_rows_and_what_pruning_saved(tmp_path):
    spec, study = a_study(tmp_path)
    rows = report.trial_rows(study, spec)
    assert [r["state"] for r in rows] == ["complete"] * 4 + ["pruned", "fail"]
    assert rows[4]["iterations"] == 10 and rows[4]["last_reported"] == 2.3
    assert rows[5]["error"] == "the loss became nan at iteration 3"
    saved = report.pruning_savings(rows, iterations=40)
    assert saved == {"ran": 170, "planned": 200, "saved": 1 - 170 / 200}


def test_the_report_has_the_table_and_the_pictures(tmp_path):
    spec, study = a_study(tmp_path)
    page = report.write_report(spec, study, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "Trials: 4 complete, 1 pruned, 1 failed, of 3 asked." in markdown
    assert (
        "Pruning ran 170 of the 200 iterations the finished trials would have run (15% saved)"
        in markdown
    )
    assert "**Best: trial 3, val_nll 0.15**" in markdown
    assert "| 4 | pruned | 2.3 (last) | 10 |" in markdown
    for name in ("tune_history.png", "tune_importance.png", "tune_slice.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG)
        assert f"![{name}](plots/{name})" in markdown
    assert page.read_text().count("data:image/png;base64,") == 3
    rows = list(csv.DictReader(io.StringIO((tmp_path / "trials.csv").read_text())))
    assert rows[3]["value"] == "0.15" and rows[3]["run_dir"] == "/runs/t0.001"


def test_the_terminal_table_carries_one_field_per_parameter(tmp_path):
    spec, study = a_study(tmp_path)
    tab = report.summary_tabular(report.trial_rows(study, spec), spec)
    assert tab.keys[:3] == ["trial", "state", "value"] and "prior.gain" in tab.keys
    assert tab.cells()[4][:4] == ["4", "pruned", "2.3 (last)", "10"]
    assert tab.records[0]["prior.gain"] == 1.0
