"""checkpoint.npz: everything a fit needs to go on from its last validation exactly as if it had
never stopped, bit for bit (`bnn train --resume RUN_DIR`).

What a fit carries from one step to the next, and where it lives:

- the compiled step's own state: every input the step function updates (PyMC's mean-field `mu`
  and `rho`, the optimizer's moments and step count, the mean-field noise generator). It sits in
  the function's input storage cells, found through `update_mapping`, so whatever PyMC's
  optimizer keeps is saved without naming it here. The JAX backend keeps the generator there as
  a dict of JAX arrays (NumPy's PCG64 state plus `jax_state`), the C backend as a NumPy
  `Generator`: the dict's leaves become arrays, the `Generator` its `bit_generator.state`;
- the minibatch order: the feeder's generator and the rest of the current epoch's order;
- the fit loop's record (`FitState`: losses, elbo.csv and diagnostics.csv rows, the last
  validation, the seconds spent so far), early stopping's best point and the convergence
  window's snapshot. The schedules are functions of the iteration: nothing to save.

The file is written only at validation points (`callbacks.Checkpoint`), between blocks, where
all of the above stand after the same iteration; never on Ctrl-C, which may land inside a K-step
call after the feeder has handed out that call's minibatches. Arrays are npz members; the rest
is one JSON text member, so the file loads without pickle. It records the hash of the resolved
configuration: a run whose config.yaml was changed since is refused, not silently continued.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn_cli.atomic import atomic_write_npz
from bnn_cli.config import Config, config_yaml
from bnn_cli.errors import RunError
from bnn_cli.fit.callbacks import Best, EarlyStopping
from bnn_cli.fit.diagnostics import Snapshot
from bnn_cli.fit.loop import FitState
from bnn_cli.runs import store
from bnn_cli.versions import installed_versions

logger = logging.getLogger(__name__)

FILE_NAME = "checkpoint.npz"
FORMAT = 1  # raised when the layout changes: an older file is then refused, not misread
META = "meta"  # the JSON member


@dataclass(frozen=True)
class Saved:
    """A checkpoint as read: its JSON part and its arrays."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def iteration(self) -> int:
        return self.meta["state"]["iteration"]


def config_hash(config: Config) -> str:
    """The resolved configuration's fingerprint: every number that decides the fit."""
    return hashlib.sha256(config_yaml(config).encode("utf-8")).hexdigest()


def exists(run_dir: Path) -> bool:
    return (Path(run_dir) / FILE_NAME).is_file()


def discard(run_dir: Path) -> None:
    """Remove the checkpoint of a run that completed: it cannot be resumed, and the file is as
    large as the parameters and the optimizer's state together."""
    try:
        (Path(run_dir) / FILE_NAME).unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("could not remove %s: %s", Path(run_dir) / FILE_NAME, exc)


def step_cells(fn: Any) -> dict[int, list]:
    """The compiled step function's mutable state: the storage cell of every input it updates,
    by input index (the same cells `steppers.MultiStep` reads and writes)."""
    updated = sorted(set(fn.maker.fgraph.update_mapping.values()))
    return {i: fn.input_storage[i].storage for i in updated}


def save(
    run_dir: Path,
    config: Config,
    stepper: Any,
    state: FitState,
    early: EarlyStopping | None,
    window: Any,
    compile_s: float,
) -> None:
    """Write checkpoint.npz (atomically) for the fit as it stands between two blocks."""
    arrays: dict[str, np.ndarray] = {"losses": np.asarray(state.losses, dtype=np.float64)}
    cells = {
        str(i): encode(cell[0], f"cell/{i}", arrays) for i, cell in step_cells(stepper.fn).items()
    }
    feeder = stepper.feeder
    arrays["feeder/order"] = np.asarray(feeder.order)
    meta = {
        "format": FORMAT,
        "config_sha256": config_hash(config),
        "steps_per_call": stepper.k,
        "versions": installed_versions(),
        "compile_s": compile_s,
        "state": {
            "iteration": state.iteration,
            "elapsed_s": state.elapsed,
            "rows": state.rows,
            "tensor_rows": state.tensor_rows,
            "validated": state.validated,
        },
        "cells": cells,
        "feeder": {"rng": feeder.rng.bit_generator.state},
        "early": None if early is None else save_early(early, arrays),
        "window": None if window.snapshot is None else save_window(window.snapshot, arrays),
    }
    arrays[META] = np.array(json.dumps(meta, default=_plain))
    atomic_write_npz(Path(run_dir) / FILE_NAME, arrays)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):  # a NumPy scalar among the validation figures
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """One cell's value as JSON, its arrays added to `arrays` under `key`."""
    if isinstance(value, np.random.Generator):
        return {"kind": "generator", "state": value.bit_generator.state}
    if isinstance(value, dict):  # the JAX backend's random state
        return {
            "kind": "tree",
            "items": {k: encode(v, f"{key}/{k}", arrays) for k, v in value.items()},
        }
    arrays[key] = np.asarray(value)
    # JAX's weak-typed scalars (a Python number's type) come back as Python numbers: a strongly
    # typed array in their place would make JAX trace the step anew for another signature.
    return {"kind": "array", "weak": bool(getattr(value, "weak_type", False))}


def save_early(early: EarlyStopping, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    best = early.best
    if best is not None:
        arrays.update({f"early/{key}": value for key, value in best.arrays.items()})
    return {
        "since_best": early.since_best,
        "best": None if best is None else {"iteration": best.iteration, "value": best.value},
    }


def save_window(snapshot: Snapshot, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    arrays.update({f"window/{name}": rho for name, rho in snapshot.rho.items()})
    return {"iteration": snapshot.iteration, "loss": snapshot.loss}


def can_resume(run_dir: Path, config: Config) -> bool:
    """Whether `bnn train --resume run_dir` would go on with this config's fit: a run cut off
    (interrupted, pruned, failed, or killed: `running` with its process gone) after its first
    checkpoint, written with this very configuration. For a sweep's or an ensemble's points."""
    return why_not_resumable(run_dir, config) is None


def why_not_resumable(run_dir: Path, config: Config) -> str | None:
    """What keeps `can_resume` from going on with the run (None: nothing), for a tuner to say
    why a cut-off trial starts over."""
    try:
        status = store.read_status(run_dir, missing_ok=True)
        path = Path(run_dir) / FILE_NAME
        with np.load(path, allow_pickle=False) as npz:  # the JSON member only: no arrays read
            written_with = json.loads(str(npz[META]))["config_sha256"]
    except (RunError, OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        logger.debug("%s cannot be resumed: %s", run_dir, exc)
        return f"no readable checkpoint ({type(exc).__name__})"
    if status is None or status["state"] == "complete":
        return "it has no status" if status is None else "it is complete"
    if status["state"] == "running" and not store.process_gone(status):
        return f"its process {status.get('pid')} is still running"
    if written_with != config_hash(config):
        return "its checkpoint was written with another configuration"
    return None


def load(run_dir: Path) -> Saved:
    """checkpoint.npz as written by `save`; a damaged or foreign file is a RunError."""
    path = Path(run_dir) / FILE_NAME
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(str(arrays.pop(META)))
        meta["state"]["iteration"]  # noqa: B018 (a missing part is a damaged file)
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        zipfile.BadZipFile,
        EOFError,
        zlib.error,
        NotImplementedError,
    ) as exc:
        raise RunError(
            f"'{path}' is corrupt or truncated ({type(exc).__name__}: {exc}); train the run again"
        ) from None
    if meta.get("format") != FORMAT:
        raise RunError(
            f"'{path}' was written by another version of bnn (checkpoint format "
            f"{meta.get('format')}, this one reads {FORMAT}); train the run again"
        )
    return Saved(path, meta, arrays)


def matches(saved: Saved, config: Config) -> bool:
    return saved.meta.get("config_sha256") == config_hash(config)


class Mismatch(Exception):
    """The checkpoint does not fit the fit built from config.yaml."""


def restore(
    saved: Saved, stepper: Any, state: FitState, early: EarlyStopping | None, window: Any
) -> float:
    """Put the checkpoint's state into a freshly built fit of the same config; returns the
    compile seconds the run had spent before. A checkpoint that does not fit is a RunError."""
    meta, arrays = saved.meta, saved.arrays
    try:
        cells = step_cells(stepper.fn)
        if sorted(cells) != sorted(int(i) for i in meta["cells"]):
            raise Mismatch(f"the step function updates inputs {sorted(cells)}")
        values = {
            i: decode(meta["cells"][str(i)], f"cell/{i}", arrays, c[0]) for i, c in cells.items()
        }
        if (early is None) != (meta["early"] is None):
            raise Mismatch("early stopping is not as it was")
    except (Mismatch, KeyError) as exc:
        raise RunError(
            f"'{saved.path}' does not match the fit config.yaml describes ({exc}); train the "
            "run again"
        ) from None
    for i, value in values.items():  # only once every value is known to fit
        cells[i][0] = value
    stepper.feeder.rng.bit_generator.state = meta["feeder"]["rng"]
    stepper.feeder.order = arrays["feeder/order"]
    restore_state(state, meta["state"], arrays["losses"])
    if early is not None:
        restore_early(early, meta["early"], arrays)
    if meta["window"] is not None:
        rho = {key[len("window/") :]: a for key, a in arrays.items() if key.startswith("window/")}
        window.snapshot = Snapshot(meta["window"]["iteration"], rho, meta["window"]["loss"])
    warn_if_changed(meta, stepper.k)
    return float(meta["compile_s"])


def warn_if_changed(meta: dict[str, Any], k: int) -> None:
    """The fit goes on either way; only its last bits may differ from an unbroken one."""
    changed = {
        name: (was, now)
        for name, now in installed_versions().items()
        if (was := meta["versions"].get(name)) != now
    }
    if changed:
        shown = ", ".join(f"{name} {was} -> {now}" for name, (was, now) in changed.items())
        logger.warning("resumed with other versions than the run had (%s)", shown)
    if meta["steps_per_call"] != k:
        logger.warning(
            "resumed with %d steps per call where the run had %d: the same minibatches and "
            "steps, compiled differently",
            k,
            meta["steps_per_call"],
        )


def decode(meta: dict[str, Any], key: str, arrays: dict[str, np.ndarray], current: Any) -> Any:
    """One cell's saved value, checked against what the fresh fit holds there now."""
    kind = meta["kind"]
    if kind == "generator":
        if not isinstance(current, np.random.Generator):
            raise Mismatch(f"{key} holds {type(current).__name__}, not a NumPy Generator")
        generator = np.random.Generator(type(current.bit_generator)())
        generator.bit_generator.state = meta["state"]
        return generator
    if kind == "tree":
        items = meta["items"]
        if not isinstance(current, dict) or set(current) != set(items):
            raise Mismatch(f"{key} is not the random state saved")
        return {k: decode(m, f"{key}/{k}", arrays, current[k]) for k, m in items.items()}
    array = arrays[key]
    if meta["weak"] and array.ndim == 0:
        return array.item()
    now = np.asarray(current)
    if array.shape != now.shape or array.dtype != now.dtype:
        raise Mismatch(
            f"{key} is {array.dtype}{list(array.shape)}, the fit has {now.dtype}{list(now.shape)}"
        )
    return array


def restore_state(state: FitState, saved: dict[str, Any], losses: np.ndarray) -> None:
    state.iteration = saved["iteration"]
    state.losses = losses.tolist()
    state.rows, state.tensor_rows = saved["rows"], saved["tensor_rows"]
    state.validated = saved["validated"]
    # The clock goes on from the seconds spent before: elbo.csv's elapsed_s, the status's
    # train_s and it_per_s count the whole fit, not this process's share.
    now = time.perf_counter()
    state.started = now - saved["elapsed_s"]
    state.block_start, state.block_began, state.block_ended = state.iteration, now, now


def restore_early(early: EarlyStopping, saved: dict[str, Any], arrays: dict) -> None:
    early.since_best = saved["since_best"]
    best = saved["best"]
    if best is not None:
        kept = {key[len("early/") :]: a for key, a in arrays.items() if key.startswith("early/")}
        early.best = Best(best["iteration"], best["value"], kept)
