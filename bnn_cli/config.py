"""The experiment configuration: a typed, frozen schema with every default and the reason for it.

`load_config(path, overrides)` reads YAML with `yaml.safe_load` only, applies `--set key=value`
overrides, and validates. Every problem raises `ConfigError` with the dotted key, the value
received and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
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
    kind: str = "fixed"  # fixed Normal(0, sd) or hierarchical (learned scales, see scale_per)
    sd: float | str = 1.0  # fixed: the original experiment's N(0, 1), or fan_in: gain/sqrt(fan_in)
    gain: float = 1.0  # with fan_in: sd = gain / sqrt(fan_in) (1: LeCun's size, 1.41: He's)
    hyper_sd: float | str = 1.0  # hierarchical: HalfNormal(hyper_sd) on each scale (or fan_in)
    scale_per: str = "tensor"  # hierarchical: one scale per tensor, input unit or output unit
    # hierarchical: the scales' prior, HalfNormal(hyper_sd), or HalfCauchy(hyper_sd): a heavy
    # tail (horseshoe-like) that lets a few scales stay large while most shrink; or empirical:
    # no hyperprior, the scales fitted as point estimates (empirical Bayes, type-II maximum
    # likelihood: the ELBO maximized over them while the weights keep their posterior); or
    # collapsed: one prior variance per scale_per group with an inverse-gamma hyperprior (its
    # shape hyper_shape, centred on hyper_sd^2) integrated out of the bound in closed form
    # (Tomczak et al. 2021), with the mean's hyperprior of `alpha`; needs inference.kl analytic.
    hyperprior: str = "halfnormal"
    # The collapsed bound's weight on each mean's square in the KL: a Normal hyperprior on every
    # weight's prior mean, N(0, v (1 - alpha) / alpha), integrated out. 1 is the plain Gaussian
    # prior; smaller lets the means roam while the prior variance v still bounds the scales.
    # For a fixed prior or hyperprior collapsed, with inference.kl analytic.
    alpha: float = 1.0
    hyper_shape: float = 1.0  # collapsed: the inverse-gamma's shape (its weight: 2x images)


@dataclass(frozen=True)
class InferenceConfig:
    # advi: mean-field ADVI; map: the point estimate (maximum a posteriori) of the same model,
    # fitted with the same minibatches, optimizer and schedule: the Bayesian fit's plain twin.
    method: str = "advi"
    iterations: int = 50_000  # the original experiment's budget
    batch_size: int = 500  # the original experiment's minibatch
    optimizer: str = "adam"  # adam, adamax or sgd
    learning_rate: float = 0.001  # Adam's usual step; larger diverges on the 800x800 MLP
    lr_schedule: str = "cosine"  # or constant; cosine decays to 0 by the last iteration
    start_sigma: float = 0.001  # PyMC's default initial scale (~0.7) makes the ELBO NaN at once
    # Adam moves each parameter by about one step size per iteration, so the scales (rho) take
    # thousands of steps to grow from start_sigma; a larger factor lets them reach the posterior's
    # scale without making the means' steps noisier.
    rho_lr_scale: float = 1.0  # step size of the rho parameters / learning_rate
    eval_every: int = 1000  # validation accuracy (posterior mean weights) this often
    backend: str = "jax"  # PyTensor backend: jax (XLA fuses the element-wise work), c or numba
    floatX: str = "float32"  # half the memory traffic of float64, same accuracy
    steps_per_call: int = 0  # optimizer steps per compiled call; 0: the backend's default
    # The ELBO's KL term times kl_weight (1: the plain ELBO; below 1 a tempered, "cold"
    # posterior), ramped up linearly from 0 over the first kl_warmup iterations (0: no ramp).
    # A MAP fit weights its prior (its weight penalty) the same way.
    kl_weight: float = 1.0
    kl_warmup: int = 0
    # How the KL term is estimated: sampled, PyMC's Monte Carlo estimate at the step's weight
    # draw; or analytic, the closed form for the Gaussian priors (the rest still sampled), which
    # takes the KL's noise out of every gradient and allows the collapsed bound (prior.alpha,
    # prior.hyperprior collapsed).
    kl: str = "sampled"
    # The likelihood's noise: shared, one weight draw for the whole minibatch (PyMC's); or
    # local, each image's pre-activations drawn from their exact Gaussian marginal (the local
    # reparameterization trick): less gradient noise at about twice the arithmetic per layer.
    # For priors whose tensors are each one Normal (fixed, or hyperprior collapsed).
    gradient: str = "shared"
    # Stop when the validation metric (val_nll or val_accuracy, checked every eval_every) has
    # not improved for `patience` checks, once min_iterations are done; the best point is kept.
    early_stopping: str = "none"
    patience: int = 3
    min_iterations: int = 0
    # N >= 2: an ensemble of N fits of this config with seeds seed, seed + 1, ..., each a run
    # of its own, evaluated as the equal mixture of their predictives (None: one fit).
    ensemble: int | None = None


@dataclass(frozen=True)
class EvaluateConfig:
    draws: int = 100  # posterior draws for the predictive distribution
    chunk_size: int = 1000  # images per predictive chunk: bounds memory
    val_draws: int = 10  # draws for the validation NLL / mutual information during training
    ood: tuple[str, ...] = ()  # out-of-distribution sets, e.g. [fashion-mnist]; needs the files
    shift: tuple[str, ...] = ()  # dataset shifts, e.g. [rotate]: the test images rotated


@dataclass(frozen=True)
class Config:
    name: str = "bnn"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def draws(self, requested: int | None = None, validation: bool = False) -> int:
        """Posterior draws for a predictive: `requested`, else evaluate.draws (val_draws during
        training); a MAP fit's predictive is its one network, drawn once."""
        if self.inference.method == "map":
            return 1
        return requested or (self.evaluate.val_draws if validation else self.evaluate.draws)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), ready for YAML or JSON."""
        return _plain(dataclasses.asdict(self))


# Allowed values and ranges, by dotted key. Ranges are (low, high, low_inclusive).
DATASET_NAMES = ("mnist", "fashion-mnist")  # each has its spec in data/datasets.py (DATASETS)
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": DATASET_NAMES,
    "model.architecture": ("mlp", "conv"),
    "model.activation": ("relu", "tanh"),
    "prior.kind": ("fixed", "hierarchical"),
    "prior.scale_per": ("tensor", "input", "output"),
    "prior.hyperprior": ("halfnormal", "halfcauchy", "empirical", "collapsed"),
    "inference.method": ("advi", "map"),
    "inference.kl": ("sampled", "analytic"),
    "inference.gradient": ("shared", "local"),
    "inference.early_stopping": ("none", "val_nll", "val_accuracy"),
    "inference.optimizer": ("adam", "adamax", "sgd"),
    "inference.lr_schedule": ("cosine", "constant"),
    "inference.backend": ("c", "numba", "jax"),
    "inference.floatX": ("float32", "float64"),
    "evaluate.ood": DATASET_NAMES,
    "evaluate.shift": ("rotate",),
}
POSITIVE = {
    "data.train_size",
    "data.val_size",
    "model.hidden",
    "model.filters",
    "model.kernel_size",
    "model.pool_size",
    "prior.sd",
    "prior.gain",
    "prior.hyper_sd",
    "prior.alpha",
    "prior.hyper_shape",
    "inference.kl_weight",
    "inference.patience",
    "inference.iterations",
    "inference.batch_size",
    "inference.learning_rate",
    "inference.start_sigma",
    "inference.eval_every",
    "evaluate.draws",
    "evaluate.chunk_size",
    "evaluate.val_draws",
    "inference.rho_lr_scale",
}
NON_NEGATIVE = {
    "seed",
    "inference.steps_per_call",
    "inference.kl_warmup",
    "inference.min_iterations",
}
FAN_IN = "fan_in"  # a prior sd sized to each tensor: gain / sqrt(fan_in)
MAX_SEED = 2**32 - 1  # PyMC and NumPy's legacy seeding refuse anything larger
MAX_INT = 2**63 - 1  # every integer ends up in a NumPy int64 (sizes, counts)
MIN_MEMBERS = 2  # an "ensemble" of one fit is a plain run: say so rather than run it
MAX_NAME = 100  # the name is part of the run directory's name (at most 255 bytes)
# YAML 1.1 (PyYAML) reads `1e-3` and `1e6` as strings: it wants a dot and a signed exponent.
# Numbers in that everyday form are accepted for float keys.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


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
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc.strerror or exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise ConfigError(f"config file '{path}' is nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a date like 2024-02-30, 5000 digits
        raise ConfigError(
            f"config file '{path}' holds a value YAML cannot read: {_first_line(exc)}"
        ) from None
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
    if (
        not sep
        or not key
        or any(not part for part in key.split("."))
        or not key.isprintable()
        or any(ch.isspace() for ch in key)
    ):
        raise ConfigError(f"--set expects dotted.key=value, got {_show(item)}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError):
        raise ConfigError(f"--set {key}: cannot parse value {_show(text)}") from None
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
        values[name] = _coerce(prefix + name, value, _TYPES[str(known[name].type)])
    return cls(**values)


# `from __future__ import annotations` leaves types as strings; map the few we use.
_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "int | None": "members",  # an ensemble's size, or None for one fit
    "float": float,
    "float | str": "sd",  # a number, or the word fan_in
    "tuple[int, ...]": tuple[int, ...],
    "tuple[str, ...]": tuple[str, ...],
    "DataConfig": DataConfig,
    "ModelConfig": ModelConfig,
    "PriorConfig": PriorConfig,
    "InferenceConfig": InferenceConfig,
    "EvaluateConfig": EvaluateConfig,
}


def _coerce(key: str, value: Any, typ: Any) -> Any:
    if isinstance(typ, type) and dataclasses.is_dataclass(typ):
        return _build(typ, value, key + ".")
    if typ == "sd":
        if value == FAN_IN:
            return value
        if isinstance(value, str) and not _FLOAT_TEXT.fullmatch(value.strip()):
            raise ConfigError(
                f"{key}: got {_show(value)}, expected a number greater than 0 or {FAN_IN} "
                "(gain / sqrt(fan_in), see prior.gain)"
            )
        typ = float
    if typ == "members":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < MIN_MEMBERS:
            raise ConfigError(
                f"{key}: got {_show(value)}, expected an integer of {MIN_MEMBERS} or more "
                "members (leave it out for a single fit)"
            )
        typ = int
    if get_origin(typ) is tuple:
        item_type = get_args(typ)[0]
        if item_type is str:  # a list of names; empty is fine (e.g. no OOD sets)
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{key}: expected a list of names, got {_show(value)}")
            return tuple(_coerce(key, v, item_type) for v in value)
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{key}: expected a non-empty list of integers, got {_show(value)}")
        return tuple(_coerce(key, v, item_type) for v in value)
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
    if typ is int and value > MAX_INT:
        raise ConfigError(f"{key}: got {_show(value)}, expected at most {MAX_INT}")
    if typ is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {_show(value)}")
        value = number
    if typ is str and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {_show(value)}")
    _check_value(key, value)
    return value


def _check_value(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}: got {_show(value)}, expected one of {', '.join(CHOICES[key])}")
    if key in POSITIVE and not value > 0:
        raise ConfigError(f"{key}: got {_show(value)}, expected a value greater than 0")
    if key in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}: got {_show(value)}, expected a value of 0 or more")
    if key == "seed" and value > MAX_SEED:
        raise ConfigError(f"seed: got {_show(value)}, expected a value from 0 to {MAX_SEED}")
    if key == "name" and (
        not value
        or len(value) > MAX_NAME
        or "/" in value
        or value.startswith(".")
        or not value.isprintable()
    ):
        raise ConfigError(
            f"name: got {_show(value)}, expected a non-empty name without '/' (at most "
            f"{MAX_NAME} printable characters, not starting with '.')"
        )


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
    if data.dataset in config.evaluate.ood:
        raise ConfigError(
            f"evaluate.ood: '{data.dataset}' is the training set (data.dataset), not "
            "out-of-distribution data; list other datasets"
        )
    inference = config.inference
    _check_bound(config.prior, inference)
    if inference.steps_per_call > 1 and inference.backend != "jax":
        raise ConfigError(
            f"inference.steps_per_call: got {inference.steps_per_call}, but several steps per "
            f"call need inference.backend jax (got {inference.backend}); use 0 or 1"
        )
    if inference.kl_warmup > inference.iterations:
        raise ConfigError(
            f"inference.kl_warmup: got {inference.kl_warmup}, expected at most "
            f"inference.iterations ({inference.iterations})"
        )
    # Without early stopping min_iterations means nothing: a config cut short still runs.
    if inference.early_stopping != "none" and inference.min_iterations > inference.iterations:
        raise ConfigError(
            f"inference.min_iterations: got {inference.min_iterations}, expected at most "
            f"inference.iterations ({inference.iterations}); lower it, or set "
            "inference.early_stopping=none"
        )
    if inference.ensemble and config.seed + inference.ensemble - 1 > MAX_SEED:
        raise ConfigError(
            f"inference.ensemble: the members' seeds run from seed ({config.seed}) to "
            f"{config.seed + inference.ensemble - 1}, past {MAX_SEED}; choose a smaller seed"
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


def _check_bound(prior: PriorConfig, inference: InferenceConfig) -> None:
    """The collapsed bound's keys only where they mean something: alpha for a fixed prior or a
    collapsed hyperprior, both on the analytic KL of an ADVI fit."""
    collapsed = prior.kind == "hierarchical" and prior.hyperprior == "collapsed"
    if prior.kind == "fixed" and prior.hyperprior == "collapsed":
        raise ConfigError(
            "prior.hyperprior: collapsed applies to prior.kind hierarchical (a fixed prior "
            "takes the collapsed mean alone: prior.alpha)"
        )
    if prior.alpha > 1:
        raise ConfigError(f"prior.alpha: got {_show(prior.alpha)}, expected a number in (0, 1]")
    if prior.alpha != 1 and prior.kind == "hierarchical" and not collapsed:
        raise ConfigError(
            f"prior.alpha: got {_show(prior.alpha)}, but the collapsed mean applies to a fixed "
            f"prior or prior.hyperprior collapsed (got {prior.hyperprior}); use 1"
        )
    wants = "prior.hyperprior: collapsed" if collapsed else "prior.alpha below 1"
    if (collapsed or prior.alpha != 1) and inference.method == "map":
        raise ConfigError(f"{wants} is a bound on the ELBO; a MAP fit (inference.method) has none")
    if (collapsed or prior.alpha != 1) and inference.kl != "analytic":
        raise ConfigError(
            f"{wants} needs inference.kl: analytic (got {inference.kl}); set inference.kl=analytic"
        )
    if inference.kl == "analytic" and inference.method == "map":
        raise ConfigError("inference.kl: analytic is an ELBO's estimator; a MAP fit has no KL")
    if inference.gradient == "local":
        if inference.kl != "analytic":
            raise ConfigError(
                "inference.gradient: local needs inference.kl: analytic (the sampled KL is "
                "taken at the shared weight draw); set inference.kl=analytic"
            )
        if prior.kind == "hierarchical" and not collapsed:
            raise ConfigError(
                "inference.gradient: local needs each tensor to be one Normal: prior.kind "
                f"fixed or prior.hyperprior collapsed (got {prior.hyperprior})"
            )


def _unknown_key_message(prefix: str, key: Any, known: list[str]) -> str:
    text = key if isinstance(key, str) else _show(key)
    where = _show(f"{prefix}{text}")
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {where} — did you mean '{prefix}{close[0]}'?"
    section = f" in '{prefix.rstrip('.')}'" if prefix else ""
    return f"unknown key {where}; valid keys{section}: {', '.join(known)}"


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {_show(value)}"


def _first_line(exc: BaseException, limit: int = 120) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any, limit: int = 60) -> str:
    """`repr(value)` for a one-line message: shortened when long, and safe for integers too
    big for `repr` (Python refuses to print more than 4300 digits)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
