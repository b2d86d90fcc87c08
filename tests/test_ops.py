"""The Conv2D and MaxPool2D ops: values against SciPy, the im2col layers and a reshape-max,
gradients against those graphs and finite differences, on every backend."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.signal import correlate

from bnn_cli.fit import backend
from bnn_cli.models.ops import FEW_CHANNELS, conv2d_valid, im2col, max_pool2d

BACKENDS = ["c", "numba", "jax"]


def scipy_conv(x, kernel):
    """'valid' cross-correlation, one output channel at a time, summed over input channels."""
    n, c_out = x.shape[0], kernel.shape[3]
    out = [
        [correlate(x[i], kernel[..., o], mode="valid")[..., 0] for o in range(c_out)]
        for i in range(n)
    ]
    return np.moveaxis(np.array(out), 1, -1)


def im2col_conv(x, kernel):
    k_h, k_w, c_in, c_out = kernel.type.shape
    patches = im2col(x, k_h, k_w)
    return pt.tensordot(patches, kernel.reshape((k_h * k_w * c_in, c_out)), axes=[[3], [0]])


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
@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize(
    "x_shape, k_shape", [((2, 8, 7, 1), (3, 3, 1, 4)), ((2, 7, 7, FEW_CHANNELS), (5, 2, 8, 3))]
)
def test_values_and_gradients_match_scipy_and_im2col(
    backend_name, x_shape, k_shape, restore_backend
):
    mode = backend.configure("float64", backend_name)
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=x_shape), rng.normal(size=k_shape)
    out_shape = (x_shape[0], x_shape[1] - k_shape[0] + 1, x_shape[2] - k_shape[1] + 1, k_shape[3])
    weights = rng.normal(size=out_shape)
    out, dx, dk = compile_with_gradients(conv2d_valid, x, kernel, weights, mode)(x, kernel)
    ref_out, ref_dx, ref_dk = compile_with_gradients(im2col_conv, x, kernel, weights, mode)(
        x, kernel
    )
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


def reshape_max_pool(x, p):
    n, h, w, c = x.type.shape
    return x[:, : h // p * p, : w // p * p].reshape((n, h // p, p, w // p, p, c)).max(axis=(2, 4))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("side, p", [(8, 2), (9, 2), (7, 3)])
def test_max_pool_and_its_gradient_match_a_reshape_and_max(backend_name, side, p, restore_backend):
    mode = backend.configure("float64", backend_name)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, side, side + 1, 3))
    xs = pt.tensor("x", shape=x.shape, dtype="float64")
    weights = rng.normal(size=(2, side // p, (side + 1) // p, 3))
    results = []
    for pool in (lambda v: max_pool2d(v, p), lambda v: reshape_max_pool(v, p)):
        out = pool(xs)
        cost = (out * weights).sum()
        results.append(pytensor.function([xs], [out, pytensor.grad(cost, xs)], mode=mode)(x))
    (out, grad), (ref_out, ref_grad) = results
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(grad, ref_grad)
    assert (grad[:, side // p * p :] == 0).all()  # dropped rows get no gradient
