"""The versions a run was made with, for meta.json, and how they compare to requirements.lock.

`make setup` installs the exact versions in requirements.lock; meta.json records the installed
versions of the packages that decide a run's numbers and whether they are the locked ones, so a
result can be traced to an install (`pip install .` with the lower bounds gives other versions).
"""

from __future__ import annotations

import hashlib
import re
from importlib import metadata
from pathlib import Path
from typing import Any

__version__ = "0.1.0"  # bnn's own (pyproject.toml's); re-exported as `bnn_cli.__version__`
# The packages whose versions change a run's numbers (or its files).
RECORDED = ("pymc", "pytensor", "numpy", "scipy", "jax", "jaxlib", "arviz", "pillow")
# In a source checkout (what `make setup` installs, editable) the lock file sits beside the
# package; an installed wheel has none.
LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def normalize(name: str) -> str:
    """PEP 503 names: `PyYAML` and `pyyaml`, `scipy_openblas32` and `scipy-openblas32` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(names: tuple[str, ...] = RECORDED) -> dict[str, str | None]:
    """{package: installed version, or None when it is not installed}."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def lock_pins(path: Path) -> dict[str, str]:
    """{normalized name: version} of the `name==version` lines of a pip requirements file."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def lock_status(path: Path | None = None) -> dict[str, Any] | None:
    """Whether the recorded packages have their locked versions: {"file", "sha256", "matches",
    "differs": {name: {"locked", "installed"}}}; None when there is no lock file."""
    path = Path(path or LOCK_FILE)
    if not path.is_file():
        return None
    pins = lock_pins(path)
    differs = {}
    for name, version in installed_versions().items():
        locked = pins.get(normalize(name))
        if locked != version:
            differs[name] = {"locked": locked, "installed": version}
    return {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "matches": not differs,
        "differs": differs,
    }
