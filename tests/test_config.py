"""The configuration schema: defaults, overrides, and the text of every refusal."""

from pathlib import Path

import pytest
import yaml

from bnn_cli.config import Config, config_from_dict, config_yaml, load_config
from bnn_cli.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path, text: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), list(overrides))
    return str(info.value)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.name == path.stem


def test_defaults_filled_in_and_round_trip(tmp_path):
    config = load_config(write(tmp_path, "name: x\n"))
    assert config.model.hidden == (800, 800)
    assert config.inference.start_sigma == 0.001
    again = config_from_dict(yaml.safe_load(config_yaml(config)))
    assert again == config


def test_overrides_are_yaml_scalars_and_type_checked(tmp_path):
    path = write(tmp_path, "name: x\n")
    config = load_config(
        path,
        [
            "model.hidden=[10, 20]",
            "inference.learning_rate=0.01",
            "prior.kind=hierarchical",
            "seed=3",
        ],
    )
    assert config.model.hidden == (10, 20)
    assert config.inference.learning_rate == 0.01
    assert config.prior.kind == "hierarchical" and config.seed == 3
    assert "inference.iterations: expected an integer, got 'many'" in error_of(
        tmp_path, "name: x\n", ["inference.iterations=many"]
    )


def test_unknown_key_suggests_the_closest(tmp_path):
    assert error_of(tmp_path, "model: {hiden: [1]}\n") == (
        "unknown key 'model.hiden' — did you mean 'model.hidden'?"
    )
    assert "unknown key 'infer' — did you mean 'inference'?" in error_of(tmp_path, "infer: {}\n")
    message = error_of(tmp_path, "zzz: 1\n")
    assert "unknown key 'zzz'; valid keys: name, seed, data" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "inference: {batch_size: 0}",
            "inference.batch_size: got 0, expected a value greater than 0",
        ),
        ("inference: {iterations: -5}", "inference.iterations: got -5, expected a value greater"),
        ("inference: {learning_rate: 0}", "inference.learning_rate: got 0.0, expected a value"),
        ("inference: {learning_rate: .nan}", "inference.learning_rate: expected a finite number"),
        (
            "model: {architecture: resnet}",
            "model.architecture: got 'resnet', expected one of mlp, conv",
        ),
        ("prior: {kind: flat}", "prior.kind: got 'flat', expected one of fixed, hierarchical"),
        ("model: {hidden: 800}", "model.hidden: expected a non-empty list of integers, got 800"),
        ("model: {hidden: [800, 0]}", "model.hidden: got 0, expected a value greater than 0"),
        ("seed: true", "seed: expected an integer, got True"),
        ("data: {train_size: 55000}", "data.train_size + data.val_size = 65000 exceeds the 60000"),
        ("model: {architecture: conv, filters: [8, 8, 8], kernel_size: 5}", "conv block 3 leaves"),
        ("data: 3", "'data' must be a mapping, got int 3"),
    ],
)
def test_bad_values_name_key_value_and_allowed(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text + "\n")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "is empty"),
        ("name: [unclosed\n", "is not valid YAML at line"),
        ("- a\n- b\n", "must hold a mapping of sections, got list"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "is not valid YAML"),
    ],
)
def test_bad_files(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file '.*nope.yaml' not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("item", ["noequals", "=3", "a..b=1", ".x=1"])
def test_bad_set_syntax(tmp_path, item):
    assert "--set expects dotted.key=value" in error_of(tmp_path, "name: x\n", [item])


def test_set_into_a_scalar_is_refused(tmp_path):
    assert "'seed' is not a section" in error_of(tmp_path, "seed: 1\n", ["seed.x=1"])
    assert "seed: expected an integer, got {'x': 1}" in error_of(
        tmp_path, "name: x\n", ["seed.x=1"]
    )


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().seed = 3  # type: ignore[misc]
