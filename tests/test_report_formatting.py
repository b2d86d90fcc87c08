"""The formatters the tables and reports share: a dash for what is unknown."""

import math

import pytest

from bnn_cli.report.formatting import (
    describe_kept,
    describe_objective,
    finite_number,
    format_duration,
    format_number,
    format_percent,
    plain_int,
)


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "—"), (12.34, "12.3 s"), (245, "4 min 05 s"), (14763, "4 h 06 min"), ("x", "—")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("inference", "objective"),
    [
        ({}, "ELBO"),
        ({"ensemble": 5}, "ELBO, ensemble of 5"),
        ({"kl_weight": 0.1, "ensemble": 3}, "tempered: KL x0.1, ensemble of 3"),
        ({"method": "map", "ensemble": 5}, "MAP (no posterior), ensemble of 5"),
    ],
)
def test_the_objective_says_an_ensemble(inference, objective):
    assert describe_objective(inference) == objective


def test_numbers_and_percentages_with_a_dash_for_the_unknown():
    assert (format_percent(0.9731), format_number(0.12345), format_number(2, digits=1)) == (
        "97.31%",
        "0.1235",
        "2.0",
    )
    for unknown in (None, math.nan, True, "0.5"):
        assert finite_number(unknown) is None
        assert format_percent(unknown) == format_number(unknown) == "—"
    assert (plain_int(3), plain_int(True), plain_int(3.0)) == (3, None, None)


def test_the_kept_iteration_says_why():
    assert describe_kept({}, {"iterations_done": 500}) == "the last iteration (500)"
    inference = {"early_stopping": "val_nll", "patience": 3}
    status = {"iterations_done": 400, "kept_iteration": 250, "stopped_early": True}
    assert describe_kept(inference, status) == (
        "iteration 250, the best val_nll (stopped early, patience 3)"
    )
