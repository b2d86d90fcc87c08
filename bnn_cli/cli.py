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
from bnn_cli.errors import BnnError, ExitCode

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
    "--ood",
    multiple=True,
    metavar="DATASET",
    help="Out-of-distribution set to check (repeatable; default: the config's evaluate.ood). "
    "Uses its test images, or its training images with --split val.",
)
def evaluate(
    run_dir: str,
    draws: int | None,
    split: str,
    data_dir: str | None,
    allow_incomplete: bool,
    ood: tuple[str, ...],
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
        ood=ood or None,
    )
    out_console.print(str(Path(run_dir) / "report.html"), soft_wrap=True, highlight=False)


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
