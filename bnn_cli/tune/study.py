"""The study database: Optuna's storage (an SQLite file beside the trials by default, or any URL
Optuna takes), the seeded sampler and the pruner, and the bookkeeping that lets a study be
continued: which trials count towards the budget, and which were cut off and are retried.

A trial's user attributes say where its fit lives (`run_dir`), which `bnn tune` process runs it
(`host`, `pid`), and, for a retried trial, the trial it replaces (`retry_of`) and the run it
resumes (`resume`), or why it starts over (`started_over`)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Literal, cast

from filelock import FileLock

from bnn_cli.atomic import pid_alive
from bnn_cli.errors import ConfigError
from bnn_cli.fit.resume import why_not_resumable
from bnn_cli.sweep.point import runs_named
from bnn_cli.tune.spec import Param, TuneSpec

logger = logging.getLogger(__name__)

STUDY_FILE = "study.db"


def import_optuna() -> Any:
    """Optuna, its INFO lines ("A new study created", one per trial) left to --debug: the
    tuner prints its own line per trial."""
    import optuna  # lazy: imports Optuna

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def default_storage(folder: Path) -> str:
    return f"sqlite:///{(Path(folder) / STUDY_FILE).resolve()}"


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at `url`; a URL it cannot open, or a database that is not an
    Optuna study database, is a ConfigError (exit 2) that names it."""
    import sqlalchemy  # lazy: imports SQLAlchemy (Optuna's storage)

    optuna = import_optuna()
    _check_sqlite_file(url)
    try:
        with _creation_lock(url):
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except ImportError as exc:  # the database's driver, e.g. psycopg2 for PostgreSQL
        driver = getattr(exc.__cause__, "name", None) or exc.name
        raise ConfigError(
            f"--storage '{url}' cannot be opened: its database's Python driver is not installed"
            + (f" (pip install {driver})" if driver else "")
        ) from None
    except (ValueError, sqlalchemy.exc.ArgumentError) as exc:
        raise ConfigError(f"--storage '{url}' cannot be opened: {_first_line(exc)}") from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError) as exc:
        raise ConfigError(
            f"--storage '{url}' cannot be opened as an Optuna study database: "
            f"{_first_line(exc)} (give a new file or an existing study's database)"
        ) from None


def _creation_lock(url: str) -> Any:
    """Two processes opening a new SQLite file at once would both create its tables (one fails
    on Optuna's schema version): a lock file beside it lets one create, the other then open.
    A database server orders this itself."""
    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    return FileLock(url[len("sqlite:///") :] + ".lock")


def _engine_kwargs(url: str) -> dict[str, Any]:
    # Several processes (the tuner and each trial's fit) write to one SQLite file: wait for
    # the lock rather than fail at once (SQLite's default is 5 s).
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def _check_sqlite_file(url: str) -> None:
    """SQLite would turn any existing file into a database or fail deep inside Alembic: check
    that an existing file is an SQLite database first."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url[len("sqlite:///") :])
    advice = "give a new file or an existing study's database"
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                raise ConfigError(
                    f"--storage '{url}': '{path}' is not an SQLite database ({advice})"
                )
        tables = _sqlite_tables(path)
        if tables and "studies" not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise ConfigError(
                f"--storage '{url}': '{path}' is a database, but not of Optuna studies (its "
                f"tables: {shown}); {advice}"
            )
    elif not path.parent.is_dir():
        raise ConfigError(f"--storage '{url}': the folder '{path.parent}' does not exist")


def _sqlite_tables(path: Path) -> set[str]:

    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error as exc:
        raise ConfigError(f"--storage: cannot read '{path}': {exc}") from None
    return {name for (name,) in rows}


def open_study(spec: TuneSpec, storage_url: str) -> Any:
    """Create the study, or load it to continue; refuses one whose direction differs."""
    import optuna  # lazy: imports Optuna

    storage = open_storage(storage_url)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    if spec.name in existing:
        direction = existing[spec.name].direction.name.lower()
        if direction != spec.direction:
            raise ConfigError(
                f"study '{spec.name}' in '{storage_url}' was created to {direction}, and the tune "
                f"file asks to {spec.direction}: give the study another name, or another --storage"
            )
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction=cast(Literal["minimize", "maximize"], spec.direction),
        sampler=make_sampler(spec),
        pruner=make_pruner(spec.pruner.__dict__),
        load_if_exists=True,
    )
    # The sampler's seed moves on with the study: a continued study (or a second tuner joining
    # one) seeded as its first start would propose the first start's values over again.
    study.sampler = make_sampler(spec, offset=len(study.get_trials(deepcopy=False)))
    for params in spec.enqueue:  # once per study: a continued study has them already
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def make_sampler(spec: TuneSpec, offset: int = 0) -> Any:
    """The seeded sampler; `offset` (the trials the study already holds) is added to the seed,
    so a new study is reproducible from `sampler.seed` and a continued one draws new values."""
    import optuna  # lazy: imports Optuna

    sampler, seed = spec.sampler, spec.sampler.seed + offset
    if sampler.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=sampler.startup_trials)


def make_pruner(settings: dict[str, Any]) -> Any:
    """The pruner from the tune file's `pruner:` (a plain dict: it also travels to each trial's
    fit, which asks it whether to stop)."""
    import optuna  # lazy: imports Optuna

    kind = settings["kind"]
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=settings["min_resource"], reduction_factor=settings["reduction_factor"]
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=settings["startup_trials"], n_warmup_steps=settings["warmup_steps"]
    )


def suggest(trial: Any, space: tuple[Param, ...]) -> dict[str, Any]:
    """The trial's value for each dotted key of the space (a retried trial gets its enqueued
    values back)."""
    values = {}
    for p in space:
        if p.kind == "categorical":
            values[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.kind == "int":
            values[p.key] = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            values[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
    return values


def counted(study: Any) -> int:
    """Trials that count towards the budget: complete, pruned, failed for good (a diverged
    fit), and those running now. A trial cut off by a killed process does not count (its retry
    does), nor one waiting in the queue until it is asked."""

    return sum(1 for t in study.get_trials(deepcopy=False) if _counts(t))


def _counts(t: Any) -> bool:
    from optuna.trial import TrialState  # lazy: imports Optuna

    if t.state == TrialState.FAIL:
        return not (t.user_attrs.get("retry") or t.user_attrs.get("surplus"))
    return t.state != TrialState.WAITING


def surplus(study: Any, trial: Any, budget: int) -> bool:
    """Whether `trial`, just asked, is past the budget: two tuners on one study may both see
    room for one more trial and ask at once; the later-numbered one then gives way (failed,
    marked `surplus`, never counted), so the study ends with exactly `budget` trials."""
    from optuna.trial import TrialState  # lazy: imports Optuna

    ahead = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and _counts(t)]
    if len(ahead) < budget:
        return False
    study._storage.set_trial_user_attr(trial._trial_id, "surplus", True)
    study.tell(trial, state=TrialState.FAIL)
    return True


def finished(study: Any) -> list:
    from optuna.trial import TrialState  # lazy: imports Optuna

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False) if t.state in done]


def reconcile(study: Any, spec: TuneSpec, runs_dir: Path) -> list[int]:
    """Make a continued study honest: a trial `running` whose `bnn tune` process is gone (on this
    host) is marked failed, and every trial cut off (killed or interrupted) is enqueued again
    once, with its run (found by its config name in `runs_dir` if its tuner died before hearing
    back) to resume from. Returns the numbers of the trials re-enqueued."""
    from optuna.trial import TrialState  # lazy: imports Optuna

    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING and _owner_gone(trial):
            study._storage.set_trial_user_attr(trial._trial_id, "retry", True)
            study._storage.set_trial_user_attr(trial._trial_id, "error", "its bnn tune was killed")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    again = []
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.user_attrs.get("retry"):
            if trial.number in retried:
                continue
            attrs = {"retry_of": trial.number}
            name = trial.user_attrs.get("config_name")
            run_dir = trial.user_attrs.get("run_dir") or _newest_run(runs_dir, name)
            # `bnn train --resume`'s own test: cut off after a checkpoint of this very config
            why: str | None = "its run was not found"
            if run_dir and name:
                why = why_not_resumable(Path(run_dir), spec.config_for(trial.params, name))
            if why is None:
                attrs["resume"] = run_dir
            else:
                attrs["started_over"] = why
            study.enqueue_trial(trial.params, user_attrs=attrs)
            again.append(trial.number)
    return again


def _newest_run(runs_dir: Path, config_name: str | None) -> str | None:

    found = runs_named(Path(runs_dir), config_name) if config_name else []
    return str(found[-1]) if found else None


def _owner_gone(trial: Any) -> bool:
    host, pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
    return host == platform.node() and isinstance(pid, int) and not pid_alive(pid)


def owner_attrs() -> dict[str, Any]:

    return {"host": platform.node(), "pid": os.getpid()}


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def set_attrs(study: Any, trial_id: int, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial_id, key, value)
