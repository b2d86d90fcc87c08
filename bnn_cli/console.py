"""One place for consoles, messages and progress bars, in the manner of httpie's `Environment`.

`cli.main` makes the `Environment` once (results on stdout, progress and messages on stderr)
and passes its consoles down; a test makes its own around a buffer. A warning and an error are
each printed one way (`warning`, `error`: one line, `warning: ...` / `error: ...`), and every
long piece of work draws its bar with `progress_bar`, which shows only in a terminal (a pipe or
a log gets the results and the one-line messages, not bar frames).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn


def make_console(stderr: bool) -> Console:
    """Outside a terminal (a pipe, a log) lines are not wrapped at 80 columns: a path or a
    message stays whole on its line, as scripts and `grep` expect."""
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return Console(stderr=stderr, soft_wrap=not (isatty and isatty()))


@dataclass(frozen=True)
class Environment:
    """The streams of one command: `out` carries only its results (a run's path, a table),
    `err` its progress and messages."""

    out: Console
    err: Console

    @classmethod
    def from_streams(cls) -> Environment:
        return cls(out=make_console(stderr=False), err=make_console(stderr=True))

    def warning(self, message: str) -> None:
        warning(self.err, message)

    def error(self, message: str) -> None:
        error(self.err, message)


def warning(console: Console, message: str) -> None:
    """`warning: <message>`, yellow in a terminal; the text is printed as it is (no markup)."""
    console.print(f"warning: {message}", style="yellow", markup=False, highlight=False, emoji=False)


def error(console: Console, message: str) -> None:
    """`error: <message>` on one line (never wrapped), red in a terminal: what a command says
    before it exits with an error code."""
    console.print(
        f"error: {message}",
        style="red",
        markup=False,
        highlight=False,
        emoji=False,
        soft_wrap=True,
    )


def progress_bar(console: Console, title: str, *columns: ProgressColumn | str) -> Progress:
    """A bold title, the bar, then `columns`; drawn only when `console` is a terminal."""
    return Progress(
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        *columns,
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
