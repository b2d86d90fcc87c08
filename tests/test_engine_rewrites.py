"""The float32 normal rewrite (same distribution, float32 all the way, seeded, opt-in) and the
flat-gradient join (the same gradient, one join instead of a chain of increments)."""

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import get_default_mode

from bnn_cli.engine.rewrites import JOIN_TAG, Float32NormalRV, c_mode


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


def flat_gradient(mode, slices):
    """The gradient of a flat vector sliced into tensors, as PyMC's mean-field uses it."""
    flat = pt.vector("flat", shape=(10,), dtype="float32")
    loss = sum(((k + 1) * flat[a:b] ** 2).sum() for k, (a, b) in enumerate(slices))
    return pytensor.function([flat], pytensor.grad(loss, flat), mode=mode)


def test_a_flat_gradient_of_disjoint_slices_is_one_join():
    slices = [(0, 4), (4, 5), (7, 10)]  # 5:7 unused: its gradient is zero
    value = np.arange(10, dtype="float32")
    plain = flat_gradient("FAST_RUN", slices)
    joined = flat_gradient(get_default_mode().including(JOIN_TAG), slices)
    ops = {type(node.op).__name__ for node in joined.maker.fgraph.apply_nodes}
    assert "Join" in ops and "IncSubtensor" not in ops
    assert "IncSubtensor" in {type(node.op).__name__ for node in plain.maker.fgraph.apply_nodes}
    np.testing.assert_array_equal(joined(value), plain(value))
    assert joined(value)[5:7].tolist() == [0, 0]


def test_overlapping_slices_still_add_up():
    slices = [(0, 6), (4, 10)]
    value = np.arange(10, dtype="float32")
    joined = flat_gradient(get_default_mode().including(JOIN_TAG), slices)
    np.testing.assert_array_equal(joined(value), flat_gradient("FAST_RUN", slices)(value))
    assert "Join" not in {type(node.op).__name__ for node in joined.maker.fgraph.apply_nodes}
