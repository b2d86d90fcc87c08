"""The random streams of a run: each its own child of the config's seed."""

import numpy as np

from bnn_cli import seeds


def test_each_stream_is_the_seed_and_its_number():
    first = seeds.stream(7, seeds.PREDICTIVE).standard_normal(3)
    np.testing.assert_array_equal(first, np.random.default_rng([7, 2]).standard_normal(3))
    numbers = (seeds.INITIAL_WEIGHTS, seeds.PREDICTIVE, seeds.PRIOR_SCALES, seeds.MINIBATCH_ORDER)
    assert numbers == (1, 2, 3, 4)


def test_streams_of_one_seed_do_not_overlap():
    draws = [seeds.stream(0, n).standard_normal(4) for n in (1, 2, 3, 4)]
    assert len({tuple(d) for d in draws}) == 4


def test_meta_json_records_the_streams_as_before():
    assert seeds.recorded(5) == {
        "config": 5,
        "advi": 5,
        "initial_weights": [5, 1],
        "predictive": [5, 2],
        "minibatch_order": [5, 4],
        "local_noise": [5, 5],
    }
