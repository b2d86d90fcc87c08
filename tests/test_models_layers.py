"""Conv, pool and dense layers against NumPy references: values and gradients."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bnn_cli.models.layers import conv2d, conv_output_side, dense, max_pool
from bnn_cli.models.ops import im2col


def conv_reference(x, kernel, bias):
    n, h, w, _ = x.shape
    k, _, _, c_out = kernel.shape
    out = np.zeros((n, h - k + 1, w - k + 1, c_out))
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            patch = x[:, i : i + k, j : j + k, :]
            out[:, i, j, :] = np.einsum("nabc,abcf->nf", patch, kernel)
    return out + bias


def pool_reference(x, p):
    n, h, w, c = x.shape
    out = np.full((n, h // p, w // p, c), -np.inf)
    for i in range(h // p * p):
        for j in range(w // p * p):
            out[:, i // p, j // p] = np.maximum(out[:, i // p, j // p], x[:, i, j])
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("k, c_in, c_out, side", [(3, 1, 4, 8), (5, 3, 2, 9), (1, 2, 3, 4)])
def test_conv2d_matches_numpy(rng, k, c_in, c_out, side):
    x = rng.normal(size=(2, side, side, c_in))
    kernel = rng.normal(size=(k, k, c_in, c_out))
    bias = rng.normal(size=(c_out,))
    xs, ks, bs = (
        pt.tensor4("x", dtype="float64"),
        pt.tensor4("k", dtype="float64"),
        pt.vector("b", dtype="float64"),
    )
    out = pytensor.function([xs, ks, bs], conv2d(xs, ks, bs))(x, kernel, bias)
    np.testing.assert_allclose(out, conv_reference(x, kernel, bias), rtol=1e-10)


def test_im2col_orders_row_col_channel(rng):
    x = rng.normal(size=(1, 4, 4, 2))
    xs = pt.tensor4("x", dtype="float64")
    cols = pytensor.function([xs], im2col(xs, 2))(x)
    assert cols.shape == (1, 3, 3, 8)
    np.testing.assert_allclose(cols[0, 1, 2], x[0, 1:3, 2:4, :].reshape(-1))


@pytest.mark.parametrize("side, p", [(8, 2), (9, 2), (6, 3)])
def test_max_pool_matches_numpy(rng, side, p):
    x = rng.normal(size=(2, side, side, 3))
    xs = pt.tensor4("x", dtype="float64")
    out = pytensor.function([xs], max_pool(xs, p))(x)
    np.testing.assert_allclose(out, pool_reference(x, p))


def test_conv_pool_gradient_matches_finite_differences(rng):
    x = rng.normal(size=(2, 6, 6, 2))
    kernel = rng.normal(size=(3, 3, 2, 2))
    bias = rng.normal(size=(2,))

    def objective(xs, ks, bs):
        return (max_pool(conv2d(xs, ks, bs), 2) ** 2).sum()

    pytensor.gradient.verify_grad(objective, [x, kernel, bias], rng=rng, abs_tol=1e-5, rel_tol=1e-5)


def test_dense_gradient(rng):
    pytensor.gradient.verify_grad(
        lambda a, w, b: (dense(a, w, b) ** 2).sum(),
        [rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=(2,))],
        rng=rng,
    )


def test_conv_output_side_of_the_lasagne_net():
    assert conv_output_side(28, 5, 2, 2) == 4  # 28 -> 24 -> 12 -> 8 -> 4
