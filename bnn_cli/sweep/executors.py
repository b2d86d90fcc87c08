"""Where the points run: `local` (processes on this machine, a few at a time) or `ray` (one Ray
task per point, on a local Ray or a cluster joined by address, token authentication included)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bnn_cli.data.datasets import resolve_data_dir
from bnn_cli.errors import ConfigError
from bnn_cli.sweep.point import LIVE, STOPPING, Task, log_tail, run_point

RAY_MISSING = "the ray executor needs Ray: pip install 'bnn[ray]'"


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
        STOPPING.set()
        for future in futures:
            future.cancel()
        for proc in list(LIVE):
            proc.send_signal(signal.SIGINT)
        pool.shutdown(wait=True)
        for future, task in futures.items():
            if future.done() and not future.cancelled() and future not in recorded:
                record(task, _result(future))
        raise
    finally:
        pool.shutdown(wait=True)
        STOPPING.clear()


def _result(future: Any) -> dict[str, Any]:
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
    pending, inflight = list(tasks), dict[Any, Any]()
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
                    outcome = ray_failure(exc)
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


def ray_failure(exc: Exception, state: str = "failed") -> dict[str, Any]:
    """The outcome of a task Ray could not run or finish (its worker died, it was cancelled)."""
    lines = str(exc).strip().splitlines() or [""]
    error = f"{type(exc).__name__}: {lines[0][:300]}"
    return {"state": state, "error": error, "run_dir": None}


def workers_data_dir(data_dir: str | None, executor: str) -> str | None:
    """The data folder as the points' processes get it: absolute, and named for Ray (whose
    workers' environment may differ from this process's)."""
    if data_dir:
        return str(Path(data_dir).resolve())
    if executor != "ray":
        return None

    return str(resolve_data_dir(None).resolve())


AUTH_MARKS = ("InvalidAuthToken", "Unauthenticated", "AuthenticationError")


TOKEN_HINT = (
    "set RAY_AUTH_MODE=token and give the cluster's token as $RAY_AUTH_TOKEN, in a file named by "
    "$RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token (see 'Joining a Ray cluster' in the README)"
)


def join_cluster(ray: Any, address: str | None, log_file: Path | None) -> None:
    """`ray.init`, with Ray's log lines (its GCS client writes straight to the stderr file
    descriptor) kept in `log_file`; a failure becomes one ConfigError that says why."""
    quiet = log_file is not None
    offset = log_file.stat().st_size if log_file is not None and log_file.is_file() else 0
    try:
        with ray_logs_to(log_file):
            ray.init(
                address=address,
                log_to_driver=not quiet,  # the points' output is in their own log files
                logging_level=logging.ERROR if quiet else logging.INFO,
            )
    except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
        # This attempt's lines only.
        ray_log = log_tail(log_file, offset) if log_file is not None else ""
        raise ConfigError(cluster_error(address, exc, ray_log)) from None


def cluster_error(address: str | None, exc: Exception, ray_log: str) -> str:
    """What went wrong joining the cluster. Token authentication (the default of clusters that
    `ray start` makes with RAY_AUTH_MODE=token) shows only as warnings in Ray's log and a
    generic "Failed to connect": recognise it and say what to set."""
    address = address or os.environ.get("RAY_ADDRESS")  # what ray.init joins without one
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
def ray_logs_to(log_file: Path | None) -> Iterator[None]:
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


def import_ray() -> Any:
    try:
        import ray  # lazy: imports Ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
