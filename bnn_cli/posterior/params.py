"""approx.npz, the fitted mean-field approximation: its layout, and the way to and from PyMC.

The file holds, for every variable of the approximation (named by `models.priors.factors`),
`mu/<name>` and `rho/<name>`: PyMC's means and softplus-parametrized scales, in the transformed
(unconstrained) space, as plain arrays (no pickle).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from bnn_cli.atomic import atomic_write_npz
from bnn_cli.config import Config
from bnn_cli.errors import RunError

FILE_NAME = "approx.npz"


def save(run_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write_npz(Path(run_dir) / FILE_NAME, arrays)


def load(run_dir: Path, config: Config) -> dict[str, np.ndarray]:
    """approx.npz, checked against the model the config describes (names, shapes, finiteness)."""
    path = Path(run_dir) / FILE_NAME
    if not path.is_file():
        raise RunError(f"run '{run_dir.name}' has no approx.npz (the fit saved no parameters)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (
        OSError,
        ValueError,
        zipfile.BadZipFile,
        EOFError,
        zlib.error,
        NotImplementedError,  # a zip member compressed with an unknown method
    ) as exc:
        raise RunError(f"'{path}' is corrupt or truncated ({exc}); train the run again") from None
    from bnn_cli.models.architecture import param_specs  # imports PyTensor: only when needed
    from bnn_cli.models.priors import factors

    for spec in param_specs(config.model):
        for factor in factors(spec, config.prior):
            for key in (f"mu/{factor.key}", f"rho/{factor.key}"):
                check(path, key, arrays.get(key), factor.shape)
    return arrays


def check(path: Path, key: str, array: np.ndarray | None, shape: tuple[int, ...]) -> None:
    """One saved parameter: present, of the model's shape, real numbers, finite."""
    if array is None:
        raise RunError(f"'{path}' has no '{key}': it does not match the model in config.yaml")
    if tuple(array.shape) != shape:
        raise RunError(
            f"'{path}': '{key}' has shape {tuple(array.shape)}, the "
            f"model in config.yaml needs {shape}"
        )
    if array.dtype.kind not in "fiu":
        raise RunError(f"'{path}': '{key}' holds {array.dtype} values, not real numbers")
    if not np.all(np.isfinite(array)):
        raise RunError(
            f"'{path}': '{key}' holds NaN or infinite values; the fit "
            "diverged — train again with a lower learning rate"
        )


def from_approx(approx) -> dict[str, np.ndarray]:
    """The approximation's parameters by variable name: `mu/<name>` and `rho/<name>` (PyMC's
    softplus-parametrized scale), in the transformed (unconstrained) space."""
    group = approx.groups[0]
    mu = group.params_dict["mu"].get_value()
    rho = group.params_dict["rho"].get_value()
    arrays = {}
    for name, slc, shape, _ in group.ordering.values():
        arrays[f"mu/{name}"] = mu[slc].reshape(shape)
        arrays[f"rho/{name}"] = rho[slc].reshape(shape)
    return arrays


def to_approx(approx, arrays: dict[str, np.ndarray]) -> None:
    """Restore saved parameters into a fresh approximation; shapes must match the model."""
    group = approx.groups[0]
    for key in ("mu", "rho"):
        shared = group.params_dict[key]
        flat = np.array(shared.get_value())  # a copy, also of a JAX array
        for name, slc, shape, _ in group.ordering.values():
            saved = arrays[f"{key}/{name}"]
            if tuple(saved.shape) != tuple(shape):
                raise ValueError(f"{key}/{name} has shape {saved.shape}, the model needs {shape}")
            flat[slc] = saved.reshape(-1)
        shared.set_value(flat.astype(shared.dtype))
