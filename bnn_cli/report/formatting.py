"""The formatters every table and report shares: durations, percentages, numbers (a dash for
what is unknown), and the one-line descriptions of a run's objective and kept iteration. Used by
`bnn compare`, the reports, the sweep's summary and the tuner's report."""

from __future__ import annotations

import math
from typing import Any

from bnn_cli.report.tables import DASH


def format_duration(seconds: Any) -> str:
    """12.3 s, 4 min 05 s, 4 h 06 min; a dash when unknown."""
    value = finite_number(seconds)
    if value is None or value < 0:
        return DASH
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe_objective(inference: dict[str, Any], prior: dict[str, Any] | None = None) -> str:
    """ "ELBO", or how it was tempered: a KL weight below 1 fits a colder (narrower) posterior
    than the Bayesian one, which every report and comparison must say. A MAP fit's objective is
    the log joint density at a point: "MAP (no posterior)", its prior weighted like a tempered
    twin's KL term where asked. An ensemble's members each fit that objective. The collapsed
    bound (a prior's alpha below 1, or its collapsed hyperprior) and the analytic KL are
    named too."""
    size = inference.get("ensemble")
    members = f", ensemble of {size}" if size else ""
    weight, warmup = inference.get("kl_weight", 1.0), inference.get("kl_warmup", 0)
    ramp = f", warm-up {warmup} it" if warmup else ""
    if inference.get("method") == "map":
        tempered = f", prior x{weight:g}{ramp}" if weight != 1.0 or warmup else ""
        return f"MAP (no posterior{tempered}){members}"
    estimator = ", analytic KL" if inference.get("kl") == "analytic" else ""
    if inference.get("gradient") == "local":
        estimator += ", per-image noise"
    prior = prior or {}
    if prior.get("hyperprior") == "collapsed" and prior.get("kind") == "hierarchical":
        estimator += f", collapsed bound (variance and mean, alpha {prior.get('alpha', 1.0):g})"
    elif prior.get("alpha", 1.0) != 1.0:
        estimator += f", collapsed bound (mean, alpha {prior['alpha']:g})"
    if weight == 1.0 and not warmup:
        return f"ELBO{estimator}{members}"
    return f"tempered: KL x{weight:g}{ramp}{estimator}{members}"


def describe_kept(inference: dict[str, Any], status: dict[str, Any]) -> str:
    """Which iteration's parameters the run holds, and why."""
    done, kept = (
        status.get("iterations_done"),
        status.get("kept_iteration", status.get("iterations_done")),
    )
    metric = inference.get("early_stopping", "none")
    if metric in (None, "none"):
        return f"the last iteration ({done})"
    how = "stopped early" if status.get("stopped_early") else f"ran all {done}"
    return f"iteration {kept}, the best {metric} ({how}, patience {inference.get('patience', '?')})"


def format_percent(value: Any) -> str:
    number = finite_number(value)
    return DASH if number is None else f"{number:.2%}"


def format_number(value: Any, digits: int = 4) -> str:
    number = finite_number(value)
    return DASH if number is None else f"{number:.{digits}f}"


def finite_number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, text, nan)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def plain_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
