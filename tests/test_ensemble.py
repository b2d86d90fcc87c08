"""Ensembles of fits: the members' configs, a killed member and resuming, the mixture predictive
of real tiny members, and an incomplete ensemble refused or used as far as it goes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bnn_cli import ensemble
from bnn_cli.config import config_from_dict, load_config
from bnn_cli.errors import ConfigError, RunError
from bnn_cli.runs import read_status, write_status
from tests.sweep_helpers import SMOKE, TINY, fake_train  # noqa: F401 (a fixture)


def tiny_config(members: int, **more):
    overrides = {**TINY, "inference.ensemble": members, "data.val_size": 1000, **more}
    return load_config(SMOKE, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def test_members_are_the_same_fit_with_consecutive_seeds():
    config = tiny_config(3, seed=7)
    members = [ensemble.member_config(config, i) for i in range(3)]
    assert [m.seed for m in members] == [7, 8, 9]
    assert [m.name for m in members] == ["smoke-m0", "smoke-m1", "smoke-m2"]
    assert all(m.inference.ensemble is None for m in members)
    plain = config_from_dict({**config.to_dict(), "inference": {**config.to_dict()["inference"],
                                                                "ensemble": None}})  # fmt: skip
    assert members[0].model == plain.model and members[0].inference == plain.inference


@pytest.mark.parametrize("size", [0, 1, -2, "two", True, 2.5])
def test_an_ensemble_needs_two_members_or_more(size):
    with pytest.raises(ConfigError, match=r"^inference\.ensemble: got .*2 or more members"):
        tiny_config(size)


def test_the_last_member_seed_must_be_valid():
    with pytest.raises(ConfigError, match="inference.ensemble: the members' seeds"):
        tiny_config(3, seed=2**32 - 2)


@pytest.mark.parametrize(
    ("total", "members", "expected"),
    [(100, 5, [20] * 5), (7, 3, [3, 2, 2]), (2, 5, [1] * 5), (1, 2, [1, 1])],
)
def test_draws_are_split_among_members(total, members, expected):
    assert ensemble.split_draws(total, members) == expected


def test_a_killed_member_leaves_the_others_and_training_again_refits_only_it(
    tmp_path,
    real_data_dir,
    fake_train,  # noqa: F811
    monkeypatch,
):
    config, runs = tiny_config(3, seed=4), tmp_path / "runs"
    monkeypatch.setenv("FAKE_KILL", "5")  # member m1
    with pytest.raises(ensemble.EnsembleIncomplete, match=r"1 of 3 members did not complete: m1"):
        ensemble.train_ensemble(config, runs, str(real_data_dir), quiet(), jobs=2)
    (run_dir,) = [p for p in runs.iterdir() if ensemble.is_ensemble(p)]
    states = {m.label: m.state for m in ensemble.members(run_dir)}
    assert states == {"m0": "complete", "m1": "failed", "m2": "complete"}
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["members_complete"] == 2
    with pytest.raises(RunError, match=r"member m1 \(.*smoke-m1-.*\) is failed, not complete"):
        ensemble.usable_members(run_dir, allow_incomplete=False, console=quiet())
    console = Console(record=True, width=200)
    used = ensemble.usable_members(run_dir, allow_incomplete=True, console=console)
    assert [m.label for m in used] == ["m0", "m2"]
    assert "evaluating 2 of 3 members (m0, m2); missing: m1 (failed)" in console.export_text()
    kept = {m.label: m.run_dir for m in used}

    monkeypatch.delenv("FAKE_KILL")
    console = Console(record=True, width=200)
    again = ensemble.train_ensemble(config, runs, str(real_data_dir), console)
    assert again == run_dir
    printed = console.export_text()
    assert "resuming ensemble" in printed and "2 of 3 members already complete" in printed
    assert "skip m0" in printed and "skip m2" in printed
    now = {m.label: m for m in ensemble.members(run_dir)}
    assert all(m.state == "complete" for m in now.values())
    assert now["m0"].run_dir == kept["m0"] and now["m2"].run_dir == kept["m2"]  # not refit
    assert read_status(run_dir)["state"] == "complete"
    listed = json.loads((run_dir / "ensemble.json").read_text())["members"]
    assert [e["seed"] for e in listed] == [4, 5, 6]
    assert all(e["run"].startswith("members/") for e in listed)  # relative: the folder moves


def test_an_ensemble_being_trained_is_not_trained_twice(tmp_path, real_data_dir, fake_train):  # noqa: F811
    config, runs = tiny_config(2), tmp_path / "runs"
    run_dir = ensemble.train_ensemble(config, runs, str(real_data_dir), quiet())
    write_status(run_dir, "running", pid=1, host="another-host")
    with pytest.raises(RunError, match="is being trained by another process"):
        ensemble.train_ensemble(config, runs, str(real_data_dir), quiet())


@pytest.mark.slow
def test_the_mixture_of_real_members_and_its_report(tmp_path, real_data_dir):
    from bnn_cli.posterior import evaluate, params
    from bnn_cli.posterior.predictive import compile_predict, predictive
    from bnn_cli.runs import open_run, run_config
    from bnn_cli.train import train_and_evaluate

    config = tiny_config(2, **{"evaluate.draws": 6, "evaluate.ood": ["fashion-mnist"]})
    data = tmp_path / "data"
    data.mkdir()
    for name in ("mnist", "fashion-mnist"):
        (data / name).symlink_to(Path(real_data_dir) / name)
    run_dir = train_and_evaluate(config, tmp_path / "runs", str(data), True, quiet())

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["draws"] == 6
    members = metrics["ensemble"]["members"]
    assert [(m["member"], m["seed"], m["draws"]) for m in members] == [("m0", 0, 3), ("m1", 1, 3)]
    assert set(members[0]["ood"]["fashion-mnist"]) == {"auroc_entropy", "auroc_mi"}
    report = (run_dir / "report.md").read_text()
    assert "## Ensemble members" in report and "| mixture | — | 6 |" in report
    assert "ensemble of 2 fits" in report

    # The mixture is each member's own predictive (its arrays, its seed), draws side by side.
    run = open_run(run_dir)
    chosen = ensemble.usable_members(run_dir, False, quiet())
    sources = evaluate.fitted_sources(run, run_config(run), chosen, 6)
    mixture = evaluate.PosteriorPredictive(config.model, sources, None, quiet(), 1000)
    images = np.random.default_rng(0).random((50, 28, 28)).astype("float32")
    probs = mixture(images)
    fn = compile_predict(config.model)
    own = []
    for member in chosen:
        member_config = run_config(open_run(member.run_dir))
        arrays = params.load(member.run_dir, member_config)
        own.append(predictive(fn, arrays, config.model, images, 3, member_config.seed))
    np.testing.assert_allclose(probs, np.concatenate(own), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        probs.mean(axis=0), np.mean([p.mean(axis=0) for p in own], axis=0), rtol=1e-5, atol=1e-7
    )

    # The Python API and `bnn predict` see the same mixture.
    from bnn_cli import load_run
    from bnn_cli.posterior.classify import predict_files

    loaded = load_run(run_dir)
    assert [m.config.seed for m in loaded.members] == [0, 1]
    np.testing.assert_allclose(loaded.predict(images, draws=6), probs, rtol=1e-5, atol=1e-7)
    with pytest.raises(RunError, match=r"an ensemble of 2 fits .* use run.members\[i\].approx"):
        loaded.approx  # noqa: B018
    np.save(tmp_path / "some.npy", images[:3])
    answered = predict_files(run_dir, [tmp_path / "some.npy"], None, None, False, quiet())
    assert answered.draws == 6 and len(answered.answers) == 3

    # A member gone: evaluate refuses (exit 4, naming it), or uses the others when allowed.
    write_status(chosen[1].run_dir, "interrupted")
    with pytest.raises(RunError, match="member m1") as info:
        evaluate.evaluate_run(run_dir, None, "test", str(data), False, quiet())
    assert info.value.exit_code == 4
    result = evaluate.evaluate_run(run_dir, None, "test", None, True, quiet())  # its data dir
    assert result["draws"] == 6 and [m["member"] for m in result["ensemble"]["members"]] == ["m0"]


def test_an_interrupted_ensemble_says_so_and_keeps_its_complete_members(
    tmp_path,
    real_data_dir,
    fake_train,  # noqa: F811
    monkeypatch,
):
    real = ensemble.run_sweep

    def then_ctrl_c(*args, **kwargs):
        real(*args, **kwargs)  # the members finish; Ctrl-C comes as the sweep ends
        raise KeyboardInterrupt

    monkeypatch.setattr(ensemble, "run_sweep", then_ctrl_c)
    config, runs = tiny_config(2), tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        ensemble.train_ensemble(config, runs, str(real_data_dir), quiet())
    (run_dir,) = [p for p in runs.iterdir() if ensemble.is_ensemble(p)]
    status = read_status(run_dir)
    assert status["state"] == "interrupted" and status["members_complete"] == 2
    assert status["message"] == (
        "interrupted with 2 of 2 members complete; train it again to resume (complete members "
        "are kept)"
    )
    assert [m.state for m in ensemble.members(run_dir)] == ["complete", "complete"]
    monkeypatch.setattr(ensemble, "run_sweep", real)
    assert ensemble.train_ensemble(config, runs, str(real_data_dir), quiet()) == run_dir
    assert read_status(run_dir)["state"] == "complete"
