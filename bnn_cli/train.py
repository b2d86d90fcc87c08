"""`bnn train`: config -> data -> pm.Model -> minibatch ADVI -> runs/<id>/ (-> evaluate).

Every exit path leaves the run directory honest: `complete` only when everything is written,
`interrupted` (parameters so far saved) on Ctrl-C, `failed` with the reason on divergence or error.
`resume` (`bnn train --resume RUN_DIR`) goes on with a run cut off, from its last checkpoint, in
its own directory and through the same exit paths (`run_to_end`).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bnn_cli import atomic, runs, seeds
from bnn_cli.atomic import signals_held
from bnn_cli.config import Config, config_yaml
from bnn_cli.console import progress_bar, warning
from bnn_cli.data.datasets import load_ood_images, load_splits
from bnn_cli.ensemble import is_ensemble, train_ensemble
from bnn_cli.errors import BnnError, RunError
from bnn_cli.fit import callbacks, diagnostics, loop
from bnn_cli.fit import resume as fit_resume
from bnn_cli.fit.callbacks import describe_metric
from bnn_cli.fit.loop import Callback, FitState, Pruned
from bnn_cli.posterior import params
from bnn_cli.report import metrics
from bnn_cli.runs import files
from bnn_cli.versions import installed_versions, lock_status

if TYPE_CHECKING:
    from bnn_cli.fit import resume as fit_resume

logger = logging.getLogger(__name__)


def train_and_evaluate(
    config: Config | None,
    runs_dir: Path,
    data_dir: str | None,
    evaluate: bool,
    console: Console,
    argv: list[str] | None = None,
    executor: dict | None = None,
    callbacks: Sequence[Callback] = (),
    resume_dir: Path | None = None,
) -> Path:
    """Train (one fit, or an ensemble's members on `executor`: `ensemble.train_ensemble`'s
    executor, jobs and address) and, unless told not to, evaluate on the test split.
    `callbacks` run after the fit's own at every block (a tuner's pruner); a pruned run is
    not evaluated. With `resume_dir` (and no config), go on with that run instead: its own
    config.yaml decides."""
    found = None
    if resume_dir is not None:  # refused before anything else is looked at
        found = resumable(Path(resume_dir))
        config = found[0]
        data_dir = runs.run_data_dir(Path(resume_dir), data_dir)
    if config is None:
        raise ValueError("train_and_evaluate needs a config, or a run directory to resume")
    if evaluate:  # a missing OOD set is reported now, not after the fit
        for name in config.evaluate.ood:
            load_ood_images(name, data_dir, "test", 0)
    if found is not None and resume_dir is not None:
        run_dir = resume(Path(resume_dir), data_dir, console, argv, callbacks, found)
    elif config.inference.ensemble:
        run_dir = train_ensemble(config, runs_dir, data_dir, console, argv, **(executor or {}))
    else:
        run_dir = train(config, runs_dir, data_dir, console, argv, callbacks)
    if evaluate and runs.read_status(run_dir)["state"] != "pruned":
        from bnn_cli.posterior.evaluate import evaluate_run  # lazy: imports PyTensor, SciPy

        evaluate_run(
            run_dir,
            draws=None,
            split="test",
            data_dir=data_dir,
            allow_incomplete=False,
            console=console,
        )
    return run_dir


def train(
    config: Config,
    runs_dir: Path,
    data_dir: str | None,
    console: Console,
    argv: list[str] | None = None,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Fit the configured model and write a complete (or, when a callback raised `Pruned`,
    pruned) run directory; return its path."""
    # The data and the runs directory first: a missing file or an unwritable directory is
    # reported at once, before PyTensor is even imported.
    splits = load_splits(
        config.data.dataset, data_dir, config.data.train_size, config.data.val_size
    )
    run_dir = runs.create_run_dir(runs_dir, config.name)

    def start() -> Fit:
        from bnn_cli.engine import backend  # lazy: imports PyTensor

        mode = backend.configure(config.inference.floatX, config.inference.backend)
        atomic.atomic_write_text(run_dir / "config.yaml", config_yaml(config))
        meta = files.new_meta(run_metadata(config, argv), data_dir)
        files.write_meta(run_dir, meta)
        runs.write_status(
            run_dir,
            "running",
            iterations_done=0,
            iterations_total=config.inference.iterations,
            pid=os.getpid(),
            host=platform.node(),  # with pid: lets `evaluate` tell a killed run from a live one
        )
        console.print(f"run directory: {run_dir}", highlight=False)
        print_backend(console, meta["pytensor"])
        return Fit(run_dir, config, splits, mode)

    run_to_end(
        run_dir, console, start, callbacks, "before the first checkpoint; no parameters saved"
    )
    return run_dir


def resume(
    run_dir: Path,
    data_dir: str | None,
    console: Console,
    argv: list[str] | None = None,
    callbacks: Sequence[Callback] = (),
    found: tuple[Config, fit_resume.Saved] | None = None,
) -> Path:
    """Go on with a run that was cut off (interrupted, killed, pruned, failed) from its last
    checkpoint, in its own directory, to the end: the parameters it ends with are those of a
    fit that never stopped, bit for bit. Refuses (RunError) a run that cannot be resumed;
    `found` is what `resumable(run_dir)` returned, when the caller has asked already."""
    run_dir = Path(run_dir)
    config, saved = found or resumable(run_dir)
    splits = load_splits(
        config.data.dataset,
        runs.run_data_dir(run_dir, data_dir),
        config.data.train_size,
        config.data.val_size,
    )

    def start() -> Fit:
        from bnn_cli.engine import backend  # lazy: imports PyTensor
        from bnn_cli.fit.steppers import steps_per_call  # lazy: imports PyMC, PyTensor

        mode = backend.configure(config.inference.floatX, config.inference.backend)
        pt_meta = {
            "backend": config.inference.backend,
            "device": backend.device(config.inference.backend),
            "steps_per_call": steps_per_call(config.inference),
        }
        record_resume(run_dir, saved.iteration, argv, pt_meta)
        runs.write_status(
            run_dir,
            "running",
            clear=("message", "finished"),  # how it ended before: no longer true
            iterations_done=saved.iteration,
            pid=os.getpid(),
            host=platform.node(),
        )
        console.print(
            f"resuming run {run_dir} at iteration {saved.iteration} of "
            f"{config.inference.iterations}",
            highlight=False,
        )
        print_backend(console, pt_meta)
        fit = Fit(run_dir, config, splits, mode)
        fit.restore(saved)
        return fit

    cut = f"before the fit resumed; its checkpoint (iteration {saved.iteration}) is kept"
    run_to_end(run_dir, console, start, callbacks, cut)
    return run_dir


def resumable(run_dir: Path) -> tuple[Config, fit_resume.Saved]:
    """The run's config and checkpoint, or a RunError saying why it cannot be resumed and what
    to do instead."""
    run = runs.open_run(run_dir, allow_incomplete=True)  # a directory, a status, a config
    name, status = run_dir.name, run.status
    if is_ensemble(run_dir):
        raise RunError(
            f"'{name}' is an ensemble: train its config again to resume it (bnn train "
            f"{run_dir / 'config.yaml'} --runs-dir {run_dir.parent}); complete members are "
            "kept and cut-off ones resume"
        )
    if status["state"] == "complete":
        raise RunError(f"run '{name}' is complete: there is nothing to resume")
    if status["state"] == "running" and not runs.process_gone(status):
        pid, host = status.get("pid"), status.get("host")
        where = f"pid {pid}" + (f" on {host}" if host and host != platform.node() else "")
        raise RunError(
            f"run '{name}' is still running ({where}): wait for it to finish, or stop it "
            "before resuming"
        )
    config = runs.run_config(run)
    if not fit_resume.exists(run_dir):
        raise RunError(
            f"run '{name}' has no checkpoint to resume from: it stopped before its first "
            f"validation (iteration {config.inference.eval_every}); train it again"
        )
    saved = fit_resume.load(run_dir)
    if not fit_resume.matches(saved, config):
        raise RunError(
            f"run '{name}': config.yaml is not the configuration its checkpoint was written "
            "with; put it back as it was, or train the new config as a new run"
        )
    return config, saved


def record_resume(run_dir: Path, iteration: int, argv: list[str] | None, pt_meta: dict) -> None:
    """meta.json's `resumed`: one entry per resume (where, when, by which command, on what)."""
    meta = files.read_meta(run_dir)
    if meta is None:
        meta = {}  # a damaged meta.json must not stop the fit: keep what is known now
    meta.setdefault("resumed", []).append(
        {
            "iteration": iteration,
            "utc": runs.utc_now(),
            "command_line": list(argv or sys.argv),
            "host": platform.node(),
            "pid": os.getpid(),
            "pytensor": pt_meta,
        }
    )
    files.write_meta(run_dir, meta)


def print_backend(console: Console, pt_meta: dict) -> None:
    console.print(
        f"fitting with PyTensor's {pt_meta['backend']} backend on {pt_meta['device']}, "
        f"{pt_meta['steps_per_call']} step(s) per call",
        highlight=False,
    )


def run_to_end(
    run_dir: Path,
    console: Console,
    start: Callable[[], Fit],
    callbacks: Sequence[Callback],
    cut_short: str,
) -> None:
    """`start()` the fit and run it to the end. From here on every way out leaves the run
    directory saying how it ended: the one place that handles Ctrl-C (and SIGTERM, which the
    CLI turns into it) and failures, for a new fit and a resumed one alike. `cut_short` says
    what a Ctrl-C before the fit began leaves."""
    fit = None
    try:
        fit = start()
        fit.run(console, callbacks)
    except Pruned as pruned:
        assert fit is not None  # only a running fit's callbacks prune it
        with signals_held():
            fit.checkpoint.save(fit.state)
            runs.mark_ended(run_dir, "pruned", message=str(pruned), finished=runs.utc_now())
        console.print(f"run {run_dir} pruned: {pruned}", highlight=False)
    except KeyboardInterrupt as exc:
        cause = str(exc) or "Ctrl-C"
        with signals_held():
            if fit is not None:
                fit.checkpoint.save(fit.state)
                message = (
                    f"stopped by {cause}; the parameters so far are saved ({next_steps(run_dir)})"
                )
            else:
                message = f"stopped by {cause} {cut_short}"
            runs.mark_ended(run_dir, "interrupted", message=message)
        console.print(f"run {run_dir} interrupted: {message}", highlight=False)
        raise
    except Exception as exc:
        # A failed fit (divergence, a bug) saves no parameters (they may be NaN), but the
        # status says how far it got and why it ended.
        reason = str(exc) if isinstance(exc, BnnError) else f"{type(exc).__name__}: {exc}"
        done = {"iterations_done": fit.state.iteration} if fit is not None else {}
        runs.mark_ended(run_dir, "failed", message=reason, **done)
        raise


def next_steps(run_dir: Path) -> str:
    """What a user can do with a run cut off after some iterations."""
    if fit_resume.exists(run_dir):
        return f"resume with bnn train --resume {run_dir}, or evaluate with --allow-incomplete"
    return "evaluate with --allow-incomplete"


class Fit:
    """One run's fit: the model and its approximation compiled, the stepper, and the callbacks
    that validate, checkpoint and (when asked) stop early; `run` fits and marks it complete."""

    def __init__(self, run_dir: Path, config: Config, splits: Any, mode: str | None) -> None:
        from bnn_cli.fit import (  # lazy: imports PyMC, PyTensor
            advi,
            callbacks,
            diagnostics,
            feeder,
            loop,
            steppers,
        )
        from bnn_cli.models.build import build_model  # lazy: imports PyMC, PyTensor
        from bnn_cli.posterior.predictive import compile_predict  # lazy: imports PyTensor

        settings = config.inference
        self.run_dir, self.config = run_dir, config
        t0 = time.perf_counter()
        model = build_model(config, splits.x_train, splits.y_train)
        from bnn_cli.fit.objective import bound_of  # lazy: imports PyMC
        from bnn_cli.models.architecture import param_specs  # lazy: imports PyTensor
        from bnn_cli.models.priors import point_estimates  # lazy: imports PyTensor

        points = point_estimates(param_specs(config.model), config.prior)
        self.advi = advi.make_advi(model, settings, config.seed, points, bound_of(config))
        batches = feeder.MinibatchFeeder(model, splits.x_train, splits.y_train, config.seed)
        self.stepper = steppers.make_stepper(self.advi, settings, mode, batches)
        predict_fn = compile_predict(config.model, mode)
        self.compile_s = time.perf_counter() - t0
        logger.info("model built and compiled in %.1f s", self.compile_s)
        self.state = loop.FitState()
        # Where the approximation starts (start_sigma), so the curves show the whole way.
        callbacks.record_tensors(self.state, 0, params.from_approx(self.advi.approx))
        opens = diagnostics.window_start(settings.iterations, self.stepper.k)
        self.window = callbacks.ConvergenceWindow(opens)
        self.early = callbacks.EarlyStopping.from_settings(settings)
        self.checkpoint = callbacks.Checkpoint(
            run_dir, settings, self.compile_s, self.kept, self.save_resumable
        )
        self.callbacks: list[Callback] = [
            callbacks.LossLog(callbacks.log_every(settings)),
            self.window,
            callbacks.Validation(
                lambda arrays: validation_figures(predict_fn, arrays, config, splits), settings
            ),
        ]

    def kept(self) -> dict:
        """The parameters this fit would keep now: its best validation point under early
        stopping, else the current ones."""
        if self.early is not None and self.early.best is not None:
            return self.early.best.arrays
        return params.from_approx(self.advi.approx)

    def save_resumable(self, state: FitState) -> None:

        early, window = self.early, self.window
        fit_resume.save(
            self.run_dir, self.config, self.stepper, state, early, window, self.compile_s
        )

    def restore(self, saved: Any) -> None:
        """Go on from a checkpoint (`fit.resume.Saved`) of the same config. The compile time
        counts every process's: wall_s is what the whole fit cost."""
        earlier = fit_resume.restore(saved, self.stepper, self.state, self.early, self.window)
        self.compile_s += earlier
        self.checkpoint.compile_s = self.compile_s

    def run(self, console: Console, extra: Sequence[Callback] = ()) -> None:
        """Fit, with `extra` callbacks after the fit's own (after the checkpoint, so a run they
        end has its last validation saved), and mark the run complete."""
        settings, state = self.config.inference, self.state
        with make_progress(console) as progress:
            task = progress.add_task(
                "ADVI",
                total=settings.iterations,
                completed=state.iteration,  # a resumed fit's earlier iterations
                loss=float("nan"),
                val="—",
                rate="",
            )
            bar = callbacks.ProgressBar(progress, task)
            early = [self.early] if self.early is not None else []
            every: list[Callback] = [*self.callbacks, bar, *early, self.checkpoint, *extra]
            loop.run_fit(self.stepper, self.advi.approx, settings, state, every)
        train_s = state.elapsed
        verdict = self.verdict()
        if self.early is not None and self.early.best is not None:
            params.to_approx(self.advi.approx, self.early.best.arrays)
        self.checkpoint.save(state)
        kept = self.early.best.iteration if self.early and self.early.best else state.iteration
        runs.write_status(
            self.run_dir,
            "complete",
            iterations_done=state.iteration,
            kept_iteration=kept,
            stopped_early=state.stopped is not None,
            wall_s=round(train_s + self.compile_s, 2),
            compile_s=round(self.compile_s, 2),
            train_s=round(train_s, 2),
            it_per_s=round(state.iteration / max(train_s, 1e-9), 3),
            val_accuracy=state.val_accuracy,
            converged=verdict["converged"] if verdict else None,
            convergence=verdict,
            finished=runs.utc_now(),
        )
        fit_resume.discard(self.run_dir)  # a complete run is not resumed: the file would only weigh
        console.print(
            f"trained {state.iteration} iterations in {train_s:.1f} s "
            f"({state.iteration / max(train_s, 1e-9):.1f} it/s, compile {self.compile_s:.1f} s);"
            f" validation accuracy (posterior mean) {state.val_accuracy:.2%}",
            highlight=False,
        )
        if verdict and verdict.get("stopped_on_validation"):
            console.print(verdict["message"], highlight=False)
        elif verdict and not verdict["converged"]:
            warning(console, verdict["message"])

    def verdict(self) -> dict | None:
        """How the fit ended. A fit that kept an earlier point than its last (early stopping)
        was chosen on validation: that is the verdict. Otherwise the convergence verdict on the
        last 10 % of iterations (None if the fit never reached that window)."""
        from bnn_cli.fit.advi import rho_step_sum  # lazy: imports PyMC, PyTensor

        settings, state, early = self.config.inference, self.state, self.early
        best = early.best if early is not None else None
        if early is not None and best and (state.stopped or best.iteration < state.iteration):
            message = state.stopped or (
                f"ran all {state.iteration} iterations; kept iteration {best.iteration}, the best "
                f"on validation ({describe_metric(early.metric, best.value)})"
            )
            return diagnostics.validation_verdict(
                early.metric, best.iteration, best.value, state.iteration, message
            )
        window = self.window.snapshot
        if window is None:
            return None
        point = settings.method == "map"
        advice = (
            f"Raise inference.iterations (now {settings.iterations})"
            + ("" if point else f" or inference.rho_lr_scale (now {settings.rho_lr_scale:g})")
            + " and compare the validation NLL."
        )
        return diagnostics.convergence_verdict(
            window,
            params.from_approx(self.advi.approx),
            state.iteration,
            state.losses,
            rho_step_sum(settings, window.iteration, state.iteration),
            advice,
            diagnostics.UNSETTLED_POINT if point else diagnostics.STEP_LIMIT,
        )


def make_progress(console: Console) -> Progress:
    return progress_bar(
        console,
        "{task.description}",
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TextColumn("val {task.fields[val]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def validation_figures(
    predict_fn: Callable[..., Any], arrays: dict, config: Config, splits: Any
) -> dict[str, float]:
    """The fit's validation (`fit.callbacks.Validation`): accuracy with the posterior-mean
    weights, the NLL and mean mutual information of `evaluate.val_draws` seeded draws (the same
    draws at every validation, so the curves show the fit, not noise)."""
    from bnn_cli.posterior.predictive import accuracy_of_mean, predictive  # PyTensor

    if len(splits.y_val) == 0:  # no validation images: nothing to validate on
        return {"val_accuracy": math.nan, "val_nll": math.nan, "val_mi": math.nan}
    probs = predictive(
        predict_fn,
        arrays,
        config.model,
        splits.x_val,
        config.draws(validation=True),
        config.seed,
        chunk_size=config.evaluate.chunk_size,
    )
    _, _, mutual_information = metrics.entropy(probs)
    return {
        "val_accuracy": accuracy_of_mean(
            predict_fn, arrays, config.model, splits.x_val, splits.y_val
        ),
        "val_nll": metrics.nll(probs, splits.y_val),
        "val_mi": float(mutual_information.mean()),
    }


def run_metadata(config: Config, argv: list[str] | None) -> dict:
    """What meta.json records of a fit (`runs.files.new_meta` adds bnn's version and the data
    directory)."""
    import pytensor  # lazy: imports PyTensor

    from bnn_cli.engine import backend  # lazy: imports PyTensor
    from bnn_cli.fit.steppers import steps_per_call  # lazy: imports PyMC, PyTensor

    return {
        "python": sys.version.split()[0],
        "versions": installed_versions(),  # pymc, pytensor, numpy, jax, ...
        "lock": lock_status(),  # are they requirements.lock's? (None: no lock file)
        "host": platform.node(),
        "platform": platform.platform(),
        "command_line": list(argv or sys.argv),
        "git_commit": git_commit(),
        "seeds": seeds.recorded(config.seed),
        "pytensor": {
            "floatX": pytensor.config.floatX,
            "backend": config.inference.backend,
            "device": backend.device(config.inference.backend),
            "blas_ldflags": pytensor.config.blas__ldflags,
            "steps_per_call": steps_per_call(config.inference),
        },
        "started": runs.utc_now(),
    }


def git_commit() -> str | None:
    """The commit of the bnn source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
