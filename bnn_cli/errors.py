"""The project's errors: each carries a user-facing message and a documented exit code."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: unexpected exception
    USAGE = 2  # bad command line or configuration
    DATA = 3  # download, checksum or parse failure
    RUN = 4  # run directory missing, incomplete or corrupt
    # Finished, but some sweep points or ensemble members failed while the others completed:
    # a partial result that a script can tell from a bug (1), as black keeps 123 apart from 1.
    PARTIAL = 5
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


# Set by a sweep (or an ensemble) for the `bnn train` it starts in a session of its own, where
# no terminal's Ctrl-C can reach it: the sweep forwards its own SIGINT, so the child must heed
# SIGINT even if it inherited it ignored (a sweep started in the background by a shell).
SIGINT_FROM_PARENT = "BNN_SIGINT_FROM_PARENT"


class BnnError(Exception):
    """Base class: `str(err)` is the one line shown to the user after `error: `."""

    exit_code = ExitCode.INTERNAL


class ConfigError(BnnError):
    exit_code = ExitCode.USAGE


class DataError(BnnError):
    exit_code = ExitCode.DATA


class RunError(BnnError):
    exit_code = ExitCode.RUN


class FitFailed(BnnError):
    """The fit diverged (NaN or infinite loss); the run is kept with state `failed`. Exit 2: the
    remedy is a configuration change (learning rate, start_sigma), not a bug report."""

    exit_code = ExitCode.USAGE
