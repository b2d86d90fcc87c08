"""Fetch a dataset's files from its mirrors, verify them, and store them atomically.

Each file is tried on every mirror in turn (the user's `--mirror`s first, then the built-in
ones) until one gives bytes that pass verification: the SHA-256 of the decompressed IDX content
(or of the published `.gz`) and a strict parse of the IDX header. Any failure of a mirror
(network error, HTTP error, timeout, an HTML page, a truncated body, a wrong checksum) is
logged and the next mirror is tried; the public mirrors have all misbehaved at some point.

A file is written to a temporary `.<name>.partial-<random>` beside its final place and renamed
only once verified, so an interrupted download never leaves a file under the final name. A lock
file makes concurrent downloads into the same directory wait for each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import logging
import os
import socket
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlparse
from urllib.request import Request, url2pathname, urlopen

import filelock
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from bnn_cli.data.datasets import DatasetSpec, FileSpec, get_spec
from bnn_cli.data.idx import IdxError, gunzip, parse_idx
from bnn_cli.errors import DataError
from bnn_cli.versions import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"bnn/{__version__} (Python-urllib/{sys.version_info.major}.{sys.version_info.minor})"
CHUNK_BYTES = 64 * 1024
# Far above the largest real file (26 MB .gz, 47 MB decompressed): a bound on what a broken or
# hostile mirror can make us store or inflate.
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
MAX_IDX_BYTES = 512 * 1024 * 1024
LOCK_NAME = ".download.lock"
PARTIAL_MARK = ".partial-"
# How long to try the lock before saying that another download is running.
LOCK_NOTICE_AFTER_S = 0.2


class MirrorFailed(Exception):
    """A mirror failed for one file. `reason` is short, for the summary line; `unreachable`
    means the mirror itself is down, so it is not tried again for the other files."""

    def __init__(self, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


def download_dataset(
    dataset: str,
    base_dir: Path,
    mirrors: list[str],
    force: bool = False,
    console: Console | None = None,
    timeout: float = 30.0,
    *,
    spec: DatasetSpec | None = None,
) -> Path:
    """Make `base_dir/dataset` hold the dataset's verified files and return that directory.

    `spec` replaces the registry entry (tests use it for synthetic files).
    """
    spec = spec or get_spec(dataset)
    target = Path(base_dir) / dataset
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create data directory '{target}': {exc.strerror or exc} "
            "(choose another with --data-dir or $BNN_DATA_DIR)"
        ) from None
    sources = _unique([*mirrors, *spec.mirrors])
    reporter = _Reporter(console)
    with _dataset_lock(target, reporter), reporter:
        _remove_stale_partials(target)
        unreachable: dict[str, str] = {}
        for file_spec in spec.files:
            _ensure_file(target, file_spec, sources, force, timeout, reporter, unreachable)
    return target


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


@contextlib.contextmanager
def _local_writes(target: Path) -> Iterator[None]:
    """Turn a failure of our own disk (read-only, full) into one fatal, named error: unlike a
    mirror's failure, no other mirror can help."""
    try:
        yield
    except OSError as exc:
        raise DataError(
            f"cannot write to data directory '{target}': {exc.strerror or exc} "
            "(free some space or choose another with --data-dir or "
            "$BNN_DATA_DIR)"
        ) from None


@contextlib.contextmanager
def _dataset_lock(target: Path, reporter: _Reporter) -> Iterator[None]:
    lock = filelock.FileLock(target / LOCK_NAME)
    if not _try_lock(lock, target, LOCK_NOTICE_AFTER_S):
        reporter.line(f"waiting for another download into {target} to finish")
        _try_lock(lock, target, -1)
    try:
        yield
    finally:
        lock.release()


def _try_lock(lock: filelock.FileLock, target: Path, timeout: float) -> bool:
    with _local_writes(target):
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:  # an OSError too: must be caught inside _local_writes
            return False
    return True


def _remove_stale_partials(target: Path) -> None:
    """Temporaries left by a killed download; safe to remove because we hold the lock."""
    with _local_writes(target):
        for stale in target.glob(f".*{PARTIAL_MARK}*"):
            log.info("removing %s, left by an interrupted download", stale)
            stale.unlink(missing_ok=True)


def _ensure_file(
    target: Path,
    file_spec: FileSpec,
    sources: list[str],
    force: bool,
    timeout: float,
    reporter: _Reporter,
    unreachable: dict[str, str],
) -> None:
    final = target / file_spec.name
    if not force and final.exists():
        try:
            with _local_writes(target):
                verify_file(final, file_spec)
            reporter.line(f"{file_spec.name}: verified (cached)")
            return
        except MirrorFailed as exc:
            log.warning("%s is corrupt (%s); downloading it again", final, exc.reason)
            with _local_writes(target):
                final.unlink()
    failures = []
    for mirror in sources:
        if mirror in unreachable:
            failures.append(f"{mirror} ({unreachable[mirror]})")
            continue
        try:
            _fetch_into_place(mirror, target, file_spec, timeout, reporter)
        except MirrorFailed as exc:
            log.warning(
                "%s from %s failed (%s); trying the next mirror", file_spec.name, mirror, exc.reason
            )
            failures.append(f"{mirror} ({exc.reason})")
            if exc.unreachable:
                unreachable[mirror] = exc.reason
            continue
        reporter.line(f"{file_spec.name}: downloaded from {mirror}")
        return
    tried = "; ".join(failures) or "no mirrors given"
    raise DataError(
        f"could not fetch {file_spec.name} from any mirror: {tried} — check your "
        "network or pass --mirror DIR"
    )


def verify_file(path: Path, file_spec: FileSpec) -> None:
    """Accept the file if its decompressed bytes or the `.gz` itself have a known SHA-256 and
    the IDX content parses; raise `MirrorFailed` with the reason otherwise."""
    data = path.read_bytes()
    gz_digest = hashlib.sha256(data).hexdigest()
    try:
        content = gunzip(data, file_spec.name, limit=MAX_IDX_BYTES)
    except IdxError as exc:
        raise MirrorFailed(exc.problem) from None
    content_digest = hashlib.sha256(content).hexdigest()
    if content_digest != file_spec.sha256 and gz_digest != file_spec.gz_sha256:
        raise MirrorFailed(_mismatch(file_spec, content_digest, gz_digest))
    try:
        parse_idx(content, file_spec.name)
    except IdxError as exc:
        raise MirrorFailed(exc.problem) from None


def _mismatch(file_spec: FileSpec, content_digest: str, gz_digest: str) -> str:
    if file_spec.sha256 is not None:
        return (
            f"checksum mismatch: content sha256 {content_digest[:12]}…, expected "
            f"{file_spec.sha256[:12]}…"
        )
    expected = file_spec.gz_sha256 or ""
    return f"checksum mismatch: sha256 {gz_digest[:12]}…, expected {expected[:12]}…"


def _fetch_into_place(
    mirror: str, target: Path, file_spec: FileSpec, timeout: float, reporter: _Reporter
) -> None:
    """Download to a temporary beside the final name, verify, then rename into place."""
    with _local_writes(target):
        fd, tmp_name = tempfile.mkstemp(dir=target, prefix=f".{file_spec.name}{PARTIAL_MARK}")
    partial = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _open_source(mirror, file_spec.name, timeout) as source:
            with reporter.task(file_spec.name, source.length) as advance:
                _copy(source, out, target, timeout, advance)
            with _local_writes(target):
                out.flush()
                os.fsync(out.fileno())
        with _local_writes(target):
            verify_file(partial, file_spec)
            os.chmod(partial, 0o644)  # mkstemp makes it private; a data cache is not secret
            os.replace(partial, target / file_spec.name)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Source:
    stream: io.BufferedIOBase  # a file or an HTTP response: both have read1
    length: int | None  # as declared by the server or the file system; None if unknown
    html_label: str | None  # how to name an HTML page served in its place; None: don't sniff


@contextlib.contextmanager
def _open_source(mirror: str, name: str, timeout: float) -> Iterator[_Source]:
    stream: io.BufferedIOBase
    length: int | None
    if "://" not in mirror:
        stream, length = _open_local(Path(mirror).expanduser(), name)
        label = None
    else:
        parsed = urlparse(mirror)
        scheme = parsed.scheme.lower()
        if scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise MirrorFailed(
                    f"file:// URL on another host '{parsed.netloc}'", unreachable=True
                )
            stream, length = _open_local(Path(url2pathname(parsed.path)), name)
            label = None
        elif scheme in ("http", "https"):
            response, length = _open_http(mirror, name, timeout)
            stream, label = response, f"HTTP {response.status}"
        else:
            raise MirrorFailed(
                f"unsupported scheme '{scheme}://', use http(s)://, file:// or a directory",
                unreachable=True,
            )
    with stream:
        yield _Source(stream, length, label)


def _open_local(directory: Path, name: str) -> tuple[io.BufferedReader, int]:
    if not directory.is_dir():
        raise MirrorFailed("no such directory", unreachable=True)
    try:
        stream = (directory / name).open("rb")
    except OSError as exc:
        raise MirrorFailed(f"cannot open {name}: {exc.strerror or exc}") from None
    return stream, os.fstat(stream.fileno()).st_size


def _open_http(
    base_url: str, name: str, timeout: float
) -> tuple[http.client.HTTPResponse, int | None]:
    url = (base_url if base_url.endswith("/") else base_url + "/") + quote(name)
    # identity: the .gz must arrive byte for byte, not re-encoded by a helpful server.
    request = Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    try:
        response = urlopen(request, timeout=timeout)  # noqa: S310 (schemes checked above)
    except HTTPError as exc:
        exc.close()
        raise MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except URLError as exc:
        raise MirrorFailed(_describe(exc.reason, timeout), unreachable=True) from None
    except (OSError, http.client.HTTPException) as exc:  # a timeout waiting for the headers
        raise MirrorFailed(_describe(exc, timeout), unreachable=True) from None
    if response.headers.get_content_type() == "text/html":
        response.close()
        raise MirrorFailed(f"an HTML page (HTTP {response.status}) instead of the file")
    length = _content_length(response)
    if length is not None and length > MAX_DOWNLOAD_BYTES:
        response.close()
        raise MirrorFailed(f"declares {length} bytes, more than the {MAX_DOWNLOAD_BYTES} allowed")
    return response, length


def _content_length(response: http.client.HTTPResponse) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (TypeError, ValueError):
        return None


def _describe(error: object, timeout: float) -> str:
    """A short, human reason for a network error."""
    if isinstance(error, TimeoutError):  # socket.timeout is an alias since Python 3.10
        return f"timed out after {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host: {error.strerror}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    if isinstance(error, http.client.IncompleteRead):
        return f"truncated body ({len(error.partial)} bytes, then the connection closed)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _copy(
    source: _Source, out: BinaryIO, target: Path, timeout: float, advance: Callable[[int], None]
) -> None:
    received = 0
    while chunk := _read_chunk(source.stream, timeout):
        if received == 0 and source.html_label and _looks_like_html(chunk):
            raise MirrorFailed(f"an HTML page ({source.html_label}) instead of the file")
        received += len(chunk)
        if received > MAX_DOWNLOAD_BYTES:
            raise MirrorFailed(f"more than the {MAX_DOWNLOAD_BYTES} bytes allowed")
        with _local_writes(target):
            out.write(chunk)
        advance(len(chunk))
    # http.client returns b"" when a server closes early, without complaint: check the length.
    if source.length is not None and received != source.length:
        raise MirrorFailed(f"truncated body ({received} of {source.length} bytes)")
    if received == 0:
        raise MirrorFailed("empty body")


def _read_chunk(stream: io.BufferedIOBase, timeout: float) -> bytes:
    # read1 returns whatever has arrived, so the bar moves on a slow link; read would wait
    # for the whole chunk.
    try:
        return stream.read1(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise MirrorFailed(_describe(exc, timeout)) from None


def _looks_like_html(chunk: bytes) -> bool:
    head = chunk[:64].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml"))


class _Reporter:
    """Progress bars (bytes, speed, ETA) on a terminal; one plain line per file otherwise,
    so logs and CI output stay readable. Silent without a console."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self.progress = None
        if console is not None and console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
            )

    def __enter__(self) -> _Reporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    @contextlib.contextmanager
    def task(self, name: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A bar for one transfer, removed when it ends (a plain line follows it)."""
        if self.progress is None:
            yield lambda _count: None
            return
        progress = self.progress
        task_id: TaskID = progress.add_task(name, total=total)
        try:
            yield lambda count: progress.advance(task_id, count)
        finally:
            progress.remove_task(task_id)
