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


def test_a_warning_and_an_error_are_each_printed_one_way():
    import io

    from rich.console import Console

    from bnn_cli.console import Environment

    out, err = io.StringIO(), io.StringIO()
    env = Environment(Console(file=out), Console(file=err, width=20))
    env.warning("[b]:smile:")  # no markup, no emoji
    env.error("a long message that is never wrapped, even in a narrow console")
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        "warning: [b]:smile:",
        "error: a long message that is never wrapped, even in a narrow console",
    ]


def test_main_returns_the_exit_code_and_prints_on_the_environment_it_is_given(tmp_path):
    import io

    from rich.console import Console

    from bnn_cli.cli import main
    from bnn_cli.console import Environment
    from bnn_cli.errors import ExitCode

    out, err = io.StringIO(), io.StringIO()
    env = Environment(Console(file=out), Console(file=err))
    code = main(["compare", "--runs-dir", str(tmp_path / "none")], env=env)
    assert code == ExitCode.RUN
    assert err.getvalue().startswith("error: no runs in ")
    assert out.getvalue() == ""
