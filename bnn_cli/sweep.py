"""`bnn sweep`: many runs of one base config, on this machine or as Ray tasks on a cluster.

A sweep file names a base config, a `grid` (every combination of the listed values) and/or
explicit `points`, and `set` overrides for every point. Every point is validated before anything
runs. Each point then becomes an ordinary run directory made by `bnn train` in a process of its
own, so a point that fails or crashes (even SIGKILL) is reported while the others go on.
`<runs>/sweeps/<name>.json` records each point's overrides, run, state and error; running the
sweep again skips the points whose run is complete (with the same config) and runs the rest.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import itertools
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bnn_cli.atomic import atomic_write_json, atomic_write_text
from bnn_cli.compare import (
    comparison,
    format_duration,
    format_number,
    format_percent,
    ranked_rows,
    rows_to_csv,
)
from bnn_cli.config import Config, config_from_dict, config_yaml
from bnn_cli.errors import BnnError, ConfigError, ExitCode, RunError
from bnn_cli.runs import read_status, utc_now, write_status
from bnn_cli.tables import DASH, Column, Tabular, emit, value

logger = logging.getLogger(__name__)

SWEEP_KEYS = ("base", "grid", "points", "set", "name")
SPREAD_KEYS = ("seed",)  # swept keys averaged over in the summary, not grouped by
LABEL_MAX = 60  # characters of a point's label in its run directory's name
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
RAY_MISSING = "the ray executor needs Ray: pip install 'bnn[ray]'"


class SweepFailed(BnnError):
    """Some points failed; the others completed and the summary is printed (exit 1)."""

    exit_code = ExitCode.INTERNAL


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


# ---------------------------------------------------------------- the sweep file


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
        label = _safe("-".join(f"{k}={_short(v)}" for k, v in combo.items())) or "base"
        if len(label) > LABEL_MAX:
            label = label[: LABEL_MAX - 9] + "-" + _digest(key)
        labels.append(label)
    counts = {label: labels.count(label) for label in labels}
    for i, label in enumerate(labels):  # sanitising may have merged two points: tell them apart
        if counts[label] > 1:
            labels[i] = f"{label}-{_digest(keys[i])}"
    return labels


def _short(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "x".join(_short(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("._") if text else ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in overrides.items()) or "base"


# ---------------------------------------------------------------- one point, one process


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one point; plain data, so it travels to Ray workers."""

    label: str
    config_name: str
    config_file: str
    runs_dir: str
    data_dir: str | None
    log_file: str
    threads: int


_LIVE: set[subprocess.Popen] = set()  # children running in this process, for Ctrl-C
_STOPPING = threading.Event()


def run_point(task: Task) -> dict[str, Any]:
    """Run `bnn train` on the point's config in a child process; return its outcome. Never
    raises for a failed point: the outcome says `failed` and why."""
    if _STOPPING.is_set():
        return {"state": "interrupted", "error": "the sweep was interrupted", "run_dir": None}
    command = [sys.executable, "-m", "bnn_cli.cli", "train", task.config_file]
    command += ["--runs-dir", task.runs_dir]
    if task.data_dir:
        command += ["--data-dir", task.data_dir]
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, str(task.threads))}
    before = set(runs_named(Path(task.runs_dir), task.config_name))
    start = time.perf_counter()
    with open(task.log_file, "ab") as log:
        log.write(f"\n=== {utc_now()} {' '.join(command)}\n".encode())
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches the sweep, which passes it on once
        )
        stdout = _wait(proc)
    wall_s = round(time.perf_counter() - start, 2)
    lines = stdout.decode(errors="replace").strip().splitlines()
    run_dir = Path(lines[-1]) if proc.returncode == 0 and lines else None
    if run_dir is None:
        new = sorted(set(runs_named(Path(task.runs_dir), task.config_name)) - before)
        run_dir = new[-1] if new else None
    return _outcome(proc.returncode, run_dir, _log_tail(task.log_file, offset), wall_s)


def _wait(proc: subprocess.Popen) -> bytes:
    _LIVE.add(proc)
    try:
        if _STOPPING.is_set():
            proc.send_signal(signal.SIGINT)
        try:
            return proc.communicate()[0]
        except KeyboardInterrupt:  # a cancelled Ray task: stop the run, keep its parameters
            proc.send_signal(signal.SIGINT)
            return proc.communicate()[0]
    finally:
        _LIVE.discard(proc)


def _outcome(rc: int, run_dir: Path | None, log_tail: str, wall_s: float) -> dict[str, Any]:
    try:
        status = read_status(run_dir, missing_ok=True) if run_dir else None
    except RunError:
        status = None
    run_state = status["state"] if status else None
    outcome = {"run_dir": str(run_dir) if run_dir else None, "wall_s": wall_s, "returncode": rc}
    if rc == 0 and run_state == "complete":
        return {**outcome, "state": "complete", "error": None}
    if rc < 0:
        error = f"killed by {signal.Signals(-rc).name}" if -rc in _SIGNALS else f"signal {-rc}"
        if run_state == "running":  # the process is gone: make the run directory honest
            write_status(run_dir, "failed", message=f"the train process was {error}")
    else:
        error = _error_line(log_tail) or f"bnn train exited with code {rc}"
        if rc == 0:
            error = f"bnn train exited 0 but its run is {run_state or 'missing'}"
    interrupted = rc in (ExitCode.INTERRUPTED, -signal.SIGINT) or run_state == "interrupted"
    return {**outcome, "state": "interrupted" if interrupted else "failed", "error": error}


_SIGNALS = {int(s) for s in signal.Signals}


def _log_tail(path: str, offset: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read()[-20_000:].decode(errors="replace")


def _error_line(text: str) -> str | None:
    errors = [line[len("error: ") :] for line in text.splitlines() if line.startswith("error: ")]
    return errors[-1].strip() if errors else None


def runs_named(runs_dir: Path, config_name: str) -> list[Path]:
    """Run directories `<stamp>-<config_name>-<6 hex>` in runs_dir, oldest first."""
    pattern = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(config_name)}-[0-9a-f]{{6}}")
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if pattern.fullmatch(p.name))


# ---------------------------------------------------------------- executors


Record = Callable[[Task, dict[str, Any]], None]


def run_local(tasks: list[Task], jobs: int, record: Record) -> None:
    """`jobs` points at a time, each `bnn train` in its own process (a thread waits on each)."""
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="bnn-sweep")
    futures = {pool.submit(run_point, task): task for task in tasks}
    recorded = set()
    try:
        for future in as_completed(futures):
            recorded.add(future)
            record(futures[future], _result(future))
    except KeyboardInterrupt:
        _STOPPING.set()
        for future in futures:
            future.cancel()
        for proc in list(_LIVE):
            proc.send_signal(signal.SIGINT)
        pool.shutdown(wait=True)
        for future, task in futures.items():
            if future.done() and not future.cancelled() and future not in recorded:
                record(task, _result(future))
        raise
    finally:
        pool.shutdown(wait=True)
        _STOPPING.clear()


def _result(future) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # a bug or OS error in the sweep itself, not in the point
        return {"state": "failed", "error": f"{type(exc).__name__}: {exc}", "run_dir": None}


def run_ray(
    tasks: list[Task],
    jobs: int | None,
    record: Record,
    address: str | None,
    cpus: float,
    gpus: float,
    log_file: Path | None = None,
) -> None:
    """Each point as a Ray task declaring `cpus` and `gpus`; at most `jobs` in flight when given,
    else as many as the cluster's resources fit. Ray's own log lines go to `log_file` (None:
    to the console, for --debug)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        join_cluster(ray, address, log_file)
    remote = ray.remote(run_point).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    pending, inflight = list(tasks), {}
    try:
        while pending or inflight:
            while pending and len(inflight) < (jobs or len(tasks)):
                task = pending.pop(0)
                inflight[remote.remote(task)] = task
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                task = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker died, or Ray could not run the task
                    lines = str(exc).strip().splitlines() or [""]
                    error = f"{type(exc).__name__}: {lines[0][:300]}"
                    outcome = {"state": "failed", "error": error, "run_dir": None}
                record(task, outcome)
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref)  # raises KeyboardInterrupt in the task, which stops its run
        if inflight:
            ray.wait(list(inflight), num_returns=len(inflight), timeout=60)
        raise
    finally:
        if started:
            with ray_logs_to(log_file):
                ray.shutdown()


AUTH_MARKS = ("InvalidAuthToken", "Unauthenticated", "AuthenticationError")
TOKEN_HINT = (
    "set RAY_AUTH_MODE=token and give the cluster's token as $RAY_AUTH_TOKEN, in a file named by "
    "$RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token (see 'Joining a Ray cluster' in the README)"
)


def join_cluster(ray, address: str | None, log_file: Path | None) -> None:
    """`ray.init`, with Ray's log lines (its GCS client writes straight to the stderr file
    descriptor) kept in `log_file`; a failure becomes one ConfigError that says why."""
    quiet = log_file is not None
    try:
        with ray_logs_to(log_file):
            ray.init(
                address=address,
                log_to_driver=not quiet,  # the points' output is in their own log files
                logging_level=logging.ERROR if quiet else logging.INFO,
            )
    except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
        raise ConfigError(cluster_error(address, exc, _read_tail(log_file))) from None


def cluster_error(address: str | None, exc: Exception, ray_log: str) -> str:
    """What went wrong joining the cluster. Token authentication (the default of clusters that
    `ray start` makes with RAY_AUTH_MODE=token) shows only as warnings in Ray's log and a
    generic "Failed to connect": recognise it and say what to set."""
    where = f"at '{address}'" if address else "(local)"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if type(exc).__name__ == "AuthenticationError":
        reason = first.split(". ")[0]
        return f"cannot join the Ray cluster {where}: {reason}; {TOKEN_HINT}"
    if any(mark in ray_log for mark in AUTH_MARKS):
        return (
            f"cannot join the Ray cluster {where}: it uses token authentication and refused "
            f"this process's token (none, or another cluster's); {TOKEN_HINT}"
        )
    return f"cannot start or join the Ray cluster {where}: {first}"


@contextlib.contextmanager
def ray_logs_to(log_file: Path | None):
    """Send whatever is written to the stderr file descriptor (Ray's C++ and Python log lines)
    to `log_file` while the block runs; None leaves stderr alone."""
    if log_file is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_file, "ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _read_tail(log_file: Path | None) -> str:
    if log_file is None or not Path(log_file).is_file():
        return ""
    return Path(log_file).read_bytes()[-50_000:].decode(errors="replace")


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- manifest, resume, the loop


@dataclass
class SweepResult:
    sweep: Sweep
    runs_dir: Path
    manifest_path: Path
    entries: dict[str, dict[str, Any]]  # by point key, in sweep order
    skipped: list[str] = field(default_factory=list)  # labels already complete

    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.entries.values() if e["state"] != "complete"]


def run_sweep(
    sweep: Sweep,
    runs_dir: Path,
    data_dir: str | None,
    console: Console,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    cpus_per_point: float = 1,
    gpus_per_point: float = 0,
    debug: bool = False,
) -> SweepResult:
    """Run the sweep's points that are not complete yet; the manifest is updated as each ends.
    Ray's own log lines go to `<runs>/sweeps/<name>/ray.log` unless `debug`."""
    from filelock import FileLock, Timeout

    if executor == "ray":
        import_ray()  # before anything is written: exit 2 with the install hint
    runs_dir = Path(runs_dir).resolve()
    folder = runs_dir / "sweeps" / sweep.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create '{folder}': {exc.strerror}") from None
    lock = FileLock(str(runs_dir / "sweeps" / f".{sweep.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(
            f"sweep '{sweep.name}' is already running on the runs directory '{runs_dir}'"
        ) from None
    try:
        result = _prepare(sweep, runs_dir, console)
        todo = [p for p in sweep.points if p.label not in result.skipped]
        threads = max(1, cpu_count() // (jobs or 1) if executor == "local" else int(cpus_per_point))
        data = str(Path(data_dir).resolve()) if data_dir else None
        if executor == "ray" and not data:
            from bnn_cli.data.datasets import resolve_data_dir

            data = str(resolve_data_dir(None).resolve())  # the workers' environment may differ
        tasks = [_task(p, folder, runs_dir, data, threads) for p in todo]
        ray_log = None if debug else folder / "ray.log"
        ray_args = (address, cpus_per_point, gpus_per_point, ray_log)
        _execute(result, tasks, console, executor, jobs, ray_args)
    finally:
        lock.release()
    return result


def _prepare(sweep: Sweep, runs_dir: Path, console: Console) -> SweepResult:
    """Fresh manifest entries, keeping each point's history; skip points already complete."""
    path = runs_dir / "sweeps" / f"{sweep.name}.json"
    previous = _read_manifest(path, console)
    result = SweepResult(sweep, runs_dir, path, {})
    for point in sweep.points:
        old = previous.get(point.key, {})
        done = _complete_run(point, runs_dir, old.get("run"))
        history = list(old.get("previous_runs", []))
        if old.get("run") and old["run"] != (done.name if done else None):
            history.append(old["run"])
        result.entries[point.key] = {
            "label": point.label,
            "overrides": point.overrides,
            "config_name": point.config.name,
            "state": "complete" if done else "pending",
            "run": done.name if done else None,
            "run_dir": str(done) if done else None,
            "error": None,
            "wall_s": old.get("wall_s") if done else None,
            "attempts": old.get("attempts", 0),
            "previous_runs": history,
        }
        if done:
            result.skipped.append(point.label)
    _write_manifest(result, "running")
    return result


def _complete_run(point: Point, runs_dir: Path, recorded: str | None) -> Path | None:
    """The point's complete run with the same config: the recorded one, else the newest found
    by name (a sweep stopped before it could record the run)."""
    candidates = ([runs_dir / recorded] if recorded else []) + runs_named(
        runs_dir, point.config.name
    )[::-1]
    for run_dir in candidates:
        try:
            status = read_status(run_dir, missing_ok=True)
            raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
            config = config_from_dict(raw)  # defaults filled in, as for the point
        except (BnnError, OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if status and status["state"] == "complete" and config == point.config:
            return run_dir
    return None


def _task(point: Point, folder: Path, runs_dir: Path, data: str | None, threads: int) -> Task:
    config_file = folder / f"{point.label}.yaml"
    atomic_write_text(config_file, config_yaml(point.config))
    log_file = folder / f"{point.label}.log"
    return Task(
        point.label,
        point.config.name,
        str(config_file),
        str(runs_dir),
        data,
        str(log_file),
        threads,
    )


def _execute(
    result: SweepResult,
    tasks: list[Task],
    console: Console,
    executor: str,
    jobs: int | None,
    ray_args: tuple,
) -> None:
    total = len(result.sweep.points)
    by_label = {e["label"]: e for e in result.entries.values()}
    for label in result.skipped:
        console.print(
            f"  [dim]skip[/] {escape(label)}: already complete ({by_label[label]['run']})",
            highlight=False,
        )
    with _progress(console) as progress:
        bar = progress.add_task(
            f"sweep {result.sweep.name}", total=total, completed=len(result.skipped)
        )

        def record(task: Task, outcome: dict[str, Any]) -> None:
            entry = by_label[task.label]
            run_dir = outcome.get("run_dir")
            entry.update(
                state=outcome["state"],
                error=outcome.get("error"),
                wall_s=outcome.get("wall_s"),
                run=Path(run_dir).name if run_dir else None,
                run_dir=run_dir,
                attempts=entry["attempts"] + 1,
                finished=utc_now(),
            )
            _write_manifest(result, "running")
            progress.advance(bar)
            console.print(_point_line(entry, task), highlight=False)

        try:
            if tasks and executor == "ray":
                run_ray(tasks, jobs, record, *ray_args)
            elif tasks:
                run_local(tasks, jobs or 1, record)
        except KeyboardInterrupt:
            for entry in result.entries.values():
                if entry["state"] == "pending":
                    entry.update(state="interrupted", error="the sweep was interrupted")
            _write_manifest(result, "interrupted")
            raise
    _write_manifest(result, "complete" if not result.failed() else "failed")
    failed = len(result.failed())
    console.print(
        f"sweep '{result.sweep.name}': {total} points, {total - failed} complete "
        f"({len(result.skipped)} already were), {failed} failed; manifest "
        f"{result.manifest_path}",
        highlight=False,
    )


def _point_line(entry: dict[str, Any], task: Task) -> str:
    took = format_duration(entry.get("wall_s"))
    if entry["state"] == "complete":
        return f"  [green]done[/] {escape(entry['label'])} in {took}: {escape(entry['run_dir'])}"
    return (
        f"  [red]{entry['state']}[/] {escape(entry['label'])} after {took}: "
        f"{escape(str(entry['error']))} (log: {escape(task.log_file)})"
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def _read_manifest(path: Path, console: Console) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        points = json.loads(path.read_text(encoding="utf-8"))["points"]
        return {p["key"]: p for p in points}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        console.print(
            f"warning: '{path}' is corrupt; complete runs are found by their names",
            style="yellow",
            highlight=False,
        )
        return {}


def _write_manifest(result: SweepResult, state: str) -> None:
    sweep = result.sweep
    atomic_write_json(
        result.manifest_path,
        {
            "sweep": sweep.name,
            "sweep_file": str(sweep.path.resolve()),
            "base": str(sweep.base),
            "swept_keys": list(sweep.swept_keys),
            "state": state,
            "updated": utc_now(),
            "points": [{"key": key, **entry} for key, entry in result.entries.items()],
        },
    )


def raise_if_failed(result: SweepResult) -> None:
    failed = result.failed()
    if not failed:
        return
    shown = "; ".join(f"{e['label']} ({e['error']})" for e in failed[:3])
    more = f"; and {len(failed) - 3} more (see {result.manifest_path})" if len(failed) > 3 else ""
    raise SweepFailed(f"{len(failed)} of {len(result.entries)} points failed: {shown}{more}")


# ---------------------------------------------------------------- the summary tables


def print_summary(result: SweepResult, console: Console, fmt: str = "table") -> None:
    """The `bnn compare` table of the sweep's runs (also written as CSV beside the manifest),
    then one row per combination of the swept keys: mean ± sd over seeds. As csv, only the
    grouped rows (the runs' rows are in that CSV file)."""
    run_dirs = [Path(e["run_dir"]) for e in result.entries.values() if e["run_dir"]]
    if not run_dirs:
        return
    rows = ranked_rows(run_dirs)
    atomic_write_text(result.manifest_path.with_suffix(".csv"), rows_to_csv(rows))
    groups = grouped(result, {row["path"]: row for row in rows})
    emit(console, [groups] if fmt == "csv" else [comparison(rows), groups], fmt)


# The metrics summarised over each group: record key, how a value is shown, header.
GROUP_METRICS = [
    ("accuracy", format_percent, "accuracy"),
    ("nll", format_number, "NLL"),
    ("ece", format_number, "ECE"),
    ("mean_epistemic", format_number, "epistemic"),
    ("auroc_entropy", format_number, "AUROC"),
]


def grouped(result: SweepResult, rows_by_path: dict[str, dict]) -> Tabular:
    """One record per combination of the swept keys (seeds spread over): how many points are
    complete, and the mean and sd of each metric over them."""
    keys = [k for k in result.sweep.swept_keys if k not in (*SPREAD_KEYS, "name")]
    groups: dict[tuple, list] = {}
    for point in result.sweep.points:
        values = tuple(_lookup(point.config.to_dict(), k) for k in keys)
        entry = result.entries[point.key]
        groups.setdefault(values, []).append(rows_by_path.get(entry["run_dir"] or ""))
    records = [
        _group_record(dict(zip(keys, values, strict=True)), rows) for values, rows in groups.items()
    ]
    spread = ", ".join(k for k in result.sweep.swept_keys if k in SPREAD_KEYS)
    title = f"sweep '{result.sweep.name}': mean ± sd" + (f" over {spread}" if spread else "")
    columns = [Column(k, lambda r, k=k: _short(r[k])) for k in keys]
    columns.append(Column("complete", lambda r: f"{r['complete']}/{r['points']}", right=True))
    for key, fmt, header in GROUP_METRICS:
        cell = lambda r, key=key, fmt=fmt: _mean_sd(r[f"{key}_mean"], r[f"{key}_sd"], fmt)  # noqa: E731
        columns.append(Column(header, cell, right=True))
    columns.append(Column("wall time", value("wall_s_mean", format_duration), right=True))
    record_keys = [*keys, "complete", "points"]
    record_keys += [f"{key}_{stat}" for key, _, _ in GROUP_METRICS for stat in ("mean", "sd")]
    return Tabular("groups", title, columns, [*record_keys, "wall_s_mean"], records)


def _group_record(record: dict[str, Any], rows: list[dict | None]) -> dict[str, Any]:
    ok = [r for r in rows if r and r["state"] == "complete" and r["accuracy"] is not None]
    record.update(complete=len(ok), points=len(rows))
    for key, _, _ in GROUP_METRICS:
        values = [r[key] for r in ok if r[key] is not None]
        record[f"{key}_mean"] = statistics.fmean(values) if values else None
        record[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    walls = [r["wall_s"] for r in ok if r["wall_s"] is not None]
    record["wall_s_mean"] = statistics.fmean(walls) if walls else None
    return record


def _mean_sd(mean: float | None, sd: float | None, fmt: Callable[[Any], str]) -> str:
    if mean is None:
        return DASH
    return f"{fmt(mean)} ± {fmt(sd)}" if sd is not None else fmt(mean)


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
