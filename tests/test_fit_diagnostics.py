"""The fit diagnostics: per-tensor summaries and the convergence verdict."""

import math

import numpy as np
import pytest

from bnn_cli.fit import diagnostics as d
from bnn_cli.posterior import params


def rho_of(sigma):
    return np.log(np.expm1(sigma))


def arrays_with(mu, sigma, name="w"):
    return {
        params.key(params.MU, name): np.asarray(mu, float),
        params.key(params.RHO, name): rho_of(np.asarray(sigma, float)),
    }


def test_tensor_summaries_median_sigma_and_low_snr_share():
    arrays = arrays_with([0.5, 0.05, 2.0, -0.01], [0.1, 0.1, 0.1, 0.1])
    arrays.update(arrays_with([1.0], [0.5], name="b"))
    summary = d.tensor_summaries(arrays)
    assert list(summary) == ["w", "b"]
    assert summary["w"]["size"] == 4
    assert summary["w"]["median_sigma"] == pytest.approx(0.1)
    assert summary["w"]["share_snr_below_1"] == pytest.approx(0.5)  # 0.05 and -0.01
    assert summary["b"]["share_snr_below_1"] == 0.0


@pytest.mark.parametrize(("iterations", "start"), [(10000, 9000), (300, 270), (5, 4), (1, 0)])
def test_window_is_the_last_tenth(iterations, start):
    assert d.window_start(iterations) == start


@pytest.mark.parametrize(
    ("iterations", "k", "start"), [(10000, 10, 9000), (40, 10, 30), (300, 100, 200), (40, 20, 20)]
)
def test_window_opens_on_a_call_boundary(iterations, k, start):
    """Inside a K-step call the parameters are already the call's last: no snapshot there."""
    assert d.window_start(iterations, k) == start
    assert start % k == 0


def verdict_for(rho_change, losses, step_sum=0.1):
    rng = np.random.default_rng(0)
    rho = rng.normal(-5, 0.1, size=1000)
    start = d.Snapshot(900, {"w": rho}, float(np.mean(losses[:100])))
    end = {"mu/w": np.zeros(1000), "rho/w": rho + rho_change}
    return d.convergence_verdict(start, end, 1000, losses, step_sum, "Raise inference.iterations.")


def test_scales_pushed_at_full_step_are_not_converged():
    verdict = verdict_for(rho_change=0.1, losses=[100.0] * 200)  # moved by the whole step sum
    assert not verdict["converged"]
    assert verdict["moving_tensors"] == ["w"]
    assert verdict["tensors"]["w"]["drift"] == pytest.approx(1.0)
    assert verdict["tensors"]["w"]["direction"] == "rising"
    message = verdict["message"]
    assert message.startswith("the approximation was still moving when the fit stopped")
    assert "over iterations 900-1000" in message and "100% of the optimizer's top speed" in message
    assert message.endswith("Raise inference.iterations.")


def test_scales_wandering_around_their_optimum_are_converged():
    rng = np.random.default_rng(1)
    wander = rng.normal(0, 0.01, size=1000)  # a random walk, not a push: |change| << step sum
    verdict = verdict_for(rho_change=wander, losses=[100.0] * 200)
    assert verdict["converged"] and verdict["message"] is None
    assert verdict["tensors"]["w"]["drift"] < d.DRIFT_LIMIT


def test_a_falling_loss_is_not_converged():
    losses = list(np.linspace(110.0, 100.0, 200))  # 9 % lower at the end
    verdict = verdict_for(rho_change=0.0, losses=losses)
    assert not verdict["converged"] and verdict["moving_tensors"] == []
    assert verdict["loss_change"] < -d.LOSS_LIMIT
    assert "the smoothed loss fell" in verdict["message"]


def test_no_step_means_no_drift():
    verdict = verdict_for(rho_change=0.0, losses=[1.0] * 10, step_sum=0.0)
    assert verdict["tensors"]["w"]["drift"] == 0.0 and verdict["converged"]
    assert math.isfinite(verdict["loss_change"])
