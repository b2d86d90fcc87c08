"""bnn: Bayesian neural network experiments on PyMC, from the command line and from Python.

The public Python API is `load_run` (see `bnn_cli.api`): `from bnn_cli import load_run`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bnn_cli.versions import __version__

__all__ = ["TrainedRun", "__version__", "load_run"]

if TYPE_CHECKING:
    from bnn_cli.api import TrainedRun, load_run


def __getattr__(name: str) -> Any:
    # Imported on first use: the command line imports this package on every start.
    if name in ("load_run", "TrainedRun"):
        from bnn_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'bnn_cli' has no attribute {name!r}")
