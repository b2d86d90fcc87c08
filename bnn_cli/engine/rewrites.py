"""PyTensor graph rewrites: float32 normals drawn in float32 (C backend), and the gradient of
the flat mean-field vector as one join instead of a chain of scatters (JAX backend).

PyTensor's NormalRV asks NumPy for float64 draws and casts them, which for the mean-field noise
of the 800x800 MLP (1.3 million draws per step) costs about twice NumPy's float32 ziggurat. The
rewrite swaps in the same distribution drawn directly in float32; graphs of other dtypes, and
the Numba and JAX backends (which bring their own samplers), are untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.compile.mode import Mode, get_default_mode, get_mode
from pytensor.graph.rewriting.basic import in2out, node_rewriter, out2in
from pytensor.tensor.basic import Alloc, NotScalarConstantError, get_scalar_constant_value
from pytensor.tensor.random.basic import NormalRV
from pytensor.tensor.subtensor import IncSubtensor, get_constant_idx

TAG = "bnn_float32_normal"
NAME = "bnn_float32_normal_rewrite"


class Float32NormalRV(NormalRV):
    """NormalRV whose NumPy implementation samples float32 directly."""

    name = "normal_float32"

    @classmethod
    def rng_fn(cls, rng: Any, loc: Any, scale: Any, size: Any) -> np.ndarray:
        draws = rng.standard_normal(
            size if size is not None else np.broadcast_shapes(np.shape(loc), np.shape(scale)),
            dtype=np.float32,
        )
        if np.all(loc == 0) and np.all(scale == 1):  # PyMC's mean-field noise: skip the affine
            return draws
        return (loc + scale * draws).astype(np.float32)


@node_rewriter([NormalRV])
def float32_normal(fgraph: Any, node: Any) -> list[Any] | None:
    if type(node.op) is not NormalRV or node.outputs[1].dtype != "float32":
        return None
    props = node.op._props_dict()  # type: ignore[attr-defined]  # PyTensor's Op API, untyped
    new_op = Float32NormalRV(**props)
    return new_op.make_node(*node.inputs).outputs


# PyMC's mean-field approximation keeps every weight in one flat vector and slices it per tensor.
# The gradient comes back as a chain `inc(inc(inc(zeros(D), g1, a:b), g2, b:c), ...)`: on XLA
# each link is a pass over the whole vector (1.3 million floats for the 800x800 MLP, for mu and
# for rho). When the slices are constant and disjoint the chain is just the pieces laid side by
# side: one join, one pass.
JOIN_TAG = "bnn_join_flat_gradient"
JOIN_NAME = "bnn_join_flat_gradient_rewrite"


def _zeros_length(var: Any) -> int | None:
    """The length of `var` when it is a 1-d vector of zeros of static length, else None."""
    if var.ndim != 1 or var.type.shape[0] is None:
        return None
    if var.owner is not None and isinstance(var.owner.op, Alloc):
        value = var.owner.inputs[0]
    elif isinstance(var, pt.TensorConstant):
        value = var
    else:
        return None
    return var.type.shape[0] if _is_zero(value) else None


def _is_zero(value: Any) -> bool:
    if isinstance(value, pt.TensorConstant):  # Alloc's fill value may be a (1,) constant
        return bool(np.all(value.data == 0))
    try:
        return get_scalar_constant_value(value) == 0
    except NotScalarConstantError:
        return False


def _constant_slice(node: Any, length: int) -> tuple[int, int] | None:
    """(start, stop) of a plain 1-d `x[start:stop] += y` with constant bounds, else None."""
    if node.op.set_instead_of_inc or node.inputs[0].ndim != 1 or node.inputs[1].ndim != 1:
        return None  # a broadcast increment (a scalar added to a slice) is not a piece
    try:
        x, _, *indices = node.inputs  # get_constant_idx reads the indices after one input
        (index,) = get_constant_idx(node.op.idx_list, [x, *indices], allow_partial=False)
    except (NotScalarConstantError, ValueError):
        return None
    if not isinstance(index, slice) or index.step not in (None, 1):
        return None
    start, stop, _ = index.indices(length)
    return (start, stop) if stop - start == node.inputs[1].type.shape[0] else None


@node_rewriter([IncSubtensor])
def join_disjoint_increments(fgraph: Any, node: Any) -> list[Any] | None:
    pieces, var = [], node.outputs[0]
    while var.owner is not None and isinstance(var.owner.op, IncSubtensor):
        length = var.type.shape[0] if var.ndim == 1 else None
        bounds = _constant_slice(var.owner, length) if length is not None else None
        if bounds is None:
            return None
        pieces.append((*bounds, var.owner.inputs[1]))
        var = var.owner.inputs[0]
    length = _zeros_length(var)
    if length is None or len(pieces) < 2:
        return None
    pieces.sort(key=lambda piece: piece[0])
    parts, at = [], 0
    for start, stop, value in pieces:
        if start < at:
            return None  # overlapping increments add up: not a join
        if start > at:
            parts.append(pt.zeros((start - at,), dtype=var.dtype))
        parts.append(pt.cast(value, var.dtype) if value.dtype != var.dtype else value)
        at = stop
    if at < length:
        parts.append(pt.zeros((length - at,), dtype=var.dtype))
    joined = pt.join(0, *parts)
    return [pt.specify_shape(joined, (length,))]


def _register() -> None:
    if NAME not in optdb["specialize"].__db__:
        optdb["specialize"].register(NAME, in2out(float32_normal), TAG)
    if JOIN_NAME not in optdb["specialize"].__db__:
        # out2in: the outermost link of a chain is rewritten first and takes the whole chain.
        optdb["specialize"].register(JOIN_NAME, out2in(join_disjoint_increments), JOIN_TAG)


def c_mode() -> Mode:
    """The default (C) mode with the float32 rewrite included."""
    _register()
    return get_default_mode().including(TAG)


def jax_mode() -> Mode:
    """PyTensor's JAX mode with the flat-gradient join included."""
    _register()
    return get_mode("JAX").including(JOIN_TAG)
