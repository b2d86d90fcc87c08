"""The study's figures as PNG bytes: the optimization history (every trial's objective, pruned
ones at their last report, and the best so far), the parameters' importances (Optuna's
fANOVA-style evaluator, once enough trials are complete), and one slice plot per parameter
(the objective against its value)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bnn_cli.report.plots import render
from bnn_cli.tune.spec import TuneSpec

logger = logging.getLogger(__name__)

COMPLETE_COLOR, PRUNED_COLOR, BEST_COLOR = "#4c72b0", "#bbbbbb", "#c44e52"
MIN_FOR_IMPORTANCE = 3  # complete trials: fewer and the importances are noise (or refused)


def study_plots(study: Any, spec: TuneSpec) -> dict[str, bytes]:
    points = _points(study)
    if not points:
        return {}
    pictures = {"tune_history.png": render(_draw_history, points, spec, figsize=(7, 4))}
    importances = _importances(study, spec)
    if importances:
        pictures["tune_importance.png"] = render(_draw_importance, importances, figsize=(6, 3))
    height = 2.6 * ((len(spec.space) + 1) // 2)
    pictures["tune_slice.png"] = render(_draw_slices, points, spec, figsize=(9, height))
    return pictures


def _points(study: Any) -> list[dict]:
    """Complete trials with their value; pruned ones with their last reported value."""
    points = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" and t.value is not None:
            points.append({"number": t.number, "value": t.value, "pruned": False, **t.params})
        elif t.state.name == "PRUNED" and t.intermediate_values:
            last = t.intermediate_values[max(t.intermediate_values)]
            points.append({"number": t.number, "value": last, "pruned": True, **t.params})
    return points


def _draw_history(fig: Any, points: list[dict], spec: TuneSpec) -> None:
    ax = fig.add_subplot(1, 1, 1)
    for pruned, color, label in ((False, COMPLETE_COLOR, "complete"), (True, PRUNED_COLOR, "")):
        chosen = [p for p in points if p["pruned"] == pruned]
        if chosen:
            ax.scatter(
                [p["number"] for p in chosen],
                [p["value"] for p in chosen],
                color=color,
                s=22,
                label=label or "pruned (last report)",
                zorder=3,
            )
    complete = sorted((p for p in points if not p["pruned"]), key=lambda p: p["number"])
    if complete:
        pick = np.minimum if spec.direction == "minimize" else np.maximum
        best = pick.accumulate([p["value"] for p in complete])
        ax.step(
            [p["number"] for p in complete],
            best,
            where="post",
            color=BEST_COLOR,
            label="best so far",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{spec.objective} (validation)")
    ax.set_title("Optimization history")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)


def _importances(study: Any, spec: TuneSpec) -> dict[str, float]:
    import optuna  # lazy: imports Optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < MIN_FOR_IMPORTANCE or len(spec.space) < 2:
        return {}
    try:
        return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ImportError) as exc:  # e.g. every value the same
        logger.info("parameter importances not drawn: %s", exc)
        return {}


def _draw_importance(fig: Any, importances: dict[str, float]) -> None:
    ax = fig.add_subplot(1, 1, 1)
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color=COMPLETE_COLOR)
    ax.set_xlabel("importance (share of the objective's variance)")
    ax.set_title("Parameter importances")
    ax.set_xlim(0, 1)


def _draw_slices(fig: Any, points: list[dict], spec: TuneSpec) -> None:
    rows = (len(spec.space) + 1) // 2
    for i, param in enumerate(spec.space):
        ax = fig.add_subplot(rows, 2, i + 1)
        for pruned, color in ((True, PRUNED_COLOR), (False, COMPLETE_COLOR)):
            chosen = [p for p in points if p["pruned"] == pruned and param.key in p]
            if not chosen:
                continue
            xs = [p[param.key] for p in chosen]
            if param.kind == "categorical":
                xs = [list(param.choices).index(x) for x in xs]
            ax.scatter(xs, [p["value"] for p in chosen], color=color, s=16)
        if param.kind == "categorical":
            ax.set_xticks(range(len(param.choices)), [str(c) for c in param.choices])
        elif param.log:
            ax.set_xscale("log")
        ax.set_xlabel(param.key)
        ax.set_ylabel(spec.objective)
        ax.grid(alpha=0.3)
    fig.suptitle("Objective against each parameter (grey: pruned, at its last report)")
    fig.tight_layout()  # keeps each panel's axis label clear of the panel below
