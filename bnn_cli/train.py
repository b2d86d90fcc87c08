"""`bnn train`: config -> data -> pm.Model -> minibatch ADVI -> runs/<id>/ (-> evaluate).

Every exit path leaves the run directory honest: `complete` only when everything is written,
`interrupted` (parameters so far saved) on Ctrl-C, `failed` with the reason on divergence or error.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bnn_cli import __version__, atomic
from bnn_cli.atomic import signals_held
from bnn_cli.config import Config, config_yaml
from bnn_cli.errors import BnnError
from bnn_cli.runs import utc_now

logger = logging.getLogger(__name__)

ELBO_COLUMNS = ("iteration", "loss", "elapsed_s", "val_accuracy", "val_nll", "val_mi")
DIAGNOSTICS_COLUMNS = ("iteration", "tensor", "size", "median_sigma", "share_snr_below_1")


def train_and_evaluate(
    config: Config,
    runs_dir: Path,
    data_dir: str | None,
    evaluate: bool,
    console: Console,
    argv: list[str] | None = None,
) -> Path:
    if evaluate:  # a missing OOD set is reported now, not after the fit
        from bnn_cli.data.datasets import load_ood_images

        for name in config.evaluate.ood:
            load_ood_images(name, data_dir, "test", 0)
    run_dir = train(config, runs_dir, data_dir, console, argv)
    if evaluate:
        from bnn_cli.evaluate import evaluate_run

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
) -> Path:
    """Fit the configured model and write a complete run directory; return its path."""
    from bnn_cli.data.datasets import load_splits

    # The data and the runs directory first: a missing file or an unwritable directory is
    # reported at once, before PyTensor is even imported.
    splits = load_splits(
        config.data.dataset, data_dir, config.data.train_size, config.data.val_size
    )
    from bnn_cli import runs

    run_dir = runs.create_run_dir(runs_dir, config.name)
    # From here on every way out leaves the run directory saying how it ended.
    try:
        from bnn_cli import backend

        mode = backend.configure(config.inference.floatX, config.inference.backend)
        atomic.atomic_write_text(run_dir / "config.yaml", config_yaml(config))
        atomic.atomic_write_json(run_dir / "meta.json", run_metadata(config, mode, argv))
        runs.write_status(
            run_dir,
            "running",
            iterations_done=0,
            iterations_total=config.inference.iterations,
            pid=os.getpid(),
            host=platform.node(),  # with pid: lets `evaluate` tell a killed run from a live one
        )
        console.print(f"run directory: {run_dir}", highlight=False)
        fit_into(run_dir, config, splits, mode, console)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into one by the CLI
        cause = str(exc) or "Ctrl-C"
        with signals_held():
            if (run_dir / "approx.npz").is_file():
                message = (
                    f"stopped by {cause}; the parameters so far are saved "
                    "(evaluate with --allow-incomplete)"
                )
            else:
                message = f"stopped by {cause} before the first checkpoint; no parameters saved"
            mark_ended(run_dir, "interrupted", message=message)
        console.print(f"run {run_dir} interrupted: {message}", highlight=False)
        raise
    except BnnError as exc:
        mark_ended(run_dir, "failed", message=str(exc))
        raise
    except Exception as exc:
        mark_ended(run_dir, "failed", message=f"{type(exc).__name__}: {exc}")
        raise
    return run_dir


def mark_ended(run_dir: Path, state: str, **fields) -> None:
    """Record how a run ended. Failing to (a full disk) must not hide the error that ended it:
    the run then keeps saying `running`, and `evaluate` tells that its process is gone."""
    from bnn_cli import runs

    try:
        runs.write_status(run_dir, state, **fields)
    except BnnError as exc:
        logger.warning("could not mark %s as %s: %s", run_dir, state, exc)


def fit_into(run_dir: Path, config: Config, splits, mode: str | None, console: Console) -> None:
    """Build, compile and fit; checkpoint to run_dir; mark the run complete."""
    from bnn_cli import diagnostics, inference, multistep, runs
    from bnn_cli.models.build import build_model
    from bnn_cli.predict import compile_predict

    settings = config.inference
    t0 = time.perf_counter()
    model = build_model(config, splits.x_train, splits.y_train)
    advi = inference.make_advi(model, settings, config.seed)
    feeder = inference.MinibatchFeeder(model, splits.x_train, splits.y_train, config.seed)
    fit = multistep.compile_fit(advi, settings, mode, feeder)
    predict_fn = compile_predict(config.model, mode)
    compile_s = time.perf_counter() - t0
    logger.info("model built and compiled in %.1f s", compile_s)
    state = inference.FitState()
    log_every = max(1, settings.eval_every // 10)
    window_start = diagnostics.window_start(settings.iterations, multistep.steps_per_call(settings))
    tracked: dict = {"rows": [], "window": None}  # diagnostics.csv rows, the window's snapshot

    def track_tensors(iteration: int, arrays: dict) -> None:
        for name, summary in diagnostics.tensor_summaries(arrays).items():
            tracked["rows"].append({"iteration": iteration, "tensor": name, **rounded(summary)})

    # Where the approximation starts (start_sigma), so the curves show the whole way from there.
    track_tensors(0, inference.mean_field_params(advi.approx))

    def checkpoint(state: inference.FitState, status: str = "running") -> None:
        arrays = inference.mean_field_params(advi.approx)
        atomic.atomic_write_npz(run_dir / "approx.npz", arrays)
        atomic.atomic_write_text(run_dir / "elbo.csv", rows_csv(state.rows, ELBO_COLUMNS))
        atomic.atomic_write_text(
            run_dir / "diagnostics.csv", rows_csv(tracked["rows"], DIAGNOSTICS_COLUMNS)
        )
        runs.write_status(
            run_dir,
            "running",
            iterations_done=state.iteration,
            wall_s=round(state.elapsed + compile_s, 2),
            compile_s=round(compile_s, 2),
        )

    def on_step(state: inference.FitState, loss: float) -> None:
        if state.iteration % log_every == 0:
            state.rows.append(elbo_row(state, log_every))
        if state.iteration == window_start and tracked["window"] is None:
            arrays = inference.mean_field_params(advi.approx)
            tracked["window"] = diagnostics.snapshot(arrays, state.iteration, state.losses)
        progress.update(
            task,
            completed=state.iteration,
            loss=inference.smoothed_loss(state.losses),
            rate=f"{state.iteration / max(state.elapsed, 1e-9):.1f} it/s",
        )

    def on_eval(state: inference.FitState) -> None:
        arrays = inference.mean_field_params(advi.approx)
        found = validate(predict_fn, arrays, config, splits)
        state.val_accuracy = found["val_accuracy"]
        if not state.rows or state.rows[-1]["iteration"] != state.iteration:
            state.rows.append(elbo_row(state, log_every))
        state.rows[-1].update(rounded(found))
        track_tensors(state.iteration, arrays)
        progress.update(
            task,
            val=f"{found['val_accuracy']:.2%} nll {found['val_nll']:.4f} mi {found['val_mi']:.4f}",
        )
        checkpoint(state)

    with make_progress(console) as progress:
        task = progress.add_task(
            "ADVI", total=settings.iterations, loss=float("nan"), val="—", rate=""
        )
        try:
            fit(state, on_eval=on_eval, on_step=on_step)
        except KeyboardInterrupt:
            with signals_held():
                checkpoint(state)
            raise
        except Exception:
            # A failed fit (divergence, a bug) saves no parameters (they may be NaN), but the
            # status still says how far it got; the caller then marks it failed with the reason.
            mark_ended(run_dir, "running", iterations_done=state.iteration)
            raise
    train_s = state.elapsed
    checkpoint(state)
    verdict = convergence(config, tracked["window"], advi, state)
    runs.write_status(
        run_dir,
        "complete",
        iterations_done=state.iteration,
        wall_s=round(train_s + compile_s, 2),
        compile_s=round(compile_s, 2),
        train_s=round(train_s, 2),
        it_per_s=round(state.iteration / max(train_s, 1e-9), 3),
        val_accuracy=state.val_accuracy,
        converged=verdict["converged"] if verdict else None,
        convergence=verdict,
        finished=runs.utc_now(),
    )
    console.print(
        f"trained {state.iteration} iterations in {train_s:.1f} s "
        f"({state.iteration / max(train_s, 1e-9):.1f} it/s, compile {compile_s:.1f} s);"
        f" validation accuracy (posterior mean) {state.val_accuracy:.2%}",
        highlight=False,
    )
    if verdict and not verdict["converged"]:
        console.print(f"[bold yellow]warning:[/] {verdict['message']}", highlight=False)


def validate(predict_fn, arrays: dict, config: Config, splits) -> dict[str, float]:
    """The validation figures tracked during a fit: accuracy with the posterior-mean weights,
    and the NLL and mean mutual information of the predictive from `evaluate.val_draws`
    draws (the same seeded draws at every validation, so the curves show the fit, not noise)."""
    from bnn_cli import metrics
    from bnn_cli.predict import accuracy_of_mean, predictive

    if len(splits.y_val) == 0:  # data.val_size 0: nothing to validate on
        return {"val_accuracy": float("nan"), "val_nll": float("nan"), "val_mi": float("nan")}
    probs = predictive(
        predict_fn,
        arrays,
        config.model,
        splits.x_val,
        config.evaluate.val_draws,
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


def convergence(config: Config, window, advi, state) -> dict | None:
    """The verdict on the last 10 % of the fit (None if the fit never reached that window)."""
    from bnn_cli import diagnostics, inference

    if window is None:
        return None
    settings = config.inference
    advice = (
        f"Raise inference.iterations (now {settings.iterations}) or inference.rho_lr_scale "
        f"(now {settings.rho_lr_scale:g}) and compare the validation NLL."
    )
    return diagnostics.convergence_verdict(
        window,
        inference.mean_field_params(advi.approx),
        state.iteration,
        state.losses,
        inference.rho_step_sum(settings, window.iteration, state.iteration),
        advice,
    )


def rounded(summary: dict) -> dict:
    return {k: v if isinstance(v, int) else float(f"{v:.6g}") for k, v in summary.items()}


def elbo_row(state, log_every: int) -> dict:
    recent = state.losses[-log_every:]
    return {
        "iteration": state.iteration,
        "loss": round(float(np.mean(recent)), 4),
        "elapsed_s": round(state.elapsed, 3),
        "val_accuracy": "",
        "val_nll": "",
        "val_mi": "",
    }


def rows_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TextColumn("val {task.fields[val]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def run_metadata(config: Config, mode: str | None, argv: list[str] | None) -> dict:
    import pytensor

    from bnn_cli.multistep import steps_per_call
    from bnn_cli.versions import installed_versions, lock_status

    return {
        "bnn_version": __version__,
        "python": sys.version.split()[0],
        "versions": installed_versions(),  # pymc, pytensor, numpy, jax, ...
        "lock": lock_status(),  # are they requirements.lock's? (None: no lock file)
        "host": platform.node(),
        "platform": platform.platform(),
        "command_line": list(argv or sys.argv),
        "git_commit": git_commit(),
        "seeds": {
            "config": config.seed,
            "advi": config.seed,
            "initial_weights": [config.seed, 1],
            "predictive": [config.seed, 2],  # also the validation draws during training
            "minibatch_order": [config.seed, 4],
        },
        "pytensor": {
            "floatX": pytensor.config.floatX,
            "backend": config.inference.backend,
            "blas_ldflags": pytensor.config.blas__ldflags,
            "steps_per_call": steps_per_call(config.inference),
        },
        "started": utc_now(),
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
