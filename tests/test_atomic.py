"""Atomic writes, a set of files replaced as a whole, and staging folders left by a kill."""

import errno
import os
import subprocess
import sys

import pytest

from bnn_cli import atomic
from bnn_cli.errors import RunError


def test_a_full_disk_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    atomic.atomic_write_text(path, "before")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(RunError) as caught:
        atomic.atomic_write_text(path, "after")
    assert str(caught.value) == f"cannot write '{path}': No space left on device"
    assert path.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary left


NAMES = ("metrics.json", "report.md", "plots")


def earlier_set(folder):
    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "a.png").write_text("old a")
    (folder / "plots" / "stale.png").write_text("old stale")
    (folder / "report.md").write_text("old report")
    (folder / "metrics.json").write_text("old metrics")
    (folder / "approx.npz").write_text("not part of the set")


def tree(folder):
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def write_new_set(stage, with_report=True):
    (stage / "plots").mkdir()
    (stage / "plots" / "a.png").write_text("new a")
    if with_report:
        (stage / "report.md").write_text("new report")
    (stage / "metrics.json").write_text("new metrics")


def test_the_new_set_replaces_the_old_as_a_whole(tmp_path):
    earlier_set(tmp_path)
    with atomic.replaced_as_a_whole(tmp_path, NAMES, "metrics.json", "report") as stage:
        assert stage.parent == tmp_path and stage.name.startswith(f".report-tmp-{os.getpid()}-")
        write_new_set(stage, with_report=False)
    assert tree(tmp_path) == {
        "approx.npz": "not part of the set",
        "metrics.json": "new metrics",
        "plots/a.png": "new a",  # plots/stale.png and report.md of the earlier set are gone
    }
    assert not list(tmp_path.glob(".report-*"))


@pytest.mark.parametrize("stop", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failure_before_the_end_leaves_the_earlier_set(tmp_path, stop):
    earlier_set(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(type(stop)):
        with atomic.replaced_as_a_whole(tmp_path, NAMES, "metrics.json", "report") as stage:
            write_new_set(stage)
            raise stop
    assert tree(tmp_path) == before
    assert not list(tmp_path.glob(".report-*"))


def test_staging_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".report-tmp-{dead.pid}-abc").mkdir()
    (tmp_path / f".report-old-{dead.pid}-abc").mkdir()
    (tmp_path / f".report-tmp-{os.getppid()}-abc").mkdir()  # alive: perhaps still writing
    with atomic.replaced_as_a_whole(tmp_path, NAMES, "metrics.json", "report") as stage:
        write_new_set(stage)
    hidden = sorted(p.name for p in tmp_path.glob(".report-*"))
    assert hidden == [f".report-tmp-{os.getppid()}-abc"]
