"""Shared plumbing for every layer: atomic file writes, and holding Ctrl-C while a few renames
finish. It imports nothing of bnn but its errors, so the data layer and the run layer alike can
use it without importing each other."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import threading
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
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


@contextlib.contextmanager
def signals_held():
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
