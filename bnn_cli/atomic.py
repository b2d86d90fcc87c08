"""Shared plumbing for every layer: atomic file writes, a set of files replaced as a whole, and
holding Ctrl-C while a few renames finish. It imports nothing of bnn but its errors, so the data
layer and the run layer alike use it without importing each other."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnn_cli.errors import RunError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: readers never see a
    half-written file under the final name. A failure of the disk (full, read-only) is a
    `RunError` naming the file; the earlier version of the file, if any, is left as it was."""
    path = Path(path)
    try:
        _atomic_write(path, data)
    except OSError as exc:
        raise RunError(f"cannot write '{path}': {exc.strerror or exc}") from exc


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the usual mode (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # NumPy's stub types **kwds too narrowly
    atomic_write_bytes(path, buffer.getvalue())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore a second Ctrl-C (or SIGTERM) while a few files are put in place: being interrupted
    half-way through would leave a run without its last parameters, status or reports."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be restored from here
                signal.signal(sig, handler)


STAGE_MARK = "-tmp-"  # `.<label>-tmp-<pid>-<random>`: a staging folder inside the target folder
OLD_MARK = "-old-"  # `.<label>-old-<pid>-<random>`: the entries being replaced, for a moment


@contextlib.contextmanager
def replaced_as_a_whole(
    folder: Path, names: Sequence[str], last: str, label: str
) -> Iterator[Path]:
    """Yield an empty staging folder inside `folder`; write a set of files (and folders) there.
    When the block ends, they replace the earlier set in `folder` as a whole: every entry of
    `names` not written again is removed, `last` is moved in last (its presence marks the set
    complete). An error, Ctrl-C or kill before then leaves `folder` as it was."""
    folder = Path(folder)
    _remove_stale(folder, label)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{label}{STAGE_MARK}{os.getpid()}-", dir=folder))
    except OSError as exc:
        raise RunError(f"cannot write in '{folder}': {exc.strerror or exc}") from None
    try:
        yield stage
        with signals_held():  # a handful of renames: finish them once begun
            _swap_in(stage, folder, names, last, label)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, folder: Path, names: Sequence[str], last: str, label: str) -> None:
    new = sorted((p.name for p in stage.iterdir()), key=lambda name: name == last)
    leaving = [last, *names, *new]  # `last` leaves first: the old set is incomplete at once
    try:
        old = Path(tempfile.mkdtemp(prefix=f".{label}{OLD_MARK}{os.getpid()}-", dir=folder))
        for name in dict.fromkeys(leaving):
            if os.path.lexists(folder / name):
                os.replace(folder / name, old / name)
        for name in new:
            os.replace(stage / name, folder / name)
        _fsync_dir(folder)
    except OSError as exc:
        raise RunError(f"cannot put the new files in place in '{folder}': {exc.strerror}") from exc
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale(folder: Path, label: str) -> None:
    """Staging folders left by a process that was killed (SIGKILL, a power cut)."""
    for path in folder.glob(f".{label}-*-*"):
        pid = path.name.removeprefix(f".{label}").split("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host (under any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
