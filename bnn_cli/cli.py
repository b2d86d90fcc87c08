"""The `bnn` command line: click commands only. Each parses, calls one function, and maps the
project's errors to the documented exit codes (one error boundary, in `main`).

Each command imports its stage inside its function, on purpose: `bnn --help`, `--version` and a
usage error stay instant, while the stages import NumPy, SciPy, PyMC, PyTensor or Optuna."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bnn_cli.config import CHOICES, DATASET_NAMES, load_config
from bnn_cli.console import Environment
from bnn_cli.errors import SIGINT_FROM_PARENT, BnnError, DataError, ExitCode
from bnn_cli.report.tables import FORMATS, emit
from bnn_cli.versions import __version__


def _env() -> Environment:
    """The command's `Environment`: made by `main` (or, for click's test runner, by the group)
    once per command, never at import."""
    return click.get_current_context().find_root().ensure_object(dict)["env"]


def _runs_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("BNN_RUNS_DIR") or "runs")


RUNS_DIR_HELP = "Where runs are written. Default: $BNN_RUNS_DIR, else ./runs."
DATA_DIR_DEFAULT = "Default: $BNN_DATA_DIR, else $XDG_CACHE_HOME/bnn or ~/.cache/bnn."
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]  # what click.option returns
DATA_DIR_HELP = f"Where datasets are read from and stored (DIR/<dataset>/). {DATA_DIR_DEFAULT}"


def _dir_option(name: str, help: str) -> Decorator:
    return click.option(name, type=click.Path(file_okay=False), metavar="DIR", help=help)


def _format_option(what: str) -> Decorator:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help=f"Output format of {what}: table (fits a terminal; sized to its content in a pipe or "
        "a log, never cut), markdown (pastes into an issue or a README), csv or json (for "
        "scripts: raw values).",
    )


def _executor_option(unit: str) -> Decorator:
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help=f"local: processes on this machine; ray: one Ray task per {unit}.",
    )


def _address_option() -> Decorator:
    return click.option(
        "--address",
        metavar="HOST:PORT",
        help="ray: join this cluster. Default: $RAY_ADDRESS, else a new local one. A cluster with "
        "token authentication also needs RAY_AUTH_MODE=token and its token (see the README).",
    )


def _examples(*lines: str) -> str:
    """A help epilog that click prints as written (`\b` stops it rewrapping the lines)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnn")
@click.option("--debug", is_flag=True, help="Show tracebacks, debug logs and Ray's own logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Bayesian neural network experiments on PyMC: download, train, evaluate, compare.

    Shell completion: eval "$(_BNN_COMPLETE=bash_source bnn)" (zsh_source, fish_source).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj.setdefault("env", Environment.from_streams())
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.command(
    "download-mnist",
    epilog=_examples(
        "bnn download-mnist",
        "bnn download-mnist --dataset fashion-mnist --data-dir ~/data",
        "bnn download-mnist --mirror ../shared/data/mnist   # offline, from a local copy",
    ),
)
@click.option(
    "--dataset",
    type=click.Choice(DATASET_NAMES),
    default="mnist",
    show_default=True,
    help="Which dataset to fetch.",
)
@_dir_option("--data-dir", DATA_DIR_HELP)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL_OR_DIR",
    help="An http(s):// or file:// URL or a directory holding the *.gz files, tried before the "
    "built-in mirrors; repeatable. Default: the built-in mirrors only.",
)
@click.option("--force", is_flag=True, help="Download again even if verified files are present.")
def download_mnist(
    dataset: str, data_dir: str | None, mirrors: tuple[str, ...], force: bool
) -> None:
    """Fetch a dataset from its mirrors, verify every file, and store it atomically."""
    from bnn_cli.data.datasets import resolve_data_dir
    from bnn_cli.data.download import download_dataset

    target = download_dataset(
        dataset, resolve_data_dir(data_dir), list(mirrors), force=force, console=_env().err
    )
    _env().out.print(str(target), soft_wrap=True, highlight=False)


@cli.command(
    epilog=_examples(
        "bnn train configs/mlp.yaml --set inference.iterations=2000 --set seed=1",
        "BNN_RUNS_DIR=/scratch/runs bnn train configs/conv.yaml --no-eval",
        "bnn train --resume runs/<id>   # go on with a run that was interrupted or killed",
    )
)
@click.argument(
    "config_path", metavar="[CONFIG.yaml]", required=False, type=click.Path(dir_okay=False)
)
@click.option(
    "--resume",
    "resume_dir",
    metavar="RUN_DIR",
    type=click.Path(),
    help="Instead of CONFIG.yaml: go on with a run that was interrupted, killed or pruned, from "
    "its last validation, in its own directory; it ends as an unbroken fit would, bit for bit. "
    "Default: train CONFIG.yaml as a new run.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a dotted config key, e.g. --set inference.iterations=2000; repeatable. "
    "Default: the config file as it is.",
)
@_dir_option("--runs-dir", RUNS_DIR_HELP)
@_dir_option("--data-dir", DATA_DIR_HELP)
@click.option("--no-eval", is_flag=True, help="Skip the evaluation after training.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    help="Where an ensemble's members run: local processes, or one Ray task each. Default: local.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="An ensemble's members fitted at once. Default: one per core (local); as many as "
    "the cluster fits (ray).",
)
@click.option(
    "--address",
    metavar="HOST:PORT",
    help="ray: the cluster to join for an ensemble. Default: $RAY_ADDRESS, else a new local one.",
)
# `bnn tune` runs each trial as a `bnn train` given its trial's handle (a JSON file it writes).
@click.option("--tune-trial", type=click.Path(dir_okay=False), hidden=True)
def train(
    config_path: str,
    overrides: tuple[str, ...],
    runs_dir: str | None,
    data_dir: str | None,
    no_eval: bool,
    executor: str | None,
    jobs: int | None,
    address: str | None,
    tune_trial: str | None,
    resume_dir: str | None,
) -> None:
    """Build the PyMC model, fit it with minibatch ADVI, and write runs/<id>/.

    With inference.ensemble: N, fit N members (seeds seed .. seed + N - 1) and evaluate
    their mixture; training the same config again resumes it. With --resume RUN_DIR, go on
    with that run from its last validation. The run directory's path is the last line of
    standard output.
    """
    if (config_path is None) == (resume_dir is None):
        raise click.UsageError(
            "give CONFIG.yaml to train a new run, or --resume RUN_DIR to go on with one "
            "that was cut off"
            + ("" if config_path is None else ", not both (a run keeps its own config.yaml)")
        )
    if resume_dir is not None and overrides:
        raise click.UsageError(
            "--set does not apply to --resume: the run's own config.yaml decides its numbers "
            "(train a new run to change them)"
        )
    config = load_config(Path(config_path), list(overrides)) if config_path else None
    options = (("--executor", executor), ("--jobs", jobs), ("--address", address))
    given = [flag for flag, value in options if value]
    if given and (config is None or not config.inference.ensemble):
        raise click.UsageError(
            f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to ensembles "
            "only; set inference.ensemble (e.g. --set inference.ensemble=5) or leave them out"
        )
    if address and executor != "ray":
        raise click.UsageError("--address needs --executor ray")
    how = {"executor": executor or "local", "jobs": jobs, "address": address}
    from bnn_cli.train import train_and_evaluate  # after the checks: a bad config stays instant

    extra = []
    if tune_trial:
        from bnn_cli.tune.trial import TrialReporter, read_handle

        extra.append(TrialReporter(read_handle(Path(tune_trial))))
    run_dir = train_and_evaluate(
        config,
        _runs_dir(runs_dir),
        data_dir,
        evaluate=not no_eval,
        console=_env().err,
        argv=sys.argv,
        executor=how,
        callbacks=extra,
        resume_dir=Path(resume_dir) if resume_dir else None,
    )
    _env().out.print(str(run_dir), soft_wrap=True, highlight=False)


@cli.command(
    epilog=_examples(
        "bnn evaluate runs/20260101-120000-smoke-1a2b3c",
        "bnn evaluate runs/<id> --split val --ood fashion-mnist   # choosing settings",
        "bnn evaluate runs/<id> --shift rotate --draws 20   # rotated test digits",
    )
)
@click.argument("run_dir", type=click.Path())
@click.option(
    "--draws",
    type=click.IntRange(min=1),
    metavar="N",
    help="Posterior draws. Default: the run's evaluate.draws.",
)
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="The images to evaluate on: the test set, or the validation images held out of training.",
)
@_dir_option("--data-dir", DATA_DIR_HELP)
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
@click.option(
    "--shift",
    multiple=True,
    type=click.Choice(CHOICES["evaluate.shift"]),
    help="Dataset shift to evaluate (repeatable; default: the config's evaluate.shift): rotate "
    "turns the test images by 0, 15, ..., 180 degrees and reports each angle.",
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
    ood: tuple[str, ...],
    shift: tuple[str, ...],
    save_predictive: bool,
) -> None:
    """Posterior predictive on a trained run: metrics, per-class uncertainty, plots, report.

    The report files replace the run's earlier ones as a whole, at the end.
    """
    from bnn_cli.posterior.evaluate import evaluate_run

    evaluate_run(
        Path(run_dir),
        draws=draws,
        split=split,
        data_dir=data_dir,
        allow_incomplete=allow_incomplete,
        console=_env().err,
        ood=ood or None,
        save_predictive=save_predictive,
        shift=shift or None,
    )
    _env().out.print(str(Path(run_dir) / "report.html"), soft_wrap=True, highlight=False)


def _format_shorthand(fmt: str, *, as_json: bool, as_csv: bool) -> str:
    """`bnn predict`'s old --json / --csv flags, kept working for scripts but deprecated:
    everywhere else `--csv` names a file (`bnn compare --csv FILE`) and the format is
    `--format`. Two different formats asked for is a usage error."""
    asked = {fmt} - {"table"} | ({"json"} if as_json else set()) | ({"csv"} if as_csv else set())
    if len(asked) > 1:
        raise click.UsageError(f"choose one output format, not {' and '.join(sorted(asked))}")
    for flag, used in (("json", as_json), ("csv", as_csv)):
        if used:
            _env().warning(f"--{flag} is deprecated; use --format {flag}")
    return asked.pop() if asked else "table"


@cli.command(
    epilog=_examples(
        "bnn predict runs/<id> digit.png scan.jpg",
        "bnn predict runs/<id> batch.npy --draws 200 --format csv > answers.csv",
    )
)
@click.argument("run_dir", type=click.Path())
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=click.Path())
@click.option("--draws", type=click.IntRange(min=1), help="Posterior draws (default: config).")
@_format_option("the answers")
@click.option("--json", "as_json", is_flag=True, help="Deprecated: use --format json.")
@click.option("--csv", "as_csv", is_flag=True, help="Deprecated: use --format csv.")
@click.option(
    "--keep-going", is_flag=True, help="Answer the readable images when some cannot be read."
)
@_dir_option(
    "--data-dir",
    "Where the run's dataset is read from (DIR/<dataset>/; its validation images set the "
    f"'uncertain' threshold). {DATA_DIR_DEFAULT}",
)
def predict(
    run_dir: str,
    images: tuple[str, ...],
    draws: int | None,
    fmt: str,
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
    from bnn_cli.posterior.classify import predict_files, print_answers

    fmt = _format_shorthand(fmt, as_json=as_json, as_csv=as_csv)
    prediction = predict_files(
        Path(run_dir),
        [Path(p) for p in images],
        draws=draws,
        data_dir=data_dir,
        keep_going=keep_going,
        console=_env().err,
    )
    for message in prediction.errors:
        _env().error(message)
    print_answers(prediction, fmt, _env().out)
    if prediction.errors:
        raise DataError(
            f"{len(prediction.errors)} of {len(images)} files could not be read (see above)"
        )


@cli.command(
    epilog=_examples(
        "bnn compare                          # every run in the runs directory",
        "bnn compare --last 5 --name 'mlp*' --format markdown",
        "bnn compare runs/a runs/b --plot-shift shift.png   # after bnn evaluate --shift rotate",
    )
)
@click.argument("run_dirs", metavar="[RUN_DIR]...", nargs=-1, type=click.Path())
@_dir_option(
    "--runs-dir",
    "With no RUN_DIR, compare every run in DIR (what is not a run is skipped). "
    "Default: $BNN_RUNS_DIR, else ./runs.",
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    metavar="N",
    help="Only the N newest runs. Default: all.",
)
@click.option(
    "--name",
    "name_glob",
    metavar="GLOB",
    help="Only runs whose config name matches GLOB, e.g. 'mlp*'. Default: any name.",
)
@_format_option("the table")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also write the rows as CSV to FILE. Default: no file.",
)
@click.option(
    "--plot-shift",
    "plot_path",
    type=click.Path(dir_okay=False),
    metavar="FILE.png",
    help="Also draw the rotated-images curves (bnn evaluate --shift rotate) of every run that "
    "has them into one figure. Default: no figure.",
)
def compare(
    run_dirs: tuple[str, ...],
    runs_dir: str | None,
    last: int | None,
    name_glob: str | None,
    fmt: str,
    csv_path: str | None,
    plot_path: str | None,
) -> None:
    """Runs side by side, best accuracy first; runs that cannot be ranked say why."""
    from bnn_cli.report.compare import compare_runs, plot_shift, select_runs

    if run_dirs and runs_dir:
        raise click.UsageError("give RUN_DIRs or --runs-dir, not both")
    paths = select_runs([Path(d) for d in run_dirs], _runs_dir(runs_dir), last, name_glob)
    compare_runs(paths, Path(csv_path) if csv_path else None, console=_env().out, fmt=fmt)
    if plot_path:
        plot_shift(paths, Path(plot_path))
        _env().err.print(f"rotated-images curves written to {plot_path}", highlight=False)


@cli.command(
    epilog=_examples(
        "bnn sweep configs/sweeps/sweep_smoke.yaml --jobs 2",
        "bnn sweep my_sweep.yaml --format markdown > results.md",
        "RAY_AUTH_MODE=token bnn sweep my_sweep.yaml --executor ray --address HEAD:6379",
    )
)
@click.argument("sweep_path", metavar="SWEEP.yaml", type=click.Path(dir_okay=False))
@_executor_option("point")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Points at a time. Default: 1 (local); as many as the cluster fits (ray).",
)
@_address_option()
@click.option(
    "--cpus-per-point",
    type=click.IntRange(min=1),
    metavar="N",
    help="ray: CPUs each task asks for. Default: 1.",
)
@click.option(
    "--gpus-per-point",
    type=click.FloatRange(min=0),
    metavar="N",
    help="ray: GPUs each task asks for. Default: 0.",
)
@_dir_option("--runs-dir", RUNS_DIR_HELP)
@_dir_option("--data-dir", DATA_DIR_HELP)
@_format_option("the summary")
def sweep(
    sweep_path: str,
    executor: str,
    jobs: int | None,
    address: str | None,
    cpus_per_point: int | None,
    gpus_per_point: float | None,
    runs_dir: str | None,
    data_dir: str | None,
    fmt: str,
) -> None:
    """Train every point of a sweep file; skip points already complete; summarise.

    Exit 0 when every point is complete, 5 when some failed (the others still ran), 2 when the
    sweep file or a point's config is invalid (then nothing runs).
    """
    from bnn_cli import sweep as sweeps

    ray_only: dict[str, object] = {"--address": address, "--cpus-per-point": cpus_per_point}
    ray_only["--gpus-per-point"] = gpus_per_point
    for flag, value in ray_only.items():
        if executor != "ray" and value is not None:
            raise click.UsageError(f"{flag} needs --executor ray")
    spec = sweeps.load_sweep(Path(sweep_path))
    result = sweeps.run_sweep(
        spec,
        _runs_dir(runs_dir),
        data_dir,
        console=_env().err,
        executor=executor,
        jobs=jobs,
        address=address,
        cpus_per_point=cpus_per_point or 1,
        gpus_per_point=gpus_per_point or 0,
        debug=click.get_current_context().find_root().obj["debug"],
    )
    sweeps.print_summary(result, _env().out, fmt)
    sweeps.raise_if_failed(result)


@cli.command(
    epilog=_examples(
        "bnn tune configs/tunes/tune_smoke.yaml --jobs 2",
        "bnn tune my_tune.yaml --trials 50   # continue the study up to 50 trials",
        "bnn tune my_tune.yaml --storage postgresql://user@db/bnn --jobs 4   # shared study",
    )
)
@click.argument("tune_path", metavar="TUNE.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    metavar="N",
    help="Trials the study should hold when it ends. Default: the tune file's 'trials'.",
)
@click.option(
    "--storage",
    metavar="URL",
    help="The study database: any URL Optuna takes (sqlite:///study.db, postgresql://...). "
    "Default: sqlite:///<runs dir>/tunes/<name>/study.db.",
)
@_executor_option("trial")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    default=1,
    show_default=True,
    help="Trials at a time.",
)
@_address_option()
@_dir_option("--runs-dir", RUNS_DIR_HELP)
@_dir_option("--data-dir", DATA_DIR_HELP)
@_format_option("the trials table")
def tune(
    tune_path: str,
    trials: int | None,
    storage: str | None,
    executor: str,
    jobs: int,
    address: str | None,
    runs_dir: str | None,
    data_dir: str | None,
    fmt: str,
) -> None:
    """Choose settings on validation: an Optuna study over the tune file's space.

    Each trial is an ordinary run (`bnn train --no-eval`) that reports its validation figures
    at every eval_every and is pruned when it falls behind. Running the command again
    continues the study; trials cut off resume from their checkpoints. Writes best.yaml and
    report.html into <runs dir>/tunes/<name>/; prints the trials, then best.yaml's path
    (train and test the best settings with `bnn train <that path>`).
    """
    from bnn_cli import tune as tuning
    from bnn_cli.tune import report
    from bnn_cli.tune.run import NoTrialComplete

    if address and executor != "ray":
        raise click.UsageError("--address needs --executor ray")
    spec = tuning.load_tune(Path(tune_path))
    if trials:
        spec = dataclasses.replace(spec, trials=trials)
    result = tuning.run_tune(
        spec,
        _runs_dir(runs_dir),
        data_dir,
        console=_env().err,
        storage=storage,
        executor=executor,
        jobs=jobs,
        address=address,
        debug=click.get_current_context().find_root().obj["debug"],
    )
    rows = report.trial_rows(result.study, spec)

    emit(_env().out, [report.summary_tabular(rows, spec)], fmt)
    page = report.write_report(spec, result.study, result.folder)
    best = report.write_best(spec, result.study, result.folder)
    _env().err.print(f"study report: {page}", highlight=False)
    if best is None:
        raise NoTrialComplete(
            f"no trial completed: no best.yaml (see the trials' logs in {result.folder / 'trials'})"
        )
    _env().out.print(str(best), soft_wrap=True, highlight=False)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _interrupt_on_termination() -> None:
    """SIGTERM (a scheduler, `kill`, `timeout`) and SIGHUP (the terminal closed) stop a command
    the way Ctrl-C does: the run is marked `interrupted` with its parameters so far, not left
    saying `running`. A signal the caller set to be ignored (nohup) stays ignored, except SIGINT
    in a sweep's child (`SIGINT_FROM_PARENT`): its sweep forwards Ctrl-C to it."""
    if os.environ.get(SIGINT_FROM_PARENT) and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _interrupt)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def click_message(exc: click.ClickException) -> str:
    """click's usage errors in the house form: one line, lower case, its did-you-mean kept as
    `— did you mean …?` (as config errors say it), and where to read the help."""
    text = " ".join(exc.format_message().split())
    text = text.replace(". Did you mean ", " — did you mean ")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        text = f"{text.rstrip('.')} (see '{ctx.command_path} --help')"
    return text


def quiet_library_notices() -> None:
    """Hide notices that repeat on every run and ask nothing of the user (shown with --debug)."""
    # ArviZ (imported by PyMC) announces its refactor on every import.
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    # PyTensor's JAX backend keeps the random state in a JAX copy that it advances every step
    # (tests/test_engine_backend.py checks the draws change and are seeded).
    warnings.filterwarnings("ignore", message="The RandomType SharedVariables")
    # float32 runs: JAX narrows PyMC's 64-bit index and constant casts (float64 runs enable x64).
    warnings.filterwarnings("ignore", message="Explicitly requested dtype")


def main(args: list[str] | None = None, env: Environment | None = None) -> int:
    """Entry point: the one error boundary. Runs `bnn` with `args` (default: the command line)
    on `env` (default: the process's stdout and stderr) and returns the exit code."""
    env = env or Environment.from_streams()
    argv = sys.argv[1:] if args is None else list(args)
    debug = "--debug" in argv
    if not debug:
        quiet_library_notices()
    _interrupt_on_termination()
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="bnn", obj={"env": env})
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns a KeyboardInterrupt into Abort; its message names the signal, if not Ctrl-C
        cause = exc.__cause__ if isinstance(exc, click.exceptions.Abort) else exc
        by = f" by {cause}" if isinstance(cause, KeyboardInterrupt) and str(cause) else ""
        env.error(f"interrupted{by}")
        return ExitCode.INTERRUPTED
    except click.exceptions.NoArgsIsHelpError as exc:  # plain `bnn`: the help, as click does
        exc.show()
        return ExitCode.USAGE
    except click.ClickException as exc:
        env.error(click_message(exc))
        return ExitCode.USAGE
    except BnnError as exc:
        if debug:
            raise
        env.error(str(exc))
        return exc.exit_code
    except Exception as exc:  # the boundary: any bug becomes exit 1 with a hint
        if debug:
            raise
        env.error(
            f"unexpected {type(exc).__name__}: {_one_line(exc)} (run again with --debug "
            "for the traceback)"
        )
        return ExitCode.INTERNAL
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
