"""A batched 2-D convolution and max-pooling as PyTensor `Op`s, so XLA compiles the conv net's
layers to its native convolution and pooling instead of im2col copies and reshapes.

`Conv2D` is a 'valid' cross-correlation of NHWC images with an HWIO kernel. The JAX backend runs
it as `jax.lax.conv_general_dilated`; every other backend runs `perform` (NumPy: a strided window
view and one `tensordot`). Its gradients are graphs of PyTensor ops, so the `pm.Model` stays a
plain PyMC model and any backend can differentiate it:

- with respect to the images: the same convolution of the zero-padded output gradient with the
  flipped, transposed kernel (the transposed convolution);
- with respect to the kernel: GEMMs of the image patches with the output gradient
  (`kernel_gradient`), which on the CPU beat XLA's convolution for it, while XLA's forward
  convolution beats im2col.

`MaxPool2D` is non-overlapping max-pooling (`jax.lax.reduce_window` under JAX, faster than a
reshape and a max); its gradient is the reshape-and-compare graph PyTensor would build for that
max.

NHWC is kept because XLA's CPU forward convolution is much faster in NHWC than in NCHW. The
measurements: docs/results.md, "The conv net's own convolution and pooling".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytensor.tensor as pt
from numpy.lib.stride_tricks import sliding_window_view
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.scalar import upcast

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
FEW_CHANNELS = 8  # below this, the kernel gradient is one GEMM of all patches


def _out_side(side: int | None, k: int | None) -> int | None:
    return None if side is None or k is None else side - k + 1


class Conv2D(Op):
    """x: (n, h, w, c_in), kernel: (k_h, k_w, c_in, c_out) -> (n, h-k_h+1, w-k_w+1, c_out)."""

    __props__ = ()

    def make_node(self, x: Any, kernel: Any) -> Apply:  # type: ignore[override]  # fixed arity
        x, kernel = pt.as_tensor_variable(x), pt.as_tensor_variable(kernel)
        if x.type.ndim != 4 or kernel.type.ndim != 4:
            raise TypeError("Conv2D takes 4-D images (NHWC) and a 4-D kernel (HWIO)")
        n, h, w, _ = x.type.shape
        k_h, k_w, _, c_out = kernel.type.shape
        shape = (n, _out_side(h, k_h), _out_side(w, k_w), c_out)
        dtype = upcast(x.type.dtype, kernel.type.dtype)
        return Apply(self, [x, kernel], [pt.tensor(dtype=dtype, shape=shape)])

    def perform(self, node: Any, inputs: Any, output_storage: Any) -> None:
        x, kernel = inputs
        k_h, k_w = kernel.shape[:2]
        windows = sliding_window_view(x, (k_h, k_w), axis=(1, 2))  # (n, oh, ow, c_in, kh, kw)
        out = np.tensordot(windows, kernel, axes=([4, 5, 3], [0, 1, 2]))
        output_storage[0][0] = out.astype(node.outputs[0].type.dtype, copy=False)

    def infer_shape(self, fgraph: Any, node: Any, shapes: Any) -> list[tuple[Any, ...]]:
        (n, h, w, _), (k_h, k_w, _, c_out) = shapes
        return [(n, h - k_h + 1, w - k_w + 1, c_out)]

    def grad(self, inputs: Any, output_grads: Any) -> list[Any]:
        x, kernel = inputs
        (g,) = output_grads
        return [input_gradient(g, kernel), kernel_gradient(x, g, kernel)]


conv2d_valid = Conv2D()


class MaxPool2D(Op):
    """Non-overlapping max-pooling of (n, h, w, c) over p x p windows; trailing rows and
    columns that fill no window are dropped (Lasagne's ignore_border=True)."""

    __props__ = ("pool_size",)

    def __init__(self, pool_size: int):
        self.pool_size = int(pool_size)

    def make_node(self, x: Any) -> Apply:  # type: ignore[override]  # fixed arity
        x = pt.as_tensor_variable(x)
        if x.type.ndim != 4:
            raise TypeError("MaxPool2D takes 4-D images (NHWC)")
        p = self.pool_size
        n, h, w, c = x.type.shape
        shape = (n, None if h is None else h // p, None if w is None else w // p, c)
        return Apply(self, [x], [pt.tensor(dtype=x.type.dtype, shape=shape)])

    def perform(self, node: Any, inputs: Any, output_storage: Any) -> None:
        (x,) = inputs
        p = self.pool_size
        n, h, w, c = x.shape
        windows = x[:, : h // p * p, : w // p * p].reshape(n, h // p, p, w // p, p, c)
        output_storage[0][0] = windows.max(axis=(2, 4))

    def infer_shape(self, fgraph: Any, node: Any, shapes: Any) -> list[tuple[Any, ...]]:
        n, h, w, c = shapes[0]
        return [(n, h // self.pool_size, w // self.pool_size, c)]

    def grad(self, inputs: Any, output_grads: Any) -> list[Any]:
        (x,) = inputs
        (g,) = output_grads
        p = self.pool_size
        n, h, w, c = sizes(x)
        h_out, w_out = h // p, w // p
        windows = x[:, : h_out * p, : w_out * p, :].reshape((n, h_out, p, w_out, p, c))
        out: Any = self(x)
        out = out[:, :, None, :, None, :]
        routed = pt.eq(windows, out) * g[:, :, None, :, None, :]  # to the max of each window
        grad = pt.zeros_like(x)
        return [
            pt.set_subtensor(
                grad[:, : h_out * p, : w_out * p, :], routed.reshape((n, h_out * p, w_out * p, c))
            )
        ]


def max_pool2d(x: Any, pool_size: int) -> Any:
    return MaxPool2D(pool_size)(x)


def input_gradient(g: Any, kernel: Any) -> Any:
    """d(sum(g * conv(x, kernel)))/dx: the 'full' correlation of g with the flipped kernel."""
    k_h, k_w = sizes(kernel)[:2]
    n, oh, ow, c_out = sizes(g)
    padded = pt.zeros((n, oh + 2 * (k_h - 1), ow + 2 * (k_w - 1), c_out), dtype=g.dtype)
    padded = pt.set_subtensor(padded[:, k_h - 1 : k_h - 1 + oh, k_w - 1 : k_w - 1 + ow, :], g)
    return conv2d_valid(padded, kernel[::-1, ::-1].transpose(0, 1, 3, 2))


def kernel_gradient(x: Any, g: Any, kernel: Any) -> Any:
    """d(sum(g * conv(x, kernel)))/dkernel: sum over images and positions of patch times g.

    For many input channels one small GEMM per kernel offset, each on a strided view of x,
    beats one GEMM of the concatenated patches (which copies them) and XLA's own convolution
    for it; for a few channels (the first layer's one) the patch matrix is small and the one
    GEMM is fastest (docs/results.md, "The conv net's own convolution and pooling").
    """
    k_h, k_w, c_in, c_out = sizes(kernel)
    flat_g = g.reshape((-1, c_out))
    if c_in < FEW_CHANNELS:
        patches = im2col(x, k_h, k_w)
        return pt.dot(patches.reshape((-1, k_h * k_w * c_in)).T, flat_g).reshape(
            (k_h, k_w, c_in, c_out)
        )
    _, oh, ow, _ = sizes(g)
    per_offset = [
        pt.dot(x[:, i : i + oh, j : j + ow, :].reshape((-1, c_in)).T, flat_g)
        for i in range(k_h)
        for j in range(k_w)
    ]
    return pt.stack(per_offset).reshape((k_h, k_w, c_in, c_out))


def im2col(x: Any, k_h: int, k_w: int | None = None) -> Any:
    """x: (n, h, w, c) -> (n, h-k_h+1, w-k_w+1, k_h*k_w*c): the k_h*k_w shifted views of x
    concatenated on the channel axis, patch entries ordered (row, col, channel)."""
    k_w = k_h if k_w is None else k_w
    _, h, w, _ = sizes(x)
    out_h, out_w = h - k_h + 1, w - k_w + 1
    views = [x[:, i : i + out_h, j : j + out_w, :] for i in range(k_h) for j in range(k_w)]
    return pt.concatenate(views, axis=3)


def sizes(x: Any) -> tuple:
    """x's dimensions: the static size where PyTensor knows it, else the symbolic one. Static
    sizes keep every slice and reshape constant, which the JAX backend needs."""
    x = pt.as_tensor_variable(x)
    return tuple(dim if dim is not None else x.shape[i] for i, dim in enumerate(x.type.shape))


def _register_jax() -> None:
    try:
        import jax  # lazy: imports JAX
        from pytensor.link.jax.dispatch import jax_funcify  # lazy: imports PyTensor
    except ImportError:  # the JAX backend is optional; the other backends use `perform`
        return

    @jax_funcify.register(Conv2D)
    def _jax_conv2d(op: Any, **kwargs: Any) -> Callable[..., Any]:
        def conv2d(x: Any, kernel: Any) -> Any:
            return jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "VALID", dimension_numbers=DIMENSION_NUMBERS
            )

        return conv2d

    @jax_funcify.register(MaxPool2D)
    def _jax_max_pool(op: Any, **kwargs: Any) -> Callable[..., Any]:
        window = (1, op.pool_size, op.pool_size, 1)

        def max_pool(x: Any) -> Any:
            return jax.lax.reduce_window(x, -jax.numpy.inf, jax.lax.max, window, window, "VALID")

        return max_pool


_register_jax()
