"""One place for consoles and progress bars.

The CLI makes the consoles (results on stdout, progress and messages on stderr) and passes them
down; every long piece of work draws its bar with `progress_bar`, which shows only in a terminal
(a pipe or a log gets the results and the one-line messages, not bar frames).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn


def make_console(stderr: bool) -> Console:
    """Outside a terminal (a pipe, a log) lines are not wrapped at 80 columns: a path or a
    message stays whole on its line, as scripts and `grep` expect."""
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return Console(stderr=stderr, soft_wrap=not (isatty and isatty()))


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
