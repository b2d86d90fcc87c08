"""The command line itself: help that explains every option, and click's usage errors in the
same one-line `error:` form (exit 2) as every other configuration error."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from bnn_cli.cli import cli

COMMANDS = sorted(cli.commands)
SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
# The environment variables that set an option when it is not given.
ENV_VARS = {
    "--runs-dir": "$BNN_RUNS_DIR",
    "--data-dir": "$BNN_DATA_DIR",
    "--address": "$RAY_ADDRESS",
}


def bnn(*args):
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "bnn_cli.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


@functools.cache
def help_text(command: str) -> str:
    """`bnn COMMAND --help` as a terminal-less process prints it, once per test process."""
    return bnn(command, "--help").stdout


def option_help(command: str, option: str) -> str:
    """One option's entry in the rendered `--help`, joined into one line."""
    text = help_text(command)
    options = text[text.index("Options:") :].split("\n\n")[0]
    entries = options.split("\n  -")
    (entry,) = [e for e in entries if e.lstrip("-").startswith(option.lstrip("-"))]
    return " ".join(entry.split())


def test_every_command_is_covered():
    assert COMMANDS == [
        "compare", "download-mnist", "evaluate", "predict", "sweep", "train", "tune"
    ]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_says_what_it_does_and_its_default(command):
    params = [p for p in cli.commands[command].params if isinstance(p, click.Option)]
    for param in params:
        if param.name == "help" or param.hidden:  # hidden: between bnn's own processes
            continue
        name = max(param.opts, key=len)
        text = option_help(command, name)
        assert len(text) > len(name) + 12, f"{command} {name} has no help: {text!r}"
        if not param.is_flag:  # a flag is off unless given
            assert "default" in text.lower(), f"{command} {name} names no default: {text!r}"
        if name in ENV_VARS:
            assert ENV_VARS[name] in text, f"{command} {name} does not name {ENV_VARS[name]}"


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "sweep", "download-mnist", "compare", "tune"]
)
def test_help_ends_with_examples(command):
    text = help_text(command)
    examples = text[text.index("Examples:") :].splitlines()[1:]
    assert 2 <= len(examples) <= 3
    assert all(f"bnn {command}" in line for line in examples)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["download-mnist", "--forc"],
            "error: no such option '--forc' — did you mean '--force'? "
            "(see 'bnn download-mnist --help')",
        ),
        (
            ["train"],
            "error: give CONFIG.yaml to train a new run, or --resume RUN_DIR to go on with one "
            "that was cut off (see 'bnn train --help')",
        ),
        (
            ["compare", "--format", "xml"],
            "error: invalid value for '--format': 'xml' is not one of 'table', 'markdown', "
            "'csv', 'json' (see 'bnn compare --help')",
        ),
        (
            ["sweep", "s.yaml", "--jobs", "2", "--address", "h:1"],
            "error: --address needs --executor ray (see 'bnn sweep --help')",
        ),
        (
            ["train", SMOKE, "--jobs", "2"],
            "error: --jobs applies to ensembles only; set inference.ensemble (e.g. --set "
            "inference.ensemble=5) or leave them out (see 'bnn train --help')",
        ),
        (
            ["train", SMOKE, "--set", "inference.ensemble=1"],
            "error: inference.ensemble: got 1, expected an integer of 2 or more members (leave "
            "it out for a single fit)",
        ),
        (
            ["evalute"],
            "error: no such command 'evalute' — did you mean 'evaluate'? (see 'bnn --help')",
        ),
        (["compare", "a", "--runs-dir", "b"], None),
    ],
)
def test_a_usage_error_is_one_error_line_and_exit_2(args, message):
    out = bnn(*args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    if message:
        assert out.stderr == message + "\n"


def test_bnn_alone_shows_the_help():
    out = bnn()
    assert out.returncode == 2 and "Commands:" in out.stderr and "compare" in out.stderr
