"""Neural-network layers as plain PyTensor graphs (images are NHWC: batch, height, width, channels).

PyTensor has no batched conv2d or max-pooling for neural networks: `models.ops` has both, as
ops that JAX runs natively.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytensor.tensor as pt

from bnn_cli.models.ops import conv2d_valid, max_pool2d

ACTIVATIONS = {
    "relu": lambda z: pt.maximum(z, 0),
    "tanh": pt.tanh,
}


@dataclass(frozen=True)
class Gaussian:
    """A weight tensor given by its independent Gaussian entries, not by one draw of them: a
    layer fed one draws its outputs per image from their exact Gaussian marginal (the local
    reparameterization of Kingma, Salimans & Welling 2015), `noise(shape)` giving the standard
    normals."""

    mean: Any
    var: Any
    noise: Callable[[tuple[int, ...]], Any]


def _local(mean: Any, var: Any, noise: Callable[[tuple[int, ...]], Any]) -> Any:
    return mean + pt.sqrt(var + 1e-16) * noise(tuple(mean.type.shape))


def dense(x: Any, weight: Any, bias: Any) -> Any:
    """x: (n, in), weight: (in, out), bias: (out,) -> (n, out). Gaussian weight and bias:
    the output's per-image draw from its marginal, mean x @ m + b_m, variance x^2 @ v + b_v."""
    if isinstance(weight, Gaussian):
        mean = pt.dot(x, weight.mean) + bias.mean
        return _local(mean, pt.dot(x**2, weight.var) + bias.var, weight.noise)
    return pt.dot(x, weight) + bias


def conv2d(x: Any, kernel: Any, bias: Any) -> Any:
    """'valid' cross-correlation. x: (n, h, w, c_in), kernel: (k, k, c_in, c_out) (HWIO),
    bias: (c_out,) -> (n, h-k+1, w-k+1, c_out). A Gaussian kernel and bias: each output's
    per-image draw, mean conv(x, m) + b_m, variance conv(x^2, v) + b_v."""
    if isinstance(kernel, Gaussian):
        mean = conv2d_valid(x, kernel.mean) + bias.mean
        return _local(mean, conv2d_valid(x**2, kernel.var) + bias.var, kernel.noise)
    return conv2d_valid(x, kernel) + bias


def max_pool(x: Any, pool_size: int) -> Any:
    """Non-overlapping max-pooling on (n, h, w, c); odd trailing rows/columns are dropped, as in
    Lasagne's default (ignore_border=True)."""
    return max_pool2d(x, pool_size)


def conv_output_side(side: int, kernel_size: int, pool_size: int, blocks: int) -> int:
    """Spatial side after `blocks` conv('valid') + pool blocks."""
    for _ in range(blocks):
        side = (side - kernel_size + 1) // pool_size
    return side
