"""The run directory remembers where its training data came from: a run trained with
--data-dir is evaluated and answers `bnn predict` without it."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bnn_cli import runs
from tests.conftest import REAL_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_the_data_dir_falls_back_to_the_recorded_one(tmp_path, monkeypatch):
    run_dir, recorded = tmp_path / "run", tmp_path / "data"
    run_dir.mkdir()
    recorded.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"data_dir": str(recorded)}))
    monkeypatch.delenv("BNN_DATA_DIR", raising=False)
    assert runs.run_data_dir(run_dir, None) == str(recorded)
    assert runs.run_data_dir(run_dir, "elsewhere") == "elsewhere"
    monkeypatch.setenv("BNN_DATA_DIR", str(tmp_path / "env"))
    assert runs.run_data_dir(run_dir, None) == str(tmp_path / "env")
    monkeypatch.delenv("BNN_DATA_DIR")
    shutil.rmtree(recorded)  # gone: the user cache directory, as before
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert runs.run_data_dir(run_dir, None) == str(tmp_path / "cache" / "bnn")
    assert runs.recorded_data_dir(tmp_path) is None  # no meta.json


@pytest.mark.slow
def test_a_run_trained_with_data_dir_is_evaluated_and_predicts_without_it(
    own_tiny_run, tmp_path, bnn_here
):
    copy = own_tiny_run
    meta = json.loads((copy / "meta.json").read_text())
    assert meta["data_dir"] == str(REAL_DATA_DIR.resolve())
    (copy / "uncertainty_threshold.json").unlink(missing_ok=True)
    elsewhere = {"BNN_DATA_DIR": None, "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    np.save(tmp_path / "digit.npy", np.zeros((28, 28), np.float32))
    for args in (["evaluate", copy, "--draws", "2"], ["predict", copy, "digit.npy"]):
        result = bnn_here(*args, cwd=tmp_path, **elsewhere)
        assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_an_evaluated_run_copied_without_its_data_answers_predict(own_tiny_run, tmp_path, bnn_here):
    """The evaluation cached the threshold for its draws: no dataset is needed at all."""
    from bnn_cli.posterior.threshold import THRESHOLD_FILE

    copy = own_tiny_run
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "data_dir": str(tmp_path / "gone")}))
    assert "8" in json.loads((copy / THRESHOLD_FILE).read_text())["entropy_by_draws"]
    np.save(tmp_path / "digit.npy", np.zeros((28, 28), np.float32))
    result = bnn_here(
        "predict", copy, "digit.npy", cwd=tmp_path, BNN_DATA_DIR=None,
        XDG_CACHE_HOME=str(tmp_path / "empty-cache"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_run_that_cannot_be_marked_ended_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    from bnn_cli.errors import RunError
    from bnn_cli.runs import store

    def full_disk(*args, **kwargs):
        raise RunError("No space left on device")

    monkeypatch.setattr(store, "write_status", full_disk)
    with caplog.at_level("WARNING", logger="bnn_cli.runs.store"):
        runs.mark_ended(tmp_path, "failed", message="it broke")
    assert f"could not mark {tmp_path} as failed: No space left on device" in caplog.text
