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


def test_a_shipped_config_with_early_stopping_cut_short_needs_it_off():
    cut = ["inference.iterations=80"]
    with pytest.raises(ConfigError, match="set inference.early_stopping=none"):
        load_config(CONFIGS / "conv.yaml", cut)
    config = load_config(CONFIGS / "conv.yaml", [*cut, "inference.early_stopping=none"])
    assert config.inference.iterations == 80 and config.inference.min_iterations == 4000


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
        (
            "inference: {steps_per_call: -1}",
            "inference.steps_per_call: got -1, expected a value of 0 or more",
        ),
        (
            "inference: {steps_per_call: 10, backend: c}",
            "inference.steps_per_call: got 10, but several steps per call need inference.backend "
            "jax (got c); use 0 or 1",
        ),
        (
            "prior: {sd: fanin}",
            "prior.sd: got 'fanin', expected a number greater than 0 or fan_in (gain / "
            "sqrt(fan_in), see prior.gain)",
        ),
        ("prior: {sd: fan_in, gain: 0}", "prior.gain: got 0.0, expected a value greater than 0"),
        ("prior: {hyper_sd: -1}", "prior.hyper_sd: got -1.0, expected a value greater than 0"),
        (
            "prior: {kind: hierarchical, scale_per: pixel}",
            "prior.scale_per: got 'pixel', expected one of tensor, input, output",
        ),
        ("inference: {kl_weight: 0}", "inference.kl_weight: got 0.0, expected a value greater"),
        ("inference: {kl_weight: -0.5}", "inference.kl_weight: got -0.5, expected a value"),
        (
            "inference: {kl_warmup: 60000}",
            "inference.kl_warmup: got 60000, expected at most inference.iterations (50000)",
        ),
        (
            "inference: {early_stopping: val_loss}",
            "inference.early_stopping: got 'val_loss', expected one of none, val_nll, val_accuracy",
        ),
        ("inference: {patience: 0}", "inference.patience: got 0, expected a value greater than 0"),
        (
            "inference: {early_stopping: val_nll, min_iterations: 60000}",
            "inference.min_iterations: got 60000, expected at most inference.iterations (50000); "
            "lower it, or set inference.early_stopping=none",
        ),
        (
            "inference: {min_iterations: -1}",
            "inference.min_iterations: got -1, expected a value of 0 or more",
        ),
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


@pytest.mark.parametrize(
    ("text", "expected"), [("1e-3", 0.001), ("2E+2", 200.0), ("1.0e-3", 0.001), (".5e1", 5.0)]
)
def test_exponent_notation_is_a_number_for_float_keys(tmp_path, text, expected):
    # PyYAML (YAML 1.1) reads `1e-3` as a string; a float key takes it as the number it means.
    config = load_config(write(tmp_path, f"inference: {{start_sigma: {text}}}\n"))
    assert config.inference.start_sigma == expected


def test_exponent_notation_stays_text_for_other_keys(tmp_path):
    assert "inference.iterations: expected an integer, got '1e3'" in error_of(
        tmp_path, "inference: {iterations: 1e3}\n"
    )
    assert load_config(write(tmp_path, "name: 1e3\n")).name == "1e3"
    assert "start_sigma: got -0.1, expected a value greater than 0" in error_of(
        tmp_path, "inference: {start_sigma: -1e-1}\n"
    )


BIG = "1" * 5000  # beyond the 4300 digits Python converts to or from text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed: 4294967296\n", "seed: got 4294967296, expected a value from 0 to 4294967295"),
        ('name: "a\\0b"\n', "name: got 'a\\x00b', expected a non-empty name without '/'"),
        (f"name: {'x' * 101}\n", "expected a non-empty name without '/' (at most 100"),
        (f"inference: {{learning_rate: {'9' * 400}}}\n", "expected a finite number, got 999"),
        ('"\\n": 1\n', "unknown key '\\n'; valid keys"),
        ("name: 2024-02-30\n", "holds a value YAML cannot read: day is out of range for month"),
        (f"seed: {BIG}\n", "holds a value YAML cannot read: Exceeds the limit (4300 digits)"),
        ("seed: !!int x\n", "holds a value YAML cannot read: invalid literal for int()"),
    ],
)
def test_extreme_values_are_refused_on_one_line(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    assert expected in message and "\n" not in message


def test_an_unreadable_set_value(tmp_path):
    assert "--set name: cannot parse value '2024-02-30'" in error_of(
        tmp_path, "name: x\n", ["name=2024-02-30"]
    )


def test_ood_sets_are_a_list_of_known_datasets_other_than_the_training_set(tmp_path):
    config = load_config(write(tmp_path, "name: x\nevaluate: {ood: [fashion-mnist]}\n"))
    assert config.evaluate.ood == ("fashion-mnist",)
    assert load_config(write(tmp_path, "name: x\nevaluate: {ood: []}\n")).evaluate.ood == ()
    assert load_config(write(tmp_path, "name: x\n")).evaluate.ood == ()
    assert error_of(tmp_path, "evaluate: {ood: [cifar]}\n") == (
        "evaluate.ood: got 'cifar', expected one of mnist, fashion-mnist"
    )
    assert error_of(tmp_path, "evaluate: {ood: fashion-mnist}\n") == (
        "evaluate.ood: expected a list of names, got 'fashion-mnist'"
    )
    assert error_of(tmp_path, "evaluate: {ood: [mnist]}\n") == (
        "evaluate.ood: 'mnist' is the training set (data.dataset), not out-of-distribution "
        "data; list other datasets"
    )


def test_rho_step_scale_and_validation_draws_must_be_positive(tmp_path):
    config = load_config(write(tmp_path, "name: x\n"), ["inference.rho_lr_scale=3"])
    assert config.inference.rho_lr_scale == 3.0 and config.evaluate.val_draws == 10
    assert error_of(tmp_path, "name: x\n", ["inference.rho_lr_scale=0"]) == (
        "inference.rho_lr_scale: got 0.0, expected a value greater than 0"
    )
    assert error_of(tmp_path, "name: x\n", ["evaluate.val_draws=0"]) == (
        "evaluate.val_draws: got 0, expected a value greater than 0"
    )


def test_prior_sd_takes_a_number_or_fan_in(tmp_path):
    config = load_config(write(tmp_path, "prior: {sd: fan_in, gain: 2}\n"))
    assert (config.prior.sd, config.prior.gain) == ("fan_in", 2.0)
    assert load_config(write(tmp_path, "prior: {sd: 1e-1}\n")).prior.sd == 0.1
    assert load_config(write(tmp_path, "name: x\n"), ["prior.hyper_sd=fan_in"]).prior.hyper_sd == (
        "fan_in"
    )


def test_shifts_are_a_list_of_known_shifts(tmp_path):
    config = load_config(write(tmp_path, "name: x\nevaluate: {shift: [rotate]}\n"))
    assert config.evaluate.shift == ("rotate",)
    assert load_config(write(tmp_path, "name: x\n")).evaluate.shift == ()
    assert error_of(tmp_path, "evaluate: {shift: [blur]}\n") == (
        "evaluate.shift: got 'blur', expected one of rotate"
    )


def test_the_method_is_advi_or_map(tmp_path):
    assert load_config(write(tmp_path, "name: x\n")).inference.method == "advi"
    config = load_config(write(tmp_path, "name: x\ninference: {method: map}\n"))
    assert config.inference.method == "map" and config.draws(100) == 1
    assert error_of(tmp_path, "inference: {method: mcmc}\n") == (
        "inference.method: got 'mcmc', expected one of advi, map"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("inference: {kl: exact}", "inference.kl: got 'exact', expected one of sampled, analytic"),
        (
            "prior: {kind: hierarchical, hyperprior: flat}",
            "prior.hyperprior: got 'flat', expected one of halfnormal, halfcauchy, empirical, "
            "collapsed",
        ),
        (
            "prior: {kind: hierarchical, hyperprior: collapsed}",
            "prior.hyperprior: collapsed needs inference.kl: analytic (got sampled)",
        ),
        (
            "prior: {kind: fixed, hyperprior: collapsed}\ninference: {kl: analytic}",
            "prior.hyperprior: collapsed applies to prior.kind hierarchical",
        ),
        (
            "prior: {alpha: 0.1}",
            "prior.alpha below 1 needs inference.kl: analytic (got sampled)",
        ),
        ("prior: {alpha: 1.5}\ninference: {kl: analytic}", "prior.alpha: got 1.5, expected a"),
        ("prior: {alpha: 0}", "prior.alpha: got 0.0, expected a value greater than 0"),
        (
            "prior: {kind: hierarchical, alpha: 0.1}\ninference: {kl: analytic}",
            "prior.alpha: got 0.1, but the collapsed mean applies to a fixed prior or "
            "prior.hyperprior collapsed (got halfnormal)",
        ),
        (
            "inference: {kl: analytic, method: map}",
            "inference.kl: analytic is an ELBO's estimator; a MAP fit has no KL",
        ),
        ("prior: {hyper_shape: -1}", "prior.hyper_shape: got -1.0, expected a value greater"),
        (
            "inference: {gradient: flipout}",
            "inference.gradient: got 'flipout', expected one of shared, local",
        ),
        ("inference: {gradient: local}", "inference.gradient: local needs inference.kl: analytic"),
        (
            "prior: {kind: hierarchical}\ninference: {gradient: local, kl: analytic}",
            "inference.gradient: local needs each tensor to be one Normal: prior.kind fixed or "
            "prior.hyperprior collapsed (got halfnormal)",
        ),
    ],
)
def test_the_bound_and_its_estimator_are_checked(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text + "\n")


def test_the_collapsed_bound_loads_with_the_analytic_kl(tmp_path):
    text = (
        "prior: {kind: hierarchical, hyperprior: collapsed, alpha: 0.025, hyper_shape: 2}\n"
        "inference: {kl: analytic}\n"
    )
    config = load_config(write(tmp_path, text))
    assert (config.prior.hyperprior, config.prior.alpha, config.inference.kl) == (
        "collapsed",
        0.025,
        "analytic",
    )
