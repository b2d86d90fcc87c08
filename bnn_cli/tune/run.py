"""`bnn tune`'s loop: `jobs` workers, each asking the study for a trial, running it as an
ordinary `bnn train --no-eval` run (a local process, or a Ray task) that reports its validations
to the study and may be pruned, then telling the study how it ended; until the study holds
`trials` trials that count. Then `best.yaml` and the study report.

The study lives in its database, not in this process: a second `bnn tune` on the same storage
shares it (Optuna hands each process distinct trials), and running the command again continues
it (see `study.reconcile`)."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bnn_cli.atomic import atomic_write_text
from bnn_cli.config import config_yaml
from bnn_cli.console import progress_bar
from bnn_cli.errors import BnnError, ExitCode, RunError
from bnn_cli.report.formatting import format_duration
from bnn_cli.runs import read_status
from bnn_cli.runs.files import read_elbo_csv
from bnn_cli.sweep.executors import (
    cpu_count,
    import_ray,
    join_cluster,
    ray_failure,
    ray_logs_to,
    workers_data_dir,
)
from bnn_cli.sweep.point import LIVE, STOPPING, Task, run_point
from bnn_cli.tune import study as studies
from bnn_cli.tune.spec import TuneSpec, objective_of
from bnn_cli.tune.trial import write_handle

logger = logging.getLogger(__name__)


class NoTrialComplete(BnnError):
    """The study ended with no complete trial (all pruned or failed): its report is written,
    but there is no best.yaml. A partial result, not a bug."""

    exit_code = ExitCode.PARTIAL


@dataclass
class TuneResult:
    spec: TuneSpec
    folder: Path
    storage: str
    study: Any
    retried: list[int] = field(default_factory=list)


def run_tune(
    spec: TuneSpec,
    runs_dir: Path,
    data_dir: str | None,
    console: Console,
    storage: str | None = None,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    debug: bool = False,
) -> TuneResult:
    """Run the study until it holds `spec.trials` counted trials; write best.yaml and the
    report. The trials' runs go to `runs_dir`, the study's files to `runs_dir/tunes/<name>/`."""
    if executor == "ray":
        import_ray()  # before anything is written: exit 2 with the install hint
    runs_dir = Path(runs_dir).resolve()
    folder = runs_dir / "tunes" / spec.name
    try:
        (folder / "trials").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create '{folder}': {exc.strerror}") from None
    url = storage or studies.default_storage(folder)
    study = studies.open_study(spec, url)
    result = TuneResult(spec, folder, url, study)
    result.retried = studies.reconcile(study, spec, runs_dir)
    done = len(studies.finished(study))
    if done or result.retried:
        again = f", {len(result.retried)} cut-off trial(s) to retry" if result.retried else ""
        console.print(
            f"continuing study '{spec.name}': {done} of {spec.trials} trials finished{again}",
            highlight=False,
        )
    data = workers_data_dir(data_dir, executor)
    jobs = jobs or 1
    threads = max(1, cpu_count() // jobs) if executor == "local" else 1
    workers = Workers(result, runs_dir, data, threads, console)
    runner = run_point
    if executor == "ray":
        runner = RayRunner(address, None if debug else folder / "ray.log")
    try:
        workers.run(runner, jobs)
    finally:
        if getattr(runner, "started", False):
            _ray_shutdown(None if debug else folder / "ray.log")
    return result


class Workers:
    """`jobs` threads, each running trials one after another until the budget is spent."""

    def __init__(
        self, result: TuneResult, runs_dir: Path, data: str | None, threads: int, console: Console
    ) -> None:
        self.result, self.runs_dir, self.data = result, runs_dir, data
        self.threads, self.console = threads, console
        self.lock = threading.Lock()  # one ask at a time: the budget check and the ask agree
        self.errors: list[BaseException] = []

    def run(self, runner: Any, jobs: int) -> None:
        spec = self.result.spec
        with _progress(self.console) as progress:
            self.progress = progress
            self.bar = progress.add_task(
                f"tune {spec.name}",
                total=spec.trials,
                completed=len(studies.finished(self.result.study)),
                best=self._best_text(),
            )
            # Each worker sets its event when it ends. The main thread waits on those, never on
            # Thread.join: a signal that interrupts join can leave the thread marked as ended
            # while it still runs (CPython), and the tuner would exit before it tells the study.
            ended = [threading.Event() for _ in range(jobs)]
            for i, event in enumerate(ended):
                threading.Thread(
                    target=self._loop, args=(runner, event), name=f"bnn-tune-{i}"
                ).start()
            try:
                _wait_all(ended)
            except KeyboardInterrupt:
                STOPPING.set()
                for proc in list(LIVE):
                    proc.send_signal(signal.SIGINT)
                getattr(runner, "cancel_all", lambda: None)()
                _wait_all(ended)  # each tells the study how its trial ended
                for error in self.errors:  # the interrupt is what the user sees; log these
                    logger.warning("a tune worker failed while stopping: %r", error)
                raise
            finally:
                STOPPING.clear()
        if self.errors:
            raise self.errors[0]

    def _loop(self, runner: Any, ended: threading.Event) -> None:
        try:
            while not STOPPING.is_set():
                trial = self._ask()
                if trial is None:
                    return
                self._run_trial(trial, runner)
        except BaseException as exc:  # a bug or a storage failure: end this worker, say why
            self.errors.append(exc)
            STOPPING.set()
        finally:
            ended.set()

    def _ask(self) -> Any:
        study, spec = self.result.study, self.result.spec
        with self.lock:
            if studies.counted(study) >= spec.trials:
                return None
            trial = study.ask()
            if studies.surplus(study, trial, spec.trials):
                return None
        return trial

    def _run_trial(self, trial: Any, runner: Any) -> None:
        result, spec = self.result, self.result.spec
        params = studies.suggest(trial, spec.space)
        name = f"{spec.name}-t{trial.number:04d}"
        resume = trial.user_attrs.get("resume")
        attrs = {**studies.owner_attrs(), "config_name": name}
        if resume:
            attrs["run_dir"] = resume
        elif "started_over" in trial.user_attrs:
            self.console.print(
                f"  trial {trial.number} (retry of trial {trial.user_attrs.get('retry_of')}) "
                f"starts over: {escape(trial.user_attrs['started_over'])}",
                highlight=False,
            )
        studies.set_attrs(result.study, trial._trial_id, attrs)
        task = self._task(trial, name, params, resume)
        outcome = runner(task)
        if STOPPING.is_set() and outcome.get("state") == "interrupted":
            outcome["error"] = "bnn tune was interrupted"
        self._tell(trial, outcome)

    def _task(self, trial: Any, name: str, params: dict, resume: str | None) -> Task:
        result, spec = self.result, self.result.spec
        stem = result.folder / "trials" / f"t{trial.number:04d}"
        config_file = stem.with_suffix(".yaml")
        config = spec.config_for(params, name)
        header = f"# {spec.name} trial {trial.number}: {describe(params)}\n"
        atomic_write_text(config_file, header + config_yaml(config))
        handle = write_handle(
            stem.with_suffix(".trial.json"),
            {
                "storage": result.storage,
                "study": spec.name,
                "trial_id": trial._trial_id,
                "number": trial.number,
                "objective": spec.objective,
                "weights": spec.weights,
                "pruner": dict(spec.pruner.__dict__),
            },
        )
        args = ("--tune-trial", str(handle))
        return Task(
            label=f"trial {trial.number}",
            config_name=name,
            config_file="" if resume else str(config_file),
            runs_dir=str(self.runs_dir),
            data_dir=self.data,
            log_file=str(stem.with_suffix(".log")),
            threads=self.threads,
            evaluate=False,  # validation only: a study never looks at the test split
            extra_args=(("--resume", resume) if resume else ()) + args,
            run_dir=resume,
            die_with_parent=True,
        )

    def _tell(self, trial: Any, outcome: dict[str, Any]) -> None:
        from optuna.trial import TrialState  # lazy: imports Optuna

        study, spec = self.result.study, self.result.spec
        run_dir = outcome.get("run_dir")
        attrs = {"run_dir": run_dir, "wall_s": outcome.get("wall_s")}
        state = outcome["state"]
        value = None
        if state == "complete":
            value = objective_value(Path(run_dir), spec.weights) if run_dir else None
            if value is None:
                state, outcome["error"] = "failed", f"no {spec.objective} in its elbo.csv"
        if state not in ("complete", "pruned"):
            attrs["error"] = outcome.get("error")
            # Cut off (Ctrl-C, a killed process): retried on the next start, resuming its run.
            # A fit that failed by itself (it diverged) would fail again: it counts as is.
            attrs["retry"] = state == "interrupted" or outcome.get("returncode", 0) < 0
        studies.set_attrs(study, trial._trial_id, attrs)
        with self.lock:
            if state == "complete":
                study.tell(trial, value)
            elif state == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, state=TrialState.FAIL)
        self._report_line(trial.number, state, value, outcome)

    def _report_line(self, number: int, state: str, value: Any, outcome: dict) -> None:
        spec = self.result.spec
        finished = studies.finished(self.result.study)
        done = len(finished)
        self.progress.update(self.bar, completed=done, best=self._best_text())
        took = format_duration(outcome.get("wall_s"))
        if state == "complete":
            what = f"[green]complete[/] {spec.objective} {value:.4g}"
        elif state == "pruned":
            what = "[yellow]pruned[/]"
        else:
            what = f"[red]{state}[/]: {escape(str(outcome.get('error')))}"
        pruned = sum(1 for t in finished if t.state.name == "PRUNED")
        self.console.print(
            f"  trial {number} {what} in {took} · {done}/{spec.trials} finished, {pruned} "
            f"pruned · {self._best_text()}",
            highlight=False,
        )

    def _best_text(self) -> str:
        best = best_trial(self.result.study)
        if best is None:
            return "best: none yet"
        return f"best {self.result.spec.objective} {best.value:.4g} (trial {best.number})"


def _wait_all(events: list[threading.Event]) -> None:
    for event in events:
        while not event.wait(timeout=0.5):
            pass


def best_trial(study: Any) -> Any:
    """The best complete trial, or None (Optuna raises when there is none)."""
    from optuna.trial import TrialState  # lazy: imports Optuna

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    return study.best_trial


def objective_value(run_dir: Path, weights: dict[str, float]) -> float | None:
    """The objective at the iteration the run kept (its best validation under early stopping,
    else its last), from its elbo.csv."""
    columns = read_elbo_csv(run_dir)
    if columns is None:
        return None
    status = read_status(run_dir)
    kept = status.get("kept_iteration", status.get("iterations_done"))
    rows = [i for i, it in enumerate(columns["iteration"]) if it == kept]
    if not rows:
        return None
    return objective_of({k: float(v[rows[-1]]) for k, v in columns.items()}, weights)


def describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class RayRunner:
    """Each trial as one Ray task (its `bnn train` process runs on whichever node takes it;
    that node must reach the study's storage: a shared file, or a database server)."""

    def __init__(self, address: str | None, log_file: Path | None):
        self.ray = import_ray()
        self.started = not self.ray.is_initialized()  # shut down at the end only if so
        if self.started:
            join_cluster(self.ray, address, log_file)
        self.remote = self.ray.remote(run_point).options(num_cpus=1, max_retries=0)
        self.inflight: set = set()

    def __call__(self, task: Task) -> dict[str, Any]:
        ref = self.remote.remote(task)
        self.inflight.add(ref)
        try:
            return self.ray.get(ref)
        except Exception as exc:  # the worker died, the task was cancelled, Ray failed
            state = "interrupted" if STOPPING.is_set() else "failed"
            return {**ray_failure(exc, state), "returncode": -9}  # cut off: retried
        finally:
            self.inflight.discard(ref)

    def cancel_all(self) -> None:
        """Ctrl-C: a cancelled task gets KeyboardInterrupt, which stops its run (saved)."""
        for ref in list(self.inflight):
            self.ray.cancel(ref)


def _ray_shutdown(log_file: Path | None) -> None:
    import ray  # lazy: imports Ray

    if ray.is_initialized():
        with ray_logs_to(log_file):
            ray.shutdown()


def _progress(console: Console) -> Progress:
    return progress_bar(
        console,
        "{task.description}",
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
    )
