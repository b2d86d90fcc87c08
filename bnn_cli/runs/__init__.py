"""The run directory: its life cycle (`store`) and its files (`files`).

The layout is a contract (docs/architecture.md): config.yaml, status.json, meta.json, elbo.csv,
diagnostics.csv, approx.npz (`posterior.params`), then what `bnn evaluate` writes.
"""

from bnn_cli.runs.store import (
    STATES,
    Run,
    create_run_dir,
    incomplete_message,
    list_runs,
    mark_ended,
    open_run,
    process_gone,
    read_status,
    recorded_data_dir,
    run_config,
    run_data_dir,
    utc_now,
    write_status,
)

__all__ = [
    "STATES",
    "Run",
    "create_run_dir",
    "incomplete_message",
    "list_runs",
    "mark_ended",
    "open_run",
    "process_gone",
    "read_status",
    "recorded_data_dir",
    "run_config",
    "run_data_dir",
    "utc_now",
    "write_status",
]
