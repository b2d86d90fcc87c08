"""Property tests of the configuration loader: whatever mapping it is given, it returns a valid
`Config` or raises `ConfigError`, never anything else (no TypeError, OverflowError, ...)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnn_cli.config import (
    CHOICES,
    MAX_NAME,
    MAX_SEED,
    MNIST_TRAIN_IMAGES,
    NON_NEGATIVE,
    POSITIVE,
    Config,
    config_from_dict,
    config_yaml,
    load_config,
)
from bnn_cli.errors import ConfigError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Scalars as YAML can produce them, plus the awkward ones: huge integers (beyond float and
# beyond repr's 4300-digit limit), non-finite floats, text that looks like numbers.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=10**5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["1e-3", "1e6", "-2E+5", ".5e1", "nan", "inf", "0x10", "", "mlp", "relu"]),
)
keys = st.one_of(st.text(max_size=15), st.integers(), st.none(), st.booleans())
anything = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=20,
)


def _sections() -> dict[str, list[str]]:
    """The real keys, by section ('' for the top level)."""
    defaults = Config()
    out: dict[str, list[str]] = {"": []}
    for f in dataclasses.fields(Config):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = [g.name for g in dataclasses.fields(value)]
        else:
            out[""].append(f.name)
    return out


SECTIONS = _sections()


def values_for(key: str) -> st.SearchStrategy:
    """Values near the edges of what `key` accepts, and some of the wrong type."""
    good: list[st.SearchStrategy] = [scalars]
    if key in CHOICES:
        good.append(st.sampled_from(CHOICES[key]))
    if key in POSITIVE or key in NON_NEGATIVE:
        good += [
            st.integers(min_value=-3, max_value=MNIST_TRAIN_IMAGES + 3),
            st.floats(min_value=-1.0, max_value=1e3),
            st.lists(st.integers(min_value=-2, max_value=64), max_size=3),
        ]
    if key == "seed":
        good.append(st.integers(min_value=MAX_SEED - 2, max_value=MAX_SEED + 2))
    if key == "name":
        good.append(st.text(min_size=0, max_size=MAX_NAME + 5))
    return st.one_of(*good)


@st.composite
def real_key_mappings(draw) -> dict:
    """Mappings built from the real keys (and a few misspelt ones) with random values."""
    raw: dict = {}
    for section, names in SECTIONS.items():
        if section and not draw(st.booleans()):
            continue
        target = raw if not section else raw.setdefault(section, {})
        for name in draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True)):
            dotted = f"{section}.{name}" if section else name
            target[name] = draw(values_for(dotted))
        if draw(st.integers(0, 9)) == 0:
            target[draw(st.sampled_from(names)) + draw(st.sampled_from(["s", "_", "x"]))] = 1
    return raw


def check(raw) -> None:
    try:
        config = config_from_dict(raw)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert isinstance(config, Config)
    # A valid config is really valid: it survives its own YAML round trip unchanged.
    assert config_from_dict(yaml.safe_load(config_yaml(config))) == config
    inference = config.inference
    assert inference.iterations > 0 and inference.batch_size > 0
    assert 0 < inference.batch_size <= config.data.train_size
    assert config.data.train_size + config.data.val_size <= MNIST_TRAIN_IMAGES
    assert math.isfinite(inference.learning_rate) and inference.learning_rate > 0
    assert 0 <= config.seed <= MAX_SEED


@given(anything)
@SETTINGS
def test_arbitrary_nested_values_give_a_config_or_a_config_error(raw):
    check(raw)


@given(st.dictionaries(keys, anything, max_size=6))
@SETTINGS
def test_arbitrary_mappings_give_a_config_or_a_config_error(raw):
    check(raw)


@given(real_key_mappings())
@SETTINGS
def test_mappings_of_the_real_keys_give_a_config_or_a_config_error(raw):
    check(raw)


yaml_texts = st.one_of(
    st.text(max_size=200),
    st.builds(lambda n: "data: " + "[" * n + "]" * n, st.integers(0, 60)),
    st.builds(lambda n: "{a: " * n + "1" + "}" * n, st.integers(0, 60)),
    st.sampled_from(
        [
            "",
            "# only a comment\n",
            "- a\n- b\n",
            "name: !!python/object/apply:os.getcwd []\n",
            "!!python/name:os.system\n",
            "a: &x [1]\nb: *x\n",
            "inference: {learning_rate: 1e-3, iterations: 1e3}\n",
            "\ufeffname: bom\n",
            "name: 2024-02-30\n",
            "seed: !!int x\n",
            "seed: " + "1" * 5000 + "\n",
            "{[1]: 2}\n",
        ]
    ),
)


@given(yaml_texts, st.lists(st.text(max_size=30), max_size=3))
@SETTINGS
def test_any_file_text_and_overrides_give_a_config_or_a_config_error(text, overrides):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path, overrides)
        except ConfigError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert isinstance(config, Config)
