"""The `bnn` command line: click commands only. Each parses, calls one function, and maps the
project's errors to the documented exit codes (one error boundary, in `main`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console

from bnn_cli import __version__
from bnn_cli.errors import BnnError, DataError, ExitCode

# Progress bars and tables go to stderr so that stdout carries only results (the run path).
err_console = Console(stderr=True)
out_console = Console()


def _runs_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("BNN_RUNS_DIR") or "runs")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnn")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Bayesian neural network experiments on PyMC: download, train, evaluate, compare."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.command("download-mnist")
@click.option(
    "--dataset", type=click.Choice(["mnist", "fashion-mnist"]), default="mnist", show_default=True
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Default: $BNN_DATA_DIR, else the user cache directory.",
)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL_OR_DIR",
    help="Tried before the built-in mirrors; repeatable.",
)
@click.option("--force", is_flag=True, help="Download again even if verified files are present.")
def download_mnist(
    dataset: str, data_dir: str | None, mirrors: tuple[str, ...], force: bool
) -> None:
    """Fetch a dataset from its mirrors, verify every file, and store it atomically."""
    from bnn_cli.data.datasets import resolve_data_dir
    from bnn_cli.data.download import download_dataset

    target = download_dataset(
        dataset, resolve_data_dir(data_dir), list(mirrors), force=force, console=err_console
    )
    out_console.print(str(target), soft_wrap=True, highlight=False)


@cli.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a dotted config key, e.g. --set inference.iterations=2000.",
)
@click.option("--runs-dir", type=click.Path(file_okay=False))
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--no-eval", is_flag=True, help="Skip the evaluation after training.")
def train(
    config_path: str,
    overrides: tuple[str, ...],
    runs_dir: str | None,
    data_dir: str | None,
    no_eval: bool,
) -> None:
    """Build the PyMC model, fit it with minibatch ADVI, and write runs/<id>/."""
    from bnn_cli.config import load_config
    from bnn_cli.train import train_and_evaluate

    config = load_config(Path(config_path), list(overrides))
    run_dir = train_and_evaluate(
        config,
        _runs_dir(runs_dir),
        data_dir,
        evaluate=not no_eval,
        console=err_console,
        argv=sys.argv,
    )
    out_console.print(str(run_dir), soft_wrap=True, highlight=False)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--draws", type=click.IntRange(min=1), help="Posterior draws (default: config).")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Evaluate an interrupted run from the parameters it saved.",
)
@click.option(
    "--save-predictive",
    is_flag=True,
    help="Also write predictive.nc: the predictive probabilities as ArviZ InferenceData.",
)
def evaluate(
    run_dir: str,
    draws: int | None,
    split: str,
    data_dir: str | None,
    allow_incomplete: bool,
    save_predictive: bool,
) -> None:
    """Posterior predictive on a trained run: metrics, per-class uncertainty, plots, report."""
    from bnn_cli.evaluate import evaluate_run

    evaluate_run(
        Path(run_dir),
        draws=draws,
        split=split,
        data_dir=data_dir,
        allow_incomplete=allow_incomplete,
        console=err_console,
        save_predictive=save_predictive,
    )
    out_console.print(str(Path(run_dir) / "report.html"), soft_wrap=True, highlight=False)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=click.Path())
@click.option("--draws", type=click.IntRange(min=1), help="Posterior draws (default: config).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@click.option(
    "--keep-going", is_flag=True, help="Answer the readable images when some cannot be read."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the run's dataset is (its validation images set the 'uncertain' threshold).",
)
def predict(
    run_dir: str,
    images: tuple[str, ...],
    draws: int | None,
    as_json: bool,
    as_csv: bool,
    keep_going: bool,
    data_dir: str | None,
) -> None:
    """Classify your own digit images with a trained run, with the posterior's uncertainty.

    IMAGE is a PNG, JPEG or any other picture Pillow reads, or an .npy or IDX file of 28x28
    images in MNIST's format (white digit on black, uint8 0-255 or floats 0-1), taken as is.
    Pictures are made the way MNIST was: grayscale (transparent parts over white), inverted
    when the digit is dark on a light background, the digit fitted into a 20x20 box keeping its
    aspect ratio and placed in 28x28 with its centre of mass at the centre. Pictures of more
    than 40 megapixels and modes other than 1-bit, 8-bit grayscale, palette, RGB(A) (e.g. CMYK,
    16-bit) are refused.

    Per image: the predicted class, its probability, the predictive entropy, the mutual
    information (epistemic uncertainty) and "uncertain": the entropy is above the one that 95 %
    of the run's validation images fall below (computed once, cached in the run directory).
    An unreadable image is an error (exit 3) naming the file; with --keep-going the other
    images are still answered, then the command exits 3.
    """
    from bnn_cli.classify import predict_files, print_answers

    if as_json and as_csv:
        raise click.UsageError("--json and --csv cannot be used together")
    prediction = predict_files(
        Path(run_dir),
        [Path(p) for p in images],
        draws=draws,
        data_dir=data_dir,
        keep_going=keep_going,
        console=err_console,
    )
    for message in prediction.errors:
        print(f"error: {message}", file=sys.stderr)
    print_answers(prediction, "json" if as_json else "csv" if as_csv else "table", out_console)
    if prediction.errors:
        raise DataError(
            f"{len(prediction.errors)} of {len(images)} files could not be read (see above)"
        )


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also write a CSV.")
def compare(run_dirs: tuple[str, ...], csv_path: str | None) -> None:
    """A table of runs sorted by accuracy."""
    from bnn_cli.compare import compare_runs

    compare_runs(
        [Path(d) for d in run_dirs], Path(csv_path) if csv_path else None, console=out_console
    )


@cli.command()
@click.argument("sweep_path", metavar="SWEEP.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: processes on this machine; ray: one Ray task per point.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Points at a time (local: default 1; ray: default as many as the cluster fits).",
)
@click.option("--address", help="ray: join this cluster (default: $RAY_ADDRESS, else a local one).")
@click.option(
    "--cpus-per-point", type=click.IntRange(min=1), help="ray: CPUs each task asks for (1)."
)
@click.option(
    "--gpus-per-point", type=click.FloatRange(min=0), help="ray: GPUs each task asks for (0)."
)
@click.option("--runs-dir", type=click.Path(file_okay=False))
@click.option("--data-dir", type=click.Path(file_okay=False))
def sweep(
    sweep_path: str,
    executor: str,
    jobs: int | None,
    address: str | None,
    cpus_per_point: int | None,
    gpus_per_point: float | None,
    runs_dir: str | None,
    data_dir: str | None,
) -> None:
    """Train every point of a sweep file; skip points already complete; summarise.

    Exit 0 when every point is complete, 1 when some failed (the others still ran), 2 when the
    sweep file or a point's config is invalid (then nothing runs).
    """
    from bnn_cli import sweep as sweeps

    ray_only = {"--address": address, "--cpus-per-point": cpus_per_point}
    ray_only["--gpus-per-point"] = gpus_per_point
    for flag, value in ray_only.items():
        if executor != "ray" and value is not None:
            raise click.UsageError(f"{flag} needs --executor ray")
    spec = sweeps.load_sweep(Path(sweep_path))
    result = sweeps.run_sweep(
        spec,
        _runs_dir(runs_dir),
        data_dir,
        console=err_console,
        executor=executor,
        jobs=jobs,
        address=address,
        cpus_per_point=cpus_per_point or 1,
        gpus_per_point=gpus_per_point or 0,
    )
    sweeps.print_summary(result, out_console)
    sweeps.raise_if_failed(result)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _interrupt_on_termination() -> None:
    """SIGTERM (a scheduler, `kill`, `timeout`) and SIGHUP (the terminal closed) stop a command
    the way Ctrl-C does: the run is marked `interrupted` with its parameters so far, not left
    saying `running`. A signal the caller set to be ignored (nohup) stays ignored."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _interrupt)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quiet_library_notices() -> None:
    """Hide notices that repeat on every run and ask nothing of the user (shown with --debug)."""
    # ArviZ (imported by PyMC) announces its refactor on every import.
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    # PyTensor's JAX backend keeps the random state in a JAX copy that it advances every step
    # (tests/test_backends.py checks the draws change and are seeded).
    warnings.filterwarnings("ignore", message="The RandomType SharedVariables")
    # float32 runs: JAX narrows PyMC's 64-bit index and constant casts (float64 runs enable x64).
    warnings.filterwarnings("ignore", message="Explicitly requested dtype")


def main() -> None:
    """Entry point: the one error boundary."""
    debug = "--debug" in sys.argv[1:]
    if not debug:
        quiet_library_notices()
    _interrupt_on_termination()
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns a KeyboardInterrupt into Abort; its message names the signal, if not Ctrl-C
        cause = exc.__cause__ if isinstance(exc, click.exceptions.Abort) else exc
        by = f" by {cause}" if isinstance(cause, KeyboardInterrupt) and str(cause) else ""
        err_console.print(f"error: interrupted{by}", style="red", highlight=False)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except BnnError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:  # the boundary: any bug becomes exit 1 with a hint
        if debug:
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (run again with --debug "
            "for the traceback)",
            file=sys.stderr,
        )
        sys.exit(ExitCode.INTERNAL)


if __name__ == "__main__":
    main()
