"""Neural-network layers as plain PyTensor graphs (images are NHWC: batch, height, width, channels).

PyTensor has no batched conv2d or max-pool for neural networks, so convolution is im2col — the
k*k shifted views of the input concatenated on the channel axis — followed by one `tensordot`,
which PyTensor turns into a single GEMM. Max-pooling is a reshape and a max.
"""

from __future__ import annotations

import pytensor.tensor as pt

ACTIVATIONS = {
    "relu": lambda z: pt.maximum(z, 0),
    "tanh": pt.tanh,
}


def dense(x, weight, bias):
    """x: (n, in), weight: (in, out), bias: (out,) -> (n, out)."""
    return pt.dot(x, weight) + bias


def sizes(x) -> tuple:
    """x's dimensions: the static size where PyTensor knows it, else the symbolic one. Static
    sizes keep every slice and reshape constant, which the JAX backend needs."""
    x = pt.as_tensor_variable(x)
    return tuple(dim if dim is not None else x.shape[i] for i, dim in enumerate(x.type.shape))


def im2col(x, kernel_size: int):
    """x: (n, h, w, c) -> (n, h-k+1, w-k+1, k*k*c), patch entries ordered (row, col, channel)."""
    k = kernel_size
    _, h, w, _ = sizes(x)
    out_h, out_w = h - k + 1, w - k + 1
    views = [x[:, i : i + out_h, j : j + out_w, :] for i in range(k) for j in range(k)]
    return pt.concatenate(views, axis=3)


def conv2d(x, kernel, bias, kernel_size: int):
    """'valid' cross-correlation. x: (n, h, w, c_in), kernel: (k, k, c_in, c_out) (HWIO),
    bias: (c_out,) -> (n, h-k+1, w-k+1, c_out)."""
    patches = im2col(x, kernel_size)
    _, out_h, out_w, depth = sizes(patches)
    c_out = sizes(kernel)[3]
    flat = pt.dot(patches.reshape((-1, depth)), kernel.reshape((depth, c_out)))
    return flat.reshape((-1, out_h, out_w, c_out)) + bias


def max_pool(x, pool_size: int):
    """Non-overlapping max-pooling on (n, h, w, c); odd trailing rows/columns are dropped, as in
    Lasagne's default (ignore_border=True)."""
    p = pool_size
    _, h, w, c = sizes(x)
    h_out, w_out = h // p, w // p
    x = x[:, : h_out * p, : w_out * p, :]
    return x.reshape((-1, h_out, p, w_out, p, c)).max(axis=(2, 4))


def conv_output_side(side: int, kernel_size: int, pool_size: int, blocks: int) -> int:
    """Spatial side after `blocks` conv('valid') + pool blocks."""
    for _ in range(blocks):
        side = (side - kernel_size + 1) // pool_size
    return side
