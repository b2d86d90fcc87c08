"""The experiment configuration: a typed, frozen schema with every default and the reason for it.

`load_config(path, overrides)` reads YAML with `yaml.safe_load` only, applies `--set key=value`
overrides, and validates. Every problem raises `ConfigError` with the dotted key, the value
received and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from bnn_cli.errors import ConfigError

MNIST_TRAIN_IMAGES = 60_000  # both mnist and fashion-mnist ship 60k training images


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"  # or fashion-mnist: the same format, a harder task
    train_size: int = 50_000  # the original experiment's split: first 50k train...
    val_size: int = 10_000  # ...last 10k of the training file for validation


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "mlp"  # mlp or conv
    hidden: tuple[int, ...] = (800, 800)  # dense layers (after the conv blocks for conv)
    activation: str = "relu"  # relu or tanh
    filters: tuple[int, ...] = (32, 32)  # conv only: one conv+pool block per entry (Lasagne net)
    kernel_size: int = 5  # conv only: square kernels, 'valid' padding
    pool_size: int = 2  # conv only: non-overlapping max-pooling


@dataclass(frozen=True)
class PriorConfig:
    kind: str = "fixed"  # fixed Normal(0, sd) or hierarchical (a learned scale per tensor)
    sd: float = 1.0  # fixed: the original experiment's N(0, 1)
    hyper_sd: float = 1.0  # hierarchical: HalfNormal(hyper_sd) on each tensor's scale


@dataclass(frozen=True)
class InferenceConfig:
    iterations: int = 50_000  # the original experiment's budget
    batch_size: int = 500  # the original experiment's minibatch
    optimizer: str = "adam"  # adam, adamax or sgd
    learning_rate: float = 0.001  # Adam's usual step; larger diverges on the 800x800 MLP
    start_sigma: float = 0.001  # PyMC's default initial scale (~0.7) makes the ELBO NaN at once
    eval_every: int = 1000  # validation accuracy (posterior mean weights) this often
    backend: str = "c"  # PyTensor backend for the step function: c, numba or jax
    floatX: str = "float32"  # half the memory traffic of float64, same accuracy


@dataclass(frozen=True)
class EvaluateConfig:
    draws: int = 100  # posterior draws for the predictive distribution
    chunk_size: int = 1000  # images per predictive chunk: bounds memory


@dataclass(frozen=True)
class Config:
    name: str = "bnn"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), ready for YAML or JSON."""
        return _plain(dataclasses.asdict(self))


# Allowed values and ranges, by dotted key. Ranges are (low, high, low_inclusive).
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("mnist", "fashion-mnist"),
    "model.architecture": ("mlp", "conv"),
    "model.activation": ("relu", "tanh"),
    "prior.kind": ("fixed", "hierarchical"),
    "inference.optimizer": ("adam", "adamax", "sgd"),
    "inference.backend": ("c", "numba", "jax"),
    "inference.floatX": ("float32", "float64"),
}
POSITIVE = {
    "data.train_size",
    "data.val_size",
    "model.hidden",
    "model.filters",
    "model.kernel_size",
    "model.pool_size",
    "prior.sd",
    "prior.hyper_sd",
    "inference.iterations",
    "inference.batch_size",
    "inference.learning_rate",
    "inference.start_sigma",
    "inference.eval_every",
    "evaluate.draws",
    "evaluate.chunk_size",
}
NON_NEGATIVE = {"seed"}


def load_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a configuration file."""
    raw = _read_yaml(Path(path))
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    return config_from_dict(raw)


def config_from_dict(raw: Any) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"the configuration must be a mapping of sections, got {_kind(raw)}")
    config = _build(Config, raw, prefix="")
    _check_cross_fields(config)
    return config


def config_yaml(config: Config) -> str:
    """The resolved configuration as YAML text (every default filled in)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"config file '{path}' not found (give the path to a YAML file, "
            "e.g. configs/smoke.yaml)"
        )
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file '{path}' is not valid YAML{line}: {problem}") from None
    if raw is None:
        raise ConfigError(f"config file '{path}' is empty (see configs/ for examples)")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections, got {_kind(raw)}")
    return raw


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects dotted.key=value, got '{item}'")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value '{text}'") from None
    return key, value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix.rstrip('.')}' must be a mapping, got {_kind(raw)}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if not isinstance(key, str) or key not in known:
            raise ConfigError(_unknown_key_message(prefix, key, list(known)))
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(prefix + name, value, _TYPES[known[name].type])
    return cls(**values)


# `from __future__ import annotations` leaves types as strings; map the few we use.
_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "tuple[int, ...]": tuple[int, ...],
    "DataConfig": DataConfig,
    "ModelConfig": ModelConfig,
    "PriorConfig": PriorConfig,
    "InferenceConfig": InferenceConfig,
    "EvaluateConfig": EvaluateConfig,
}


def _coerce(key: str, value: Any, typ: Any) -> Any:
    if dataclasses.is_dataclass(typ):
        return _build(typ, value, key + ".")
    if get_origin(typ) is tuple:
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{key}: expected a non-empty list of integers, got {value!r}")
        item_type = get_args(typ)[0]
        return tuple(_coerce(key, v, item_type) for v in value)
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if typ is str and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    _check_value(key, value)
    return value


def _check_value(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}: got {value!r}, expected one of {', '.join(CHOICES[key])}")
    if key in POSITIVE and not value > 0:
        raise ConfigError(f"{key}: got {value!r}, expected a value greater than 0")
    if key in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}: got {value!r}, expected a value of 0 or more")
    if key == "name" and (not value or "/" in value or value.startswith(".")):
        raise ConfigError(f"name: got {value!r}, expected a non-empty name without '/'")


def _check_cross_fields(config: Config) -> None:
    data = config.data
    if data.train_size + data.val_size > MNIST_TRAIN_IMAGES:
        raise ConfigError(
            f"data.train_size + data.val_size = {data.train_size + data.val_size} exceeds the "
            f"{MNIST_TRAIN_IMAGES} training images of {data.dataset}"
        )
    if config.inference.batch_size > data.train_size:
        raise ConfigError(
            f"inference.batch_size: got {config.inference.batch_size}, expected "
            f"at most data.train_size ({data.train_size})"
        )
    if config.model.architecture == "conv":
        side = 28
        for i, _ in enumerate(config.model.filters):
            side = (side - config.model.kernel_size + 1) // config.model.pool_size
            if side < 1:
                raise ConfigError(
                    f"model.filters: conv block {i + 1} leaves no pixels with kernel_size "
                    f"{config.model.kernel_size} and pool_size {config.model.pool_size}; "
                    "use fewer blocks or smaller kernels"
                )


def _unknown_key_message(prefix: str, key: Any, known: list[str]) -> str:
    where = f"'{prefix}{key}'"
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {where} — did you mean '{prefix}{close[0]}'?"
    section = f" in '{prefix.rstrip('.')}'" if prefix else ""
    return f"unknown key {where}; valid keys{section}: {', '.join(known)}"


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
