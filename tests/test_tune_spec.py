"""The tune file: its keys, the space's distributions, the objective, the sampler and pruner;
every bad request one ConfigError naming the key."""

from __future__ import annotations

import pytest

from bnn_cli.errors import ConfigError, ExitCode
from bnn_cli.tune.spec import load_tune, objective_of
from tests.tune_helpers import SPACE, TINY, write_tune


def test_a_tune_file_gives_the_space_objective_and_each_trials_config(tmp_path):
    path = write_tune(
        tmp_path,
        {
            "space": {
                **SPACE,
                "inference.kl_warmup": {"type": "int", "low": 0, "high": 20, "step": 10},
                "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
            },
            "enqueue": [{"inference.learning_rate": 0.003}],
            "pruner": "successive_halving",
        },
    )
    spec = load_tune(path)
    assert spec.name == "tune" and spec.objective == "val_nll" and spec.direction == "minimize"
    assert [p.key for p in spec.space] == [*SPACE, "inference.kl_warmup", "model.activation"]
    assert spec.space[0].log and spec.space[0].describe() == "log float in [1e-05, 0.03]"
    assert spec.space[2].describe() == "int in [0, 20] step 10"
    assert spec.pruner.kind == "successive_halving" and spec.sampler.kind == "tpe"
    config = spec.config_for({"inference.learning_rate": 0.01, "model.activation": "tanh"}, "t1")
    assert config.name == "t1" and config.inference.learning_rate == 0.01
    assert config.model.activation == "tanh" and config.model.hidden == tuple(TINY["model.hidden"])
    assert spec.enqueue == ({"inference.learning_rate": 0.003},)


def test_a_combined_objective_weights_the_figures_and_needs_a_direction(tmp_path):
    body = {"objective": {"val_nll": 1, "val_mi": -0.5}, "direction": "minimize"}
    spec = load_tune(write_tune(tmp_path, body))
    assert spec.objective == "val_nll - 0.5 val_mi" and spec.direction == "minimize"
    row = {"iteration": 10, "val_nll": 0.3, "val_mi": 0.2, "val_accuracy": 0.9}
    assert objective_of(row, spec.weights) == pytest.approx(0.2)
    assert objective_of({"iteration": 5, "loss": 1.0}, spec.weights) is None  # no validation
    with pytest.raises(ConfigError, match="a combined objective needs 'direction'"):
        load_tune(write_tune(tmp_path, {"objective": {"val_nll": 1, "val_mi": -0.5}}))
    with pytest.raises(ConfigError, match="objective: val_mi's weight: expected a number"):
        load_tune(write_tune(tmp_path, {"objective": {"val_mi": "x"}, "direction": "minimize"}))


def test_accuracy_is_maximized_by_default(tmp_path):
    spec = load_tune(write_tune(tmp_path, {"objective": "val_accuracy"}))
    assert spec.direction == "maximize"


BAD = [
    (
        {"space": {"inference.learing_rate": {"type": "float", "low": 0.001, "high": 0.01}}},
        "unknown key 'inference.learing_rate' — did you mean 'inference.learning_rate'?",
    ),
    ({"space": {}}, "the space is empty: give 'space:' a dotted config key"),
    (
        {"space": {"prior.gain": {"type": "float", "low": 3, "high": 1}}},
        "space 'prior.gain': low (3.0) is above high (1.0)",
    ),
    (
        {"space": {"prior.gain": {"type": "float", "low": 0, "high": 1, "log": True}}},
        "space 'prior.gain': a log distribution needs low > 0, got low 0.0",
    ),
    (
        {"space": {"prior.gain": {"type": "flaot", "low": 0, "high": 1}}},
        "space 'prior.gain': type: got 'flaot', expected one of float, int, categorical — did "
        "you mean 'float'?",
    ),
    (
        {"space": {"prior.gain": {"type": "float", "low": 0.5, "hihg": 1}}},
        "space 'prior.gain': unknown key 'hihg' — did you mean 'high'?",
    ),
    (
        {"space": {"inference.learning_rate": {"type": "float", "low": -1, "high": 1}}},
        "inference.learning_rate: got -1.0, expected a value greater than 0 (at "
        "inference.learning_rate=-1.0)",
    ),
    ({"objective": "val_nlll"}, "objective: got 'val_nlll', expected one of val_nll, "),
    ({"objective": "test_accuracy"}, "objective: got 'test_accuracy', expected one of"),
    ({"trials": 0}, "trials: got 0, expected an integer of 1 or more"),
    ({"sampler": {"kind": "grid"}}, "sampler: kind: got 'grid', expected one of tpe, random"),
    ({"pruner": {"patience": 2}}, "pruner: unknown key 'patience'"),
    ({"enqueue": [{"prior.gian": 1.0}]}, "enqueue[0]: 'prior.gian' is not in the space — did "),
    ({"spaces": {}}, "unknown key 'spaces' — did you mean 'space'?"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_requests_name_the_key_and_what_is_allowed(tmp_path, body, message):
    with pytest.raises(ConfigError) as info:
        load_tune(write_tune(tmp_path, body))
    assert message in str(info.value)
    assert str(info.value).startswith(f"tune file '{tmp_path / 'tune.yaml'}'")
    assert info.value.exit_code == ExitCode.USAGE


def test_a_key_both_set_and_searched_is_refused(tmp_path):
    body = {"set": {**TINY, "prior.gain": 2.0}}
    with pytest.raises(ConfigError, match="'prior.gain' is both in 'set' and the space"):
        load_tune(write_tune(tmp_path, body))


def test_a_missing_base_or_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="tune file '.*nope.yaml' not found"):
        load_tune(tmp_path / "nope.yaml")
    path = write_tune(tmp_path, "base: missing.yaml\nspace: {}\n")
    with pytest.raises(ConfigError, match="base config '.*missing.yaml' not found"):
        load_tune(path)
