"""Where a mean-field fit stands: per-tensor summaries of the approximation's scales, and the
verdict on whether it was still moving when the fit stopped.

Adam moves each parameter by at most about one step size per iteration. A `rho` (PyMC's
softplus-parametrized scale) that is still being pushed one way at every step therefore moves
by close to the sum of the step sizes; one that has settled wanders around its optimum and
moves by a small fraction of it. That fraction, the *drift*, tells a step-limited posterior
from a fitted one whatever the learning-rate schedule, where a plain "did sigma change" test
would call any fit converged once a cosine schedule has shrunk the step to nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnn_cli.posterior import params

WINDOW_SHARE = 0.1  # the verdict looks at the last 10 % of the iterations
DRIFT_LIMIT = 0.25  # median |change of rho| over the window / sum of rho's step sizes
LOSS_LIMIT = 0.01  # relative fall of the smoothed loss over the window
LOSS_SMOOTHING = 100  # iterations averaged at each end of the window
SNR_LIMIT = 1.0  # a weight whose |mu| / sigma is below this is indistinguishable from 0


def tensor_summaries(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per variable of the approximation: its size, the median of its standard deviations and
    the share of its entries whose signal-to-noise ratio |mu| / sigma is below 1."""
    out = {}
    for name in params.tensor_names(arrays):
        mu, sigma = params.mean_and_sd(arrays, name)
        out[name] = {
            "size": int(mu.size),
            "median_sigma": float(np.median(sigma)),
            "share_snr_below_1": float(np.mean(np.abs(mu) < SNR_LIMIT * sigma)),
        }
    return out


def window_start(iterations: int, steps_per_call: int = 1) -> int:
    """The iteration (0-based count done) at which the verdict's window opens: the last call
    boundary at or before the last 10 %. Between boundaries of a K-step call the parameters
    seen are already those at the call's end, so a snapshot there would measure no change."""
    opens = max(0, iterations - max(1, math.ceil(iterations * WINDOW_SHARE)))
    return opens - opens % steps_per_call


@dataclass
class Snapshot:
    """The approximation's scales and the smoothed loss at the start of the window."""

    iteration: int
    rho: dict[str, np.ndarray]
    loss: float


def snapshot(arrays: dict[str, np.ndarray], iteration: int, losses: list[float]) -> Snapshot:
    rho = {
        name: np.array(params.rho(arrays, name), dtype=np.float64)
        for name in params.tensor_names(arrays)
    }
    return Snapshot(iteration, rho, smoothed(losses))


def smoothed(losses: list[float]) -> float:
    recent = losses[-LOSS_SMOOTHING:]
    return float(np.mean(recent)) if recent else math.nan


STEP_LIMIT = "the uncertainty reported is partly the optimizer's step limit, not the posterior."
UNSETTLED_POINT = "the point estimate (MAP) had not settled."


def convergence_verdict(
    start: Snapshot,
    arrays: dict[str, np.ndarray],
    iteration: int,
    losses: list[float],
    rho_step_sum: float,
    advice: str,
    consequence: str = STEP_LIMIT,
) -> dict:
    """Was the approximation still moving over [start.iteration, iteration]?

    `rho_step_sum` is the sum of the step sizes the optimizer applied to rho over the window;
    `advice` names the settings to change, `consequence` what an unsettled fit means. Returns a
    JSON-ready dict: `converged`, the window, the loss change, per tensor the median sigma at
    both ends and the drift, and a `message` (None when converged)."""
    tensors: dict[str, dict[str, Any]] = {}
    for name, rho_start in start.rho.items():
        rho_end = np.asarray(params.rho(arrays, name), dtype=np.float64)
        change = rho_end - rho_start
        moved = float(np.median(np.abs(change)))
        tensors[name] = {
            "direction": "rising" if np.median(change) >= 0 else "falling",
            "median_sigma_start": float(np.median(params.softplus(rho_start))),
            "median_sigma_end": float(np.median(params.softplus(rho_end))),
            "drift": moved / rho_step_sum if rho_step_sum > 0 else 0.0,
        }
    loss_end = smoothed(losses)
    loss_change = (loss_end - start.loss) / abs(start.loss) if start.loss else math.nan
    moving = [name for name, t in tensors.items() if t["drift"] > DRIFT_LIMIT]
    loss_falling = math.isfinite(loss_change) and loss_change < -LOSS_LIMIT
    verdict = {
        "converged": not moving and not loss_falling,
        "window": [start.iteration, iteration],
        "loss_change": loss_change,
        "drift_limit": DRIFT_LIMIT,
        "loss_limit": LOSS_LIMIT,
        "moving_tensors": moving,
        "tensors": tensors,
        "message": None,
    }
    if not verdict["converged"]:
        verdict["message"] = not_converged_message(verdict, advice, consequence)
    return verdict


def not_converged_message(verdict: dict, advice: str, consequence: str = STEP_LIMIT) -> str:
    first, last = verdict["window"]
    parts = []
    if verdict["moving_tensors"]:
        tensors = verdict["tensors"]
        name = max(verdict["moving_tensors"], key=lambda n: tensors[n]["drift"])
        t = tensors[name]
        parts.append(
            f"the standard deviations of {len(verdict['moving_tensors'])} of {len(tensors)} "
            f"tensors were still moving at up to {t['drift']:.0%} of the optimizer's top speed "
            f"({name}: median sigma {t['median_sigma_end']:.3g}, {t['direction']})"
        )
    if verdict["loss_change"] < -LOSS_LIMIT:
        parts.append(f"the smoothed loss fell {-verdict['loss_change']:.1%}")
    return (
        f"the approximation was still moving when the fit stopped: over iterations "
        f"{first}-{last} {' and '.join(parts)}; {consequence} {advice}"
    )


def validation_verdict(metric: str, kept: int, best: float, iterations: int, message: str) -> dict:
    """The verdict of a fit that kept its best validation point rather than its last: the
    parameters were chosen on validation data, which is not a warning. `converged` stays None:
    the approximation was not run to its optimum on purpose."""
    return {
        "converged": None,
        "stopped_on_validation": True,
        "metric": metric,
        "kept_iteration": kept,
        "best": best,
        "iterations_done": iterations,
        "message": message,
    }
