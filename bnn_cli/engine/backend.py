"""PyTensor set-up: float precision, a real BLAS for the C backend, and the compile mode.

PyTensor installed with pip finds no BLAS to link against and falls back to slow paths. The
`scipy-openblas32` wheel (the OpenBLAS build NumPy and SciPy ship) is on PyPI; its symbols carry a
`scipy_` prefix, so the C backend is pointed at it with `-D` macros that rename the BLAS calls.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytensor

logger = logging.getLogger(__name__)

# The BLAS routines PyTensor's C code calls (pytensor/tensor/blas_headers.py).
_BLAS_ROUTINES = (
    "sgemm dgemm sgemv dgemv sger dger sdot ddot saxpy daxpy scopy dcopy sscal dscal"
).split()
_MODES = {"numba": "NUMBA"}
_BLAS_DONE: list[bool] = []  # set once per process: PyTensor's flags are global


def openblas_ldflags() -> str | None:
    """Link flags for the scipy-openblas32 wheel, or None when it is not installed."""
    try:
        import scipy_openblas32  # optional: the OpenBLAS wheel
    except ImportError:
        return None
    lib_dir = scipy_openblas32.get_lib_dir()
    renames = " ".join(f"-D{name}_=scipy_{name}_" for name in _BLAS_ROUTINES)
    return f"-L{lib_dir} -l{scipy_openblas32.get_library()} -Wl,-rpath,{lib_dir} {renames}"


def configure(float_x: str = "float32", backend: str = "c") -> Any:
    """Set PyTensor's floatX and BLAS; return the compile mode for `backend`."""
    pytensor.config.floatX = float_x
    # A user's own BLAS set-up (PYTENSOR_FLAGS or .pytensorrc) wins over ours.
    user_set = "blas__ldflags" in os.environ.get("PYTENSOR_FLAGS", "") or os.path.exists(
        os.path.expanduser("~/.pytensorrc")
    )
    # Every backend: PyMC compiles small helper functions with the C backend even when the step
    # function goes to JAX, and a missing BLAS would warn about them.
    if not user_set and not _BLAS_DONE:
        flags = openblas_ldflags()
        if flags:
            pytensor.config.blas__ldflags = flags
            logger.debug("BLAS: %s", flags)
        _BLAS_DONE.append(True)
    if backend == "c":
        from bnn_cli.engine.rewrites import c_mode  # lazy: imports PyTensor

        return c_mode()
    if backend == "jax":
        import jax  # lazy: imports JAX

        from bnn_cli.engine.rewrites import jax_mode  # lazy: imports PyTensor

        # JAX computes in 32 bits unless told otherwise; a float64 run must really be float64.
        jax.config.update("jax_enable_x64", float_x == "float64")
        return jax_mode()
    return _MODES[backend]


def device(backend: str) -> str:
    """Where the compiled step runs: JAX's first device ("gpu: NVIDIA H200", "cpu"), else the
    CPU (the C and Numba backends run nowhere else)."""
    if backend != "jax":
        return "cpu"
    import jax  # lazy: imports JAX

    first = jax.devices()[0]
    return "cpu" if first.platform == "cpu" else f"{first.platform}: {first.device_kind}"
