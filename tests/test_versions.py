"""requirements.lock and meta.json's versions: the lock covers every dependency within
pyproject.toml's bounds, `make setup` installs from it, and a mismatch is recorded."""

import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bnn_cli import versions

ROOT = Path(__file__).resolve().parents[1]


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *extras["test"], *extras["ray"]]]


def test_the_lock_pins_every_dependency_within_its_bounds():
    pins = versions.lock_pins(ROOT / "requirements.lock")
    for requirement in project_requirements():
        name = versions.normalize(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run 'make lock UPGRADE='"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    for name in versions.RECORDED:
        assert versions.normalize(name) in pins, name


def test_make_setup_installs_from_the_lock():
    out = subprocess.run(
        ["make", "-n", "-B", "setup"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "uv pip install --compile-bytecode -r requirements.lock --python .venv/bin/python" in out
    assert "uv pip install --no-deps -e . --python .venv/bin/python" in out
    assert "uv pip check --python .venv/bin/python" in out
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/bnn: pyproject.toml $(LOCK)" in makefile
    # `bench` is also a folder: not phony, `make bench` would call it up to date and do nothing
    (phony,) = [line.split()[1:] for line in makefile.splitlines() if line.startswith(".PHONY:")]
    assert {"setup", "check", "test", "demo", "bench", "lock"} <= set(phony)


def test_lock_status_names_what_differs(tmp_path, monkeypatch):
    monkeypatch.setattr(
        versions, "installed_versions", lambda names=versions.RECORDED: {"pymc": "5.0", "jax": None}
    )
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# header\nPyMC==5.0   # via bnn\njax==0.4.30\nnumpy==2.0 ; python_version>'3'\n"
    )
    status = versions.lock_status(lock)
    assert status["file"] == "requirements.lock" and len(status["sha256"]) == 64
    assert status["matches"] is False
    assert status["differs"] == {"jax": {"locked": "0.4.30", "installed": None}}
    lock.write_text("jax==0.4.30\n")  # pymc installed but not locked
    assert versions.lock_status(lock)["differs"] == {
        "pymc": {"locked": None, "installed": "5.0"},
        "jax": {"locked": "0.4.30", "installed": None},
    }
    assert versions.lock_status(tmp_path / "missing.lock") is None


def test_installed_versions():
    found = versions.installed_versions(("numpy", "no-such-package-here"))
    import numpy

    assert found == {"numpy": numpy.__version__, "no-such-package-here": None}


@pytest.mark.parametrize("name", ["PyYAML", "scipy_openblas32", "ruamel.yaml"])
def test_normalize(name):
    assert versions.normalize(name) == name.lower().replace("_", "-").replace(".", "-")
