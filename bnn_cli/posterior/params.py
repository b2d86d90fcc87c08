"""approx.npz, the fitted mean-field approximation: its layout, and the way to and from PyMC.

The file holds, for every variable of the approximation (named by `models.priors.factors`),
`mu/<name>` and `rho/<name>`: PyMC's means and softplus-parametrized scales, in the transformed
(unconstrained) space, as plain arrays (no pickle). This module is the one that spells those
keys: the fit's diagnostics, the figures and the predictive read a variable's mean, scale and
draws through the functions below.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bnn_cli import seeds
from bnn_cli.atomic import atomic_write_npz
from bnn_cli.config import Config
from bnn_cli.errors import RunError

if TYPE_CHECKING:
    from bnn_cli.models.priors import Factor

FILE_NAME = "approx.npz"
MU, RHO = "mu", "rho"  # the two parameters of a mean-field variable, as PyMC names them


def key(part: str, name: str) -> str:
    """The approx.npz key of variable `name`'s `part` (MU or RHO)."""
    return f"{part}/{name}"


def softplus(x: np.ndarray) -> np.ndarray:
    """PyMC's map from rho to the standard deviation, log(1 + exp(rho)), stable for any rho."""
    return np.logaddexp(0.0, x)


def tensor_names(arrays: dict[str, np.ndarray]) -> list[str]:
    """The approximation's variables, in the order approx.npz stores them."""
    prefix = key(MU, "")
    return [k[len(prefix) :] for k in arrays if k.startswith(prefix)]


def mean(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Variable `name`'s means, as saved."""
    return arrays[key(MU, name)]


def rho(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Variable `name`'s unconstrained scales, as saved."""
    return arrays[key(RHO, name)]


def mean_and_sd(arrays: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Variable `name`'s means and standard deviations, flat, in float64."""
    mu = np.asarray(mean(arrays, name), dtype=np.float64).ravel()
    sigma = softplus(np.asarray(rho(arrays, name), dtype=np.float64)).ravel()
    return mu, sigma


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
    from bnn_cli.models.priors import factors  # lazy: imports PyTensor

    for spec in param_specs(config.model):
        for factor in factors(spec, config.prior):
            for part in (MU, RHO):
                found = key(part, factor.key)
                check(path, found, arrays.get(found), factor.shape)
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


def from_approx(approx: Any) -> dict[str, np.ndarray]:
    """The approximation's parameters by variable name: `mu/<name>` and `rho/<name>` (PyMC's
    softplus-parametrized scale), in the transformed (unconstrained) space."""
    group = approx.groups[0]
    mu = group.params_dict[MU].get_value()
    rho = group.params_dict[RHO].get_value()
    arrays = {}
    for name, slc, shape, _ in group.ordering.values():
        arrays[key(MU, name)] = mu[slc].reshape(shape)
        arrays[key(RHO, name)] = rho[slc].reshape(shape)
    return arrays


def to_approx(approx: Any, arrays: dict[str, np.ndarray]) -> None:
    """Restore saved parameters into a fresh approximation; shapes must match the model."""
    group = approx.groups[0]
    for part in (MU, RHO):
        shared = group.params_dict[part]
        flat = np.array(shared.get_value())  # a copy, also of a JAX array
        for name, slc, shape, _ in group.ordering.values():
            saved = arrays[key(part, name)]
            if tuple(saved.shape) != tuple(shape):
                raise ValueError(
                    f"{key(part, name)} has shape {saved.shape}, the model needs {shape}"
                )
            flat[slc] = saved.reshape(-1)
        shared.set_value(flat.astype(shared.dtype))


def saved_factors(arrays: dict[str, np.ndarray], name: str) -> list[Factor]:
    """The factors of tensor `name` as found in saved parameters (approx.npz), whatever the
    prior: the tensor itself, or its log-scale and raw parts (`models.priors.factors`)."""
    from bnn_cli.models.priors import LOG_SUFFIX, RAW_SUFFIX, SCALE_SUFFIX, Factor  # PyTensor

    if key(MU, name) in arrays:
        return [Factor(name, np.shape(mean(arrays, name)))]
    keys = [(name + SCALE_SUFFIX + LOG_SUFFIX, True), (name + RAW_SUFFIX, False)]
    return [Factor(k, np.shape(mean(arrays, k)), log) for k, log in keys]


def tensor_factors(arrays: dict[str, np.ndarray], name: str) -> list[tuple]:
    """[(mu, sigma, is_log)] whose (exp'd where is_log) draws multiply (broadcast: a scale may
    be per unit) to the tensor's draw."""
    return [
        (mean(arrays, f.key), softplus(rho(arrays, f.key)), f.log)
        for f in saved_factors(arrays, name)
    ]


def mean_of(factors: list[tuple]) -> np.ndarray:
    """A tensor's posterior mean from its factors (a log-normal factor's mean is exp(mu +
    sigma^2 / 2))."""
    value = 1.0
    for mu, sigma, is_log in factors:
        value = value * (np.exp(mu + sigma**2 / 2) if is_log else mu)
    return np.asarray(value)


def draw_of(factors: list[tuple], rng: np.random.Generator, dtype: str) -> np.ndarray:
    """One draw of a tensor from its factors, in `dtype`."""
    value = 1.0
    for mu, sigma, is_log in factors:
        z = mu + sigma * rng.standard_normal(np.shape(mu), dtype=np.float32)
        value = value * (np.exp(z) if is_log else z)
    return np.asarray(value, dtype=dtype)


def log_normal_draws(
    arrays: dict[str, np.ndarray], name: str, rng: np.random.Generator, draws: int
) -> np.ndarray:
    """(draws, *shape) draws of exp(variable `name`): a positive quantity the approximation
    holds on the log scale (a hierarchical prior's scale)."""
    mu, r = mean(arrays, name), rho(arrays, name)
    noise = rng.standard_normal((draws, *np.shape(mu)))
    return np.exp(mu + softplus(r) * noise)


def prior_scale_draws(
    config: Config, arrays: dict[str, np.ndarray], draws: int
) -> dict[str, np.ndarray] | None:
    """Posterior draws of each layer's prior scales (hierarchical runs), (draws, *scale shape):
    the scales live on the log scale in the approximation (PyMC's log transform of a
    HalfNormal). `load_params` has already checked that each is present with its shape. Under
    the collapsed hyperprior a scale is no variable of the fit: its draws come from the
    inverse-gamma posterior of the variance the bound integrated out."""
    if config.prior.kind != "hierarchical":
        return None
    from bnn_cli.models.architecture import param_specs  # lazy: imports PyTensor
    from bnn_cli.models.priors import (  # lazy: imports PyTensor
        SCALE_SUFFIX,
        collapsed_scale_draws,
        is_collapsed,
        scale_names,
    )

    rng = seeds.stream(config.seed, seeds.PRIOR_SCALES)
    specs = param_specs(config.model)
    if is_collapsed(config.prior):
        out = {}
        for spec in specs:
            mu, sigma = (part.reshape(spec.shape) for part in mean_and_sd(arrays, spec.name))
            out[spec.name + SCALE_SUFFIX] = collapsed_scale_draws(
                spec, config.prior, mu, sigma, draws, rng
            )
        return out
    return {
        name: log_normal_draws(arrays, factor.key, rng, draws)
        for name, factor in scale_names(specs, config.prior).items()
    }
