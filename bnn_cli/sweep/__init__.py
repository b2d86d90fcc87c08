"""`bnn sweep`: many runs of one base config, on this machine or as Ray tasks on a cluster.

A sweep file names a base config, a `grid` (every combination of the listed values) and/or
explicit `points`, and `set` overrides for every point. Every point is validated before anything
runs. Each point then becomes an ordinary run directory made by `bnn train` in a process of its
own, so a point that fails or crashes (even SIGKILL) is reported while the others go on.
`<runs>/sweeps/<name>.json` records each point's overrides, run, state and error; running the
sweep again skips the points whose run is complete (with the same config) and runs the rest.

The package, by concern: `spec` (the sweep file and its validation), `point` (one point, one
process), `executors` (local, ray), `manifest` (records and resume), `run` (the loop),
`summary` (the tables).
"""

from bnn_cli.sweep.executors import TOKEN_HINT, cpu_count
from bnn_cli.sweep.manifest import SweepFailed, SweepResult, raise_if_failed
from bnn_cli.sweep.point import runs_named
from bnn_cli.sweep.run import run_sweep
from bnn_cli.sweep.spec import LABEL_MAX, Point, Sweep, load_sweep
from bnn_cli.sweep.summary import print_summary

__all__ = [
    "LABEL_MAX",
    "TOKEN_HINT",
    "Point",
    "Sweep",
    "SweepFailed",
    "SweepResult",
    "cpu_count",
    "load_sweep",
    "print_summary",
    "raise_if_failed",
    "run_sweep",
    "runs_named",
]
