"""The tune file: a `base` config, `set` overrides, a search `space` of dotted keys with their
distributions, the validation `objective` and its direction, the number of `trials`, and the
seeded `sampler` and `pruner`. Everything is validated here, before anything runs (a
ConfigError, exit 2): every key of the space is tried in a config at its bounds (or each of its
choices), so an unknown key gets the config's own "did you mean" and a bound outside what the
key allows is named."""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnn_cli.config import Config, config_from_dict
from bnn_cli.errors import ConfigError
from bnn_cli.sweep.spec import _overrides, _read_mapping, _safe, _set_dotted

TUNE_KEYS = (
    "name",
    "base",
    "set",
    "space",
    "objective",
    "direction",
    "trials",
    "sampler",
    "pruner",
    "enqueue",
)
# The figures every fit reports at each validation (elbo.csv), and the direction that is better.
OBJECTIVES = {"val_nll": "minimize", "val_accuracy": "maximize", "val_mi": "minimize"}
DIRECTIONS = ("minimize", "maximize")
KINDS = ("float", "int", "categorical")
PARAM_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
SAMPLERS = ("tpe", "random")
SAMPLER_KEYS = ("kind", "seed", "startup_trials")
PRUNERS = ("median", "successive_halving", "none")
PRUNER_KEYS = ("kind", "startup_trials", "warmup_steps", "min_resource", "reduction_factor")


@dataclass(frozen=True)
class Param:
    """One dimension of the space: Optuna's `suggest_float` / `suggest_int` / `suggest_categorical`
    arguments for the dotted config key `key`."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {', '.join(map(str, self.choices))}"
        scale = "log " if self.log else ""
        step = f" step {self.step}" if self.step is not None else ""
        return f"{scale}{self.kind} in [{self.low}, {self.high}]{step}"


@dataclass(frozen=True)
class Sampler:
    kind: str = "tpe"  # Optuna's default: a model of the good and bad trials
    seed: int = 0
    startup_trials: int = 5  # random trials before TPE models the space (Optuna: 10)


@dataclass(frozen=True)
class Pruner:
    kind: str = "median"
    startup_trials: int = 4  # trials that always run to the end: the median needs a few
    warmup_steps: int = 0  # iterations before a trial may be pruned
    min_resource: int | str = "auto"  # successive halving: first rung, in iterations
    reduction_factor: int = 3  # successive halving: keeps the best 1/3 at each rung


@dataclass(frozen=True)
class TuneSpec:
    name: str
    path: Path
    base: Path
    overrides: dict[str, Any]  # `set:`: the same for every trial
    space: tuple[Param, ...]
    objective: str  # its name in tables and messages: a figure, or the combination spelled out
    direction: str
    trials: int
    sampler: Sampler
    pruner: Pruner
    base_raw: dict[str, Any]
    # Values tried first, before the sampler's (e.g. the hand-chosen settings, so the study
    # starts from them): each a mapping of the space's keys.
    enqueue: tuple[dict[str, Any], ...] = ()
    weights: dict[str, float] = field(default_factory=dict)  # figure -> weight in the objective

    def config_for(self, params: dict[str, Any], name: str) -> Config:
        """The trial's config: the base, `set:`, then the trial's values; named `name`."""
        raw = copy.deepcopy(self.base_raw)
        for dotted, value in (*self.overrides.items(), *params.items()):
            _set_dotted(raw, dotted, copy.deepcopy(value))
        raw["name"] = name
        return config_from_dict(raw)


def load_tune(path: Path) -> TuneSpec:
    """Read and validate a tune file; raises ConfigError (exit 2) naming what is wrong."""
    path = Path(path)
    where = f"tune file '{path}'"
    raw = _read_mapping(path, "tune file")
    _known(raw, TUNE_KEYS, where)
    if not isinstance(raw.get("base"), str) or not raw["base"].strip():
        raise ConfigError(f"{where}: 'base' must name a config file, e.g. base: ../smoke.yaml")
    base = (path.parent / raw["base"]).resolve()
    base_raw = _read_mapping(base, "base config")
    overrides = _overrides(raw.get("set", {}), f"{where}: set")
    space = _space(raw.get("space"), where)
    for param in space:
        if param.key in overrides:
            raise ConfigError(f"{where}: '{param.key}' is both in 'set' and the space; keep one")
    weights = _objective(raw.get("objective", "val_nll"), where)
    objective = objective_label(weights)
    if len(weights) > 1 and "direction" not in raw:
        raise ConfigError(f"{where}: a combined objective needs 'direction' (minimize or maximize)")
    direction = raw.get("direction", OBJECTIVES[next(iter(weights))])
    if direction not in DIRECTIONS:
        raise ConfigError(f"{where}: direction: {_choice_hint(direction, DIRECTIONS)}")
    trials = raw.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"{where}: trials: got {trials!r}, expected an integer of 1 or more")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _safe(name):
        raise ConfigError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    spec = TuneSpec(
        name=_safe(name),
        path=path,
        base=base,
        overrides=overrides,
        space=space,
        objective=objective,
        weights=weights,
        direction=direction,
        trials=trials,
        sampler=_section(raw.get("sampler"), Sampler, SAMPLER_KEYS, SAMPLERS, f"{where}: sampler"),
        pruner=_section(raw.get("pruner"), Pruner, PRUNER_KEYS, PRUNERS, f"{where}: pruner"),
        base_raw=base_raw,
        enqueue=_enqueue(raw.get("enqueue"), space, where),
    )
    _check_configs(spec, where)
    return spec


def _objective(raw: Any, where: str) -> dict[str, float]:
    """A figure the fit reports at each validation, or a weighted sum of them, e.g.
    {val_nll: 1, val_mi: -0.5}: {figure: weight}."""
    if isinstance(raw, str):
        raw = {raw: 1.0}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{where}: objective: got {raw!r}, expected one of {', '.join(OBJECTIVES)}, or a "
            "mapping of them to weights"
        )
    weights = {}
    for name, weight in raw.items():
        if name not in OBJECTIVES:
            raise ConfigError(f"{where}: objective: {_choice_hint(name, OBJECTIVES)}")
        weights[name] = _number(weight, float, f"{where}: objective: {name}'s weight")
    return weights


def objective_label(weights: dict[str, float]) -> str:
    """`val_nll`, or a combination as `val_nll - 0.5 val_mi`."""
    if list(weights.values()) == [1.0]:
        return next(iter(weights))
    terms = []
    for i, (name, weight) in enumerate(weights.items()):
        sign = "-" if weight < 0 else "+"
        size = "" if abs(weight) == 1 else f"{abs(weight):g} "
        terms.append(("-" if sign == "-" else "") if i == 0 else f" {sign} ")
        terms.append(f"{size}{name}")
    return "".join(terms)


def objective_of(row: dict[str, Any], weights: dict[str, float]) -> float | None:
    """The objective from one validation's figures (an elbo.csv row); None when a figure is
    missing or not finite (no validation at that row)."""
    total = 0.0
    for name, weight in weights.items():
        value = row.get(name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None
        total += weight * float(value)
    return total


def _known(raw: dict, keys: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in keys:
            raise ConfigError(f"{where}: unknown key '{key}'{_did_you_mean(str(key), keys)}")


def _did_you_mean(text: str, valid: Any) -> str:
    close = difflib.get_close_matches(text, list(valid), n=1)
    return f" — did you mean '{close[0]}'?" if close else f"; valid: {', '.join(valid)}"


def _choice_hint(value: Any, valid: Any) -> str:
    close = difflib.get_close_matches(str(value), list(valid), n=1)
    hint = f" — did you mean '{close[0]}'?" if close else ""
    return f"got {value!r}, expected one of {', '.join(valid)}{hint}"


def _space(raw: Any, where: str) -> tuple[Param, ...]:
    if raw is None or raw == {}:
        raise ConfigError(
            f"{where}: the space is empty: give 'space:' a dotted config key and its "
            "distribution, e.g. inference.learning_rate: {type: float, low: 1e-4, high: 1e-2, "
            "log: true}"
        )
    space = _overrides(raw, f"{where}: space")
    return tuple(_param(key, value, f"{where}: space '{key}'") for key, value in space.items())


def _param(key: str, raw: Any, where: str) -> Param:
    if not isinstance(raw, dict) or "type" not in raw:
        raise ConfigError(
            f"{where}: expected a mapping with 'type' ({', '.join(KINDS)}), got {raw!r}"
        )
    kind = raw["type"]
    if kind not in KINDS:
        raise ConfigError(f"{where}: type: {_choice_hint(kind, KINDS)}")
    _known(raw, PARAM_KEYS[kind], where)
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' must be a non-empty list, got {choices!r}")
        return Param(key, kind, choices=tuple(choices))
    number = float if kind == "float" else int
    low, high = (_number(raw.get(b), number, f"{where}: {b}") for b in ("low", "high"))
    if low > high:
        raise ConfigError(f"{where}: low ({low}) is above high ({high})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log: expected true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(
            f"{where}: a log distribution needs low > 0, got low {low} (use log: false, or a "
            "positive low bound)"
        )
    step = raw.get("step")
    if step is not None:
        step = _number(step, number, f"{where}: step")
        if step <= 0:
            raise ConfigError(f"{where}: step: got {step}, expected a value greater than 0")
        if log:
            raise ConfigError(f"{where}: 'step' and 'log: true' cannot be combined (Optuna)")
    return Param(key, kind, low, high, log, step)


def _enqueue(raw: Any, space: tuple[Param, ...], where: str) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'enqueue' must be a list of mappings, got {raw!r}")
    keys = [p.key for p in space]
    for i, item in enumerate(raw):
        at = f"{where}: enqueue[{i}]"
        if not isinstance(item, dict) or not item:
            raise ConfigError(f"{at}: expected a mapping of the space's keys, got {item!r}")
        for key in item:
            if key not in keys:
                raise ConfigError(f"{at}: '{key}' is not in the space{_did_you_mean(key, keys)}")
    return tuple(dict(item) for item in raw)


def _number(value: Any, number: type, where: str) -> float | int:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if number is int and value != int(value):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return number(value)


def _section(raw: Any, cls: type, keys: tuple[str, ...], kinds: tuple[str, ...], where: str) -> Any:
    if raw is None:
        return cls()
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (e.g. {{kind: {kinds[0]}}}), got {raw!r}")
    _known(raw, keys, where)
    if "kind" in raw and raw["kind"] not in kinds:
        raise ConfigError(f"{where}: kind: {_choice_hint(raw['kind'], kinds)}")
    for key, value in raw.items():
        if key == "kind" or (key == "min_resource" and value == "auto"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: {key}: got {value!r}, expected an integer of 0 or more")
    return cls(**raw)


def _check_configs(spec: TuneSpec, where: str) -> None:
    """Every trial's config must be valid: try the base with `set:`, then each parameter at
    its bounds (or each choice) with the others at their low end."""
    corners: list[dict[str, Any]] = [{}, *spec.enqueue]
    for param in spec.space:
        values = param.choices if param.kind == "categorical" else (param.low, param.high)
        corners += [{param.key: value} for value in values]
    for corner in corners:
        try:
            spec.config_for(corner, spec.name)
        except ConfigError as exc:
            at = ", ".join(f"{k}={v!r}" for k, v in corner.items()) or "the base with 'set'"
            raise ConfigError(f"{where}: {exc} (at {at})") from None
