"""The float32 normal rewrite: same distribution, float32 all the way, seeded, opt-in."""

import numpy as np
import pytensor
import pytensor.tensor as pt

from bnn_cli.rewrites import Float32NormalRV, c_mode


def draw_fn(dtype: str, seed: int, mode):
    rng = pytensor.shared(np.random.default_rng(seed))
    x = pt.random.normal(0, 1, size=(200_000,), rng=rng, dtype=dtype)
    return pytensor.function([], x, mode=mode)


def test_float32_normals_are_drawn_in_float32_with_the_right_moments():
    fn = draw_fn("float32", 0, c_mode())
    ops = [type(node.op) for node in fn.maker.fgraph.toposort()]
    assert Float32NormalRV in ops
    draws = fn()
    assert draws.dtype == np.float32
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01
    np.testing.assert_array_equal(draws, draw_fn("float32", 0, c_mode())())


def test_float64_graphs_are_untouched():
    fn = draw_fn("float64", 0, c_mode())
    assert Float32NormalRV not in [type(node.op) for node in fn.maker.fgraph.toposort()]


def test_loc_and_scale_are_applied():
    rng = pytensor.shared(np.random.default_rng(1))
    x = pt.random.normal(np.float32(3), np.float32(2), size=(100_000,), rng=rng, dtype="float32")
    draws = pytensor.function([], x, mode=c_mode())()
    assert abs(draws.mean() - 3) < 0.05 and abs(draws.std() - 2) < 0.05
