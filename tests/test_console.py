"""The consoles and progress bars: results on stdout, bars only in a terminal."""

import io

from rich.console import Console

from bnn_cli.console import make_console, progress_bar


def test_a_console_outside_a_terminal_does_not_wrap_lines():
    console = make_console(stderr=True)
    assert console.stderr and console.soft_wrap  # pytest captures stderr: not a terminal


def test_a_progress_bar_draws_only_in_a_terminal():
    piped = Console(file=io.StringIO(), force_terminal=False)
    with progress_bar(piped, "work") as progress:
        progress.add_task("t", total=3)
    assert progress.disable and piped.file.getvalue() == ""
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    with progress_bar(terminal, "{task.description}") as progress:
        progress.add_task("fitting", total=3, completed=3)
    assert not progress.disable and "fitting" in terminal.file.getvalue()
