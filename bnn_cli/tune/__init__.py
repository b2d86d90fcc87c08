"""`bnn tune`: settings chosen on validation by Optuna, with pruning and a study database."""

from bnn_cli.tune.run import TuneResult, run_tune
from bnn_cli.tune.spec import TuneSpec, load_tune

__all__ = ["TuneResult", "TuneSpec", "load_tune", "run_tune"]
