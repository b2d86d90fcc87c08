"""The sweep's loop: prepare the manifest, run the points not complete yet on the chosen
executor, record each outcome as it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from rich.console import Console
from rich.markup import escape
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

from bnn_cli.atomic import atomic_write_text
from bnn_cli.config import config_yaml
from bnn_cli.console import progress_bar
from bnn_cli.errors import RunError
from bnn_cli.report.formatting import format_duration
from bnn_cli.runs import utc_now
from bnn_cli.sweep.executors import (
    cpu_count,
    import_ray,
    run_local,
    run_ray,
    workers_data_dir,
)
from bnn_cli.sweep.manifest import SweepResult, prepare, write_manifest
from bnn_cli.sweep.point import Task
from bnn_cli.sweep.spec import Point, Sweep


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
            f"{sweep.kind} '{sweep.name}' is already running on the runs directory '{runs_dir}'"
        ) from None
    try:
        result = prepare(sweep, runs_dir, console)
        todo = [p for p in sweep.points if p.label not in result.skipped]
        threads = max(1, cpu_count() // (jobs or 1) if executor == "local" else int(cpus_per_point))
        data = workers_data_dir(data_dir, executor)
        tasks = [
            _task(p, folder, runs_dir, data, threads, sweep.evaluate, result.entries[p.key])
            for p in todo
        ]
        ray_log = None if debug else folder / "ray.log"
        ray_args = (address, cpus_per_point, gpus_per_point, ray_log)
        _execute(result, tasks, console, executor, jobs, ray_args)
    finally:
        lock.release()
    return result


def _task(
    point: Point,
    folder: Path,
    runs_dir: Path,
    data: str | None,
    threads: int,
    evaluate: bool,
    entry: dict[str, Any],
) -> Task:
    """The point's `bnn train`: of its config, or `--resume` of its run cut off after a
    checkpoint (the manifest entry's `resume`), which its own config.yaml then decides."""
    config_file = folder / f"{point.label}.yaml"
    atomic_write_text(config_file, config_yaml(point.config))
    log_file = folder / f"{point.label}.log"
    resume = entry.get("resume")
    return Task(
        point.label,
        point.config.name,
        "" if resume else str(config_file),
        str(runs_dir),
        data,
        str(log_file),
        threads,
        evaluate,
        extra_args=("--resume", resume) if resume else (),
        run_dir=resume,
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
    for task in tasks:
        if task.run_dir:
            console.print(
                f"  [dim]resume[/] {escape(task.label)} from its last checkpoint "
                f"({by_label[task.label]['run']})",
                highlight=False,
            )
    with _progress(console) as progress:
        bar = progress.add_task(
            f"{result.sweep.kind} {result.sweep.name}", total=total, completed=len(result.skipped)
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
            write_manifest(result, "running")
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
            write_manifest(result, "interrupted")
            raise
    write_manifest(result, "complete" if not result.failed() else "failed")
    failed = len(result.failed())
    unit = "members" if result.sweep.kind == "ensemble" else "points"
    console.print(
        f"{result.sweep.kind} '{result.sweep.name}': {total} {unit}, {total - failed} complete "
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
    return progress_bar(console, "{task.description}", MofNCompleteColumn(), TimeElapsedColumn())
