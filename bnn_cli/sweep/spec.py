"""The sweep file: a base config, a `grid` (every combination of the listed values) and/or
explicit `points`, and `set` overrides for every point. Every point's config is validated here,
before anything runs (a ConfigError, exit 2)."""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bnn_cli.config import Config, config_from_dict
from bnn_cli.errors import ConfigError

SWEEP_KEYS = ("base", "grid", "points", "set", "name")


SPREAD_KEYS = ("seed",)  # swept keys averaged over in the summary, not grouped by


LABEL_MAX = 60  # characters of a point's label in its run directory's name


@dataclass(frozen=True)
class Point:
    key: str  # canonical JSON of the overrides: the point's identity across re-runs
    label: str  # short and file-name safe, e.g. `prior.kind=fixed-seed=0`
    overrides: dict[str, Any]
    config: Config


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    base: Path
    swept_keys: tuple[str, ...]
    points: tuple[Point, ...]
    kind: str = "sweep"  # or "ensemble" (its members are the points): the messages say which
    evaluate: bool = True  # each point's `bnn train` evaluates its run (an ensemble's: no)


def load_sweep(path: Path) -> Sweep:
    """Read and validate a sweep file and every point's config; raises ConfigError (exit 2)."""
    path = Path(path)
    where = f"sweep file '{path}'"
    raw = _read_mapping(path, "sweep file")
    for key in raw:
        if key not in SWEEP_KEYS:
            close = difflib.get_close_matches(str(key), SWEEP_KEYS, n=1)
            hint = (
                f" — did you mean '{close[0]}'?" if close else f"; valid: {', '.join(SWEEP_KEYS)}"
            )
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
    if not isinstance(raw.get("base"), str) or not raw["base"].strip():
        raise ConfigError(f"{where}: 'base' must name a config file, e.g. base: smoke.yaml")
    base = (path.parent / raw["base"]).resolve()
    base_raw = _read_mapping(base, "base config")
    common = _overrides(raw.get("set", {}), f"{where}: set")
    combos = _grid(raw.get("grid"), where) + _explicit(raw.get("points"), where)
    if not combos:
        raise ConfigError(
            f"{where} has no points: give 'grid:' (every combination) and/or 'points:' "
            "(a list of override mappings)"
        )
    swept = tuple(dict.fromkeys(k for combo in combos for k in combo))
    for key in swept:
        if key in common:
            raise ConfigError(f"{where}: '{key}' is both in 'set' and swept; keep it in one")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _safe(name):
        raise ConfigError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    points = _build_points(base_raw, common, combos, where)
    return Sweep(_safe(name), path, base, swept, tuple(points))


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} '{path}' is not valid YAML{line}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping, got {type(raw).__name__}")
    return raw


def _overrides(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of dotted keys to values, got {raw!r}")
    for key in raw:
        if not isinstance(key, str) or not all(key.split(".")):
            raise ConfigError(f"{where}: '{key}' is not a dotted config key like prior.kind")
    return dict(raw)


def _grid(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    grid = _overrides(raw, f"{where}: grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where}: grid '{key}' must be a non-empty list of values, got {values!r} "
                "(use 'set:' for a single value)"
            )
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def _explicit(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'points' must be a list of override mappings, got {raw!r}")
    return [_overrides(item, f"{where}: points[{i}]") for i, item in enumerate(raw)]


def _build_points(base_raw: dict, common: dict, combos: list[dict], where: str) -> list[Point]:
    keys = [json.dumps(c, sort_keys=True, default=str) for c in combos]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise ConfigError(
                f"{where}: point {i + 1} ({describe(combos[i])}) repeats point "
                f"{keys.index(key) + 1}"
            )
    labels = _labels(combos, keys)
    points = []
    for i, (combo, key, label) in enumerate(zip(combos, keys, labels, strict=True)):
        raw = copy.deepcopy(base_raw)
        try:
            for dotted, value in (*common.items(), *combo.items()):
                _set_dotted(raw, dotted, copy.deepcopy(value))
            config = config_from_dict(raw)
            config = config_from_dict({**config.to_dict(), "name": f"{config.name}-{label}"})
        except ConfigError as exc:
            raise ConfigError(
                f"{where}: point {i + 1} of {len(combos)} ({describe(combo)}): {exc}"
            ) from None
        points.append(Point(key, label, combo, config))
    return points


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{dotted}': '{'.'.join(parts[: i + 1])}' is not a section")
    node[parts[-1]] = value


def _labels(combos: list[dict], keys: list[str]) -> list[str]:
    labels = []
    for combo, key in zip(combos, keys, strict=True):
        label = _safe("-".join(f"{k}={short(v)}" for k, v in combo.items())) or "base"
        if len(label) > LABEL_MAX:
            label = label[: LABEL_MAX - 9] + "-" + _digest(key)
        labels.append(label)
    counts = {label: labels.count(label) for label in labels}
    for i, label in enumerate(labels):  # sanitising may have merged two points: tell them apart
        if counts[label] > 1:
            labels[i] = f"{label}-{_digest(keys[i])}"
    return labels


def short(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "x".join(short(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("._") if text else ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in overrides.items()) or "base"


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
