"""The downloader against a real HTTP server on 127.0.0.1 that misbehaves on request.

The server's first path segment picks the behaviour: /good/<file>, /delay/<file>, /html/<file>,
/html-octet/<file> (HTML sent as a binary type), /truncated/<file>, /wrong/<file> (a valid gzip
of the wrong content), /garbage/<file>, /missing/<file> (404), /silent/<file> (never answers),
/trickle/<file> (a slow body, for the interruption test).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from rich.console import Console

from bnn_cli.data.datasets import DATASETS, DatasetSpec
from bnn_cli.data.download import MirrorFailed, download_dataset, verify_file
from bnn_cli.errors import ConfigError, DataError
from tests.download_helpers import (
    FILES,
    REAL_MNIST,
    REPO_ROOT,
    TIMEOUT,
    MirrorServer,
    cli_env,
    closed_port_url,
    wait_for_partial,
)


@dataclass
class Source:
    """A dataset to serve: its files, the folder holding them, and the spec that accepts them."""

    folder: Path
    spec: DatasetSpec

    def contents(self) -> dict[str, bytes]:
        return {name: (self.folder / name).read_bytes() for name in FILES}


@pytest.fixture
def tiny(tmp_path, make_synthetic_dataset, server) -> Source:
    """Small synthetic files (fast), already served by `server`."""
    source = Source(tmp_path / "tiny-source", make_synthetic_dataset(tmp_path / "tiny-source"))
    server.files = source.contents()
    return source


@pytest.fixture
def mnist(tmp_path, make_synthetic_dataset, server) -> Source:
    """The real MNIST files where present (the spec's real checksums, no built-in mirrors),
    else synthetic ones; already served by `server`."""
    if all((REAL_MNIST / name).is_file() for name in FILES):
        source = Source(REAL_MNIST, replace(DATASETS["mnist"], mirrors=()))
    else:
        source = Source(tmp_path / "source", make_synthetic_dataset(tmp_path / "source"))
    server.files = source.contents()
    return source


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def assert_complete(target: Path, spec: DatasetSpec) -> None:
    for file_spec in spec.files:
        verify_file(target / file_spec.name, file_spec)  # raises if wrong
    assert not [p.name for p in target.iterdir() if ".partial-" in p.name]


# --- success -----------------------------------------------------------------------------


def test_downloads_every_file_from_an_http_mirror(tmp_path, server, mnist):
    console, output = plain_console()
    target = download_dataset(
        "mnist", tmp_path / "data", [server.url("good")], console=console, spec=mnist.spec
    )
    assert target == tmp_path / "data" / "mnist"
    assert_complete(target, mnist.spec)
    assert sorted(server.requests) == sorted(f"/good/{name}" for name in FILES)
    assert output.getvalue().splitlines() == [
        f"{name}: downloaded from {server.url('good')}" for name in FILES
    ]


@pytest.mark.parametrize("form", ["directory", "file-url"])
def test_downloads_from_a_local_mirror(tmp_path, mnist, form):
    mirror = str(mnist.folder) if form == "directory" else mnist.folder.as_uri()
    target = download_dataset("mnist", tmp_path / "data", [mirror], spec=mnist.spec)
    assert_complete(target, mnist.spec)


def test_a_file_url_with_an_escaped_space(tmp_path, make_synthetic_dataset):
    spec = make_synthetic_dataset(tmp_path / "mirror with space")
    target = download_dataset(
        "mnist", tmp_path / "data", [(tmp_path / "mirror with space").as_uri()], spec=spec
    )
    assert_complete(target, spec)


def test_verified_files_are_skipped_and_force_fetches_again(tmp_path, server, tiny):
    download_dataset("mnist", tmp_path, [server.url("good")], spec=tiny.spec)
    console, output = plain_console()
    download_dataset("mnist", tmp_path, [server.url("good")], console=console, spec=tiny.spec)
    assert len(server.requests) == 4
    assert output.getvalue().splitlines() == [f"{name}: verified (cached)" for name in FILES]
    download_dataset("mnist", tmp_path, [server.url("good")], force=True, spec=tiny.spec)
    assert len(server.requests) == 8


def test_a_terminal_console_gets_progress_bars(tmp_path, server, tiny):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    download_dataset("mnist", tmp_path, [server.url("good")], console=console, spec=tiny.spec)
    assert "\x1b[" in buffer.getvalue()  # rich's live display drew on it
    assert f"{FILES[0]}: downloaded from" in buffer.getvalue()


# --- failing mirrors, then a good one ----------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("html", "an HTML page (HTTP 200) instead of the file"),
        ("html-octet", "an HTML page (HTTP 200) instead of the file"),
        ("truncated", "truncated body ("),
        ("wrong", "checksum mismatch: content sha256"),
        ("garbage", "not a gzip file (starts with b'PK\\x03\\x04')"),
        ("missing", "HTTP 404 Not Found"),
        ("silent", f"timed out after {TIMEOUT:g} s"),
    ],
)
def test_a_failing_mirror_is_logged_and_the_next_one_used(
    tmp_path, server, tiny, caplog, mode, reason
):
    caplog.set_level(logging.WARNING, logger="bnn_cli.data.download")
    target = download_dataset(
        "mnist", tmp_path, [server.url(mode), server.url("good")], spec=tiny.spec, timeout=TIMEOUT
    )
    assert_complete(target, tiny.spec)
    assert f"from {server.url(mode)} failed ({reason}" in caplog.text


def test_a_dead_first_mirror_is_skipped_for_the_other_files(tmp_path, server, mnist, caplog):
    dead = closed_port_url()
    target = download_dataset("mnist", tmp_path, [dead, server.url("good")], spec=mnist.spec)
    assert_complete(target, mnist.spec)
    # Tried once: an unreachable mirror is not tried again for the next three files.
    assert caplog.text.count(f"from {dead} failed (connection refused)") == 1


def test_all_mirrors_failing_lists_each_reason(tmp_path, server, tiny):
    dead = closed_port_url()
    mirrors = [
        dead,
        server.url("html"),
        server.url("truncated"),
        server.url("wrong"),
        server.url("missing"),
        server.url("silent"),
        str(tmp_path / "nowhere"),
        "ftp://example.org/mnist/",
    ]
    with pytest.raises(DataError) as caught:
        download_dataset("mnist", tmp_path / "data", mirrors, spec=tiny.spec, timeout=TIMEOUT)
    message = str(caught.value)
    size = len(tiny.contents()[FILES[0]])
    assert message.startswith(
        f"could not fetch {FILES[0]} from any mirror: {dead} (connection "
        f"refused); {server.url('html')} (an HTML page (HTTP 200) instead "
        f"of the file); {server.url('truncated')} (truncated body "
        f"({size // 2} of {size} bytes)); {server.url('wrong')} "
        "(checksum mismatch: content sha256 "
    )
    assert message.endswith(
        f"{server.url('missing')} (HTTP 404 Not Found); {server.url('silent')} (timed out "
        f"after 0.5 s); {tmp_path / 'nowhere'} (no such directory); ftp://example.org/mnist/ "
        "(unsupported scheme 'ftp://', use http(s)://, file:// or a directory) — check your "
        "network or pass --mirror DIR"
    )
    assert "\n" not in message
    assert not (tmp_path / "data" / "mnist" / FILES[0]).exists()
    assert not list((tmp_path / "data" / "mnist").glob(".*partial*"))


def test_a_spec_with_only_the_gz_checksum_accepts_exactly_that_file(tmp_path, tiny):
    # Fashion-MNIST publishes only the SHA-256 of its .gz files.
    name = FILES[1]
    published = tiny.contents()[name]
    spec = replace(
        tiny.spec.file(name), sha256=None, gz_sha256=hashlib.sha256(published).hexdigest()
    )
    (tmp_path / "published.gz").write_bytes(published)
    (tmp_path / "recompressed.gz").write_bytes(gzip.compress(gzip.decompress(published), 1))
    verify_file(tmp_path / "published.gz", spec)
    with pytest.raises(MirrorFailed, match="checksum mismatch: sha256 "):
        verify_file(tmp_path / "recompressed.gz", spec)


# --- the cache directory -----------------------------------------------------------------


def test_a_corrupt_cached_file_is_replaced(tmp_path, server, tiny, caplog):
    target = tmp_path / "mnist"
    target.mkdir()
    (target / FILES[1]).write_bytes(b"\x1f\x8b corrupt")
    download_dataset("mnist", tmp_path, [server.url("good")], spec=tiny.spec)
    assert_complete(target, tiny.spec)
    assert f"{target / FILES[1]} is corrupt (corrupt gzip stream" in caplog.text


def test_stale_temporaries_are_cleaned_up(tmp_path, server, tiny):
    target = tmp_path / "mnist"
    target.mkdir()
    (target / f".{FILES[0]}.partial-abc123").write_bytes(b"half a file")
    download_dataset("mnist", tmp_path, [server.url("good")], spec=tiny.spec)
    assert_complete(target, tiny.spec)


def test_an_unusable_data_directory_is_named(tmp_path, tiny):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataError) as caught:
        download_dataset("mnist", blocker, [str(tiny.folder)], spec=tiny.spec)
    assert str(caught.value) == (
        f"cannot create data directory '{blocker / 'mnist'}': Not a directory (choose another "
        "with --data-dir or $BNN_DATA_DIR)"
    )


def test_a_full_disk_is_named_and_leaves_no_temporary(tmp_path, monkeypatch, tiny):
    # A real full disk needs a mount; injecting the error where it first bites is enough to
    # show it becomes one named DataError and not an attempt on the next mirror.
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("bnn_cli.data.download.os.fsync", no_space)
    with pytest.raises(DataError) as caught:
        download_dataset("mnist", tmp_path, [str(tiny.folder)], spec=tiny.spec)
    assert str(caught.value) == (
        f"cannot write to data directory '{tmp_path / 'mnist'}': No space left on device (free "
        "some space or choose another with --data-dir or $BNN_DATA_DIR)"
    )
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == [".download.lock"]


def test_an_unknown_dataset_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'"):
        download_dataset("cifar", tmp_path, [])


# --- concurrency and interruption --------------------------------------------------------


def test_two_downloads_at_once_both_succeed_and_fetch_once(tmp_path, server, tiny):
    errors = []
    consoles = [plain_console() for _ in range(2)]

    def run(console: Console) -> None:
        try:
            download_dataset(
                "mnist", tmp_path, [server.url("delay")], console=console, spec=tiny.spec
            )
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(console,)) for console, _ in consoles]
    threads[0].start()
    wait_for_requests(server, 1)  # the first holds the lock now, and has 3 more files to fetch
    threads[1].start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert_complete(tmp_path / "mnist", tiny.spec)
    assert len(server.requests) == 4  # the second waited for the lock, then found them verified
    outputs = [output.getvalue() for _, output in consoles]
    assert outputs[0].startswith(f"{FILES[0]}: downloaded from")
    assert outputs[1].startswith(f"waiting for another download into {tmp_path / 'mnist'}")
    assert outputs[1].endswith(f"{FILES[-1]}: verified (cached)\n")


def cli(data_dir: Path, *mirrors: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "bnn_cli.cli", "download-mnist", "--data-dir", str(data_dir)]
    for mirror in mirrors:
        args += ["--mirror", mirror]
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=REPO_ROOT,
    )


@pytest.mark.slow
def test_two_cli_processes_at_once(tmp_path, server, real_data_dir):
    server.files = {name: (real_data_dir / "mnist" / name).read_bytes() for name in FILES}
    server.delay = 0.6  # so the first still holds the lock once the second has started
    first = cli(tmp_path, server.url("delay"))
    wait_for_requests(server, 1)
    second = cli(tmp_path, server.url("delay"))
    results = [process.communicate(timeout=60) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], results
    assert_complete(tmp_path / "mnist", DATASETS["mnist"])
    assert len(server.requests) == 4
    assert "waiting for another download into" in results[1][1]
    assert results[1][1].count("verified (cached)") == 4


def wait_for_requests(server: MirrorServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(server.requests) < count:
        assert time.monotonic() < deadline, "the server got no request"
        time.sleep(0.01)


def test_a_killed_download_leaves_no_file_and_the_next_run_recovers(tmp_path, server, mnist):
    target = tmp_path / "mnist"
    process = cli(tmp_path, server.url("trickle"))
    try:
        partial = wait_for_partial(target, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    assert partial.exists()
    assert not (target / FILES[0]).exists()
    download_dataset("mnist", tmp_path, [server.url("good")], spec=mnist.spec)
    assert_complete(target, mnist.spec)


def test_the_cli_fails_with_exit_3_and_one_error_line(tmp_path, server, tiny):
    process = cli(tmp_path, server.url("html"))
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 3
    assert stdout == ""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"error: could not fetch {FILES[0]} from any mirror: "
        f"{server.url('html')} (an HTML page (HTTP 200) instead of the "
        "file); https://ossci-datasets.s3.amazonaws.com/mnist/ ("
    )
    assert errors[0].endswith(" — check your network or pass --mirror DIR")
