"""The Conv2D and MaxPool2D ops: values and gradients against SciPy and NumPy references and
finite differences, on every backend."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.signal import correlate

from bnn_cli.engine import backend
from bnn_cli.models.ops import FEW_CHANNELS, conv2d_valid, max_pool2d

BACKENDS = ["c", "numba", "jax"]


def scipy_conv(x, kernel):
    """'valid' cross-correlation, one output channel at a time, summed over input channels."""
    n, c_out = x.shape[0], kernel.shape[3]
    out = [
        [correlate(x[i], kernel[..., o], mode="valid")[..., 0] for o in range(c_out)]
        for i in range(n)
    ]
    return np.moveaxis(np.array(out), 1, -1)


def numpy_conv_and_gradients(x, kernel, weights):
    """'valid' cross-correlation and the gradients of sum(out * weights) + sum(out**2), in
    NumPy: the reference, with nothing to compile."""
    k_h, k_w = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (k_h, k_w), axis=(1, 2))
    out = np.einsum("nijcab,abco->nijo", windows, kernel)
    grad_out = weights + 2 * out
    d_kernel = np.einsum("nijcab,nijo->abco", windows, grad_out)
    d_x = np.zeros_like(x)
    for a in range(k_h):
        for b in range(k_w):
            d_x[:, a : a + out.shape[1], b : b + out.shape[2]] += grad_out @ kernel[a, b].T
    return out, d_x, d_kernel


@pytest.fixture(scope="module")
def restore_backend():
    yield
    backend.configure("float32", "c")


def compile_with_gradients(conv, x, kernel, weights, mode):
    xs = pt.tensor("x", shape=x.shape, dtype="float64")
    ks = pt.tensor("k", shape=kernel.shape, dtype="float64")
    out = conv(xs, ks)
    cost = (out * weights).sum() + (out**2).sum()
    return pytensor.function([xs, ks], [out, *pytensor.grad(cost, [xs, ks])], mode=mode)


# One case with few input channels, one with many: the kernel gradient takes two routes.
# Numba compiles slowly (half a minute a case), so it checks the first case only.
CONV_CASES = [((2, 8, 7, 1), (3, 3, 1, 4)), ((2, 7, 7, FEW_CHANNELS), (5, 2, 8, 3))]


@pytest.mark.parametrize(
    "backend_name, x_shape, k_shape",
    [(name, *case) for case in CONV_CASES for name in BACKENDS if name != "numba"]
    + [("numba", *CONV_CASES[0])],
)
def test_values_and_gradients_match_scipy_and_numpy(
    backend_name, x_shape, k_shape, restore_backend
):
    mode = backend.configure("float64", backend_name)
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=x_shape), rng.normal(size=k_shape)
    out_shape = (x_shape[0], x_shape[1] - k_shape[0] + 1, x_shape[2] - k_shape[1] + 1, k_shape[3])
    weights = rng.normal(size=out_shape)
    out, dx, dk = compile_with_gradients(conv2d_valid, x, kernel, weights, mode)(x, kernel)
    ref_out, ref_dx, ref_dk = numpy_conv_and_gradients(x, kernel, weights)
    assert out.shape == out_shape
    np.testing.assert_allclose(out, scipy_conv(x, kernel), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dk, ref_dk, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c_in", [1, FEW_CHANNELS])
def test_gradient_matches_finite_differences(c_in, restore_backend):
    backend.configure("float64", "c")
    rng = np.random.default_rng(1)
    x, kernel = rng.normal(size=(2, 6, 5, c_in)), rng.normal(size=(3, 2, c_in, 2))
    pytensor.gradient.verify_grad(
        lambda xs, ks: (conv2d_valid(xs, ks) ** 2).sum(),
        [x, kernel],
        rng=rng,
        abs_tol=1e-5,
        rel_tol=1e-5,
    )


def test_static_output_shape():
    xs = pt.tensor("x", shape=(None, 28, 28, 1))
    ks = pt.tensor("k", shape=(5, 5, 1, 32))
    assert conv2d_valid(xs, ks).type.shape == (None, 24, 24, 32)


def test_rejects_wrong_rank():
    with pytest.raises(TypeError, match="4-D"):
        conv2d_valid(pt.matrix("x"), pt.tensor4("k"))


def numpy_max_pool_and_gradient(x, p, weights):
    """Max over each p x p window (rows and columns past the last whole window dropped) and the
    gradient of sum(out * weights): each window's weight goes to its maximum."""
    n, h, w, c = x.shape
    windows = x[:, : h // p * p, : w // p * p].reshape((n, h // p, p, w // p, p, c))
    out = windows.max(axis=(2, 4))
    is_max = windows == out[:, :, None, :, None, :]  # no ties: the inputs are continuous
    grad = np.zeros_like(x)
    grad[:, : h // p * p, : w // p * p] = (is_max * weights[:, :, None, :, None, :]).reshape(
        (n, h // p * p, w // p * p, c)
    )
    return out, grad


POOL_CASES = [(8, 2), (9, 2), (7, 3)]


@pytest.mark.parametrize(
    "backend_name, side, p",
    [(name, *case) for case in POOL_CASES for name in BACKENDS if name != "numba"]
    + [("numba", *POOL_CASES[1])],
)
def test_max_pool_and_its_gradient_match_numpy(backend_name, side, p, restore_backend):
    mode = backend.configure("float64", backend_name)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, side, side + 1, 3))
    xs = pt.tensor("x", shape=x.shape, dtype="float64")
    weights = rng.normal(size=(2, side // p, (side + 1) // p, 3))
    out = max_pool2d(xs, p)
    cost = (out * weights).sum()
    out, grad = pytensor.function([xs], [out, pytensor.grad(cost, xs)], mode=mode)(x)
    ref_out, ref_grad = numpy_max_pool_and_gradient(x, p, weights)
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(grad, ref_grad)
    assert (grad[:, side // p * p :] == 0).all()  # dropped rows get no gradient
