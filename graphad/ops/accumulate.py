"""Ops the derivative engines and passes emit: `add_n` (fan-in of cotangents, one ONNX Sum),
`sum_to_like` (reduce or expand a value to another tensor's runtime shape) and `cumsum` (running
sums, for loop trip counts computed ahead of the loop)."""

import numpy as np

from ..build import as_tensor
from ..errors import DTypeError, ShapeError
from ..registry import apply, defop, linear_jvp
from ..types import TensorType, broadcast_shapes, format_shape

__all__ = ["add_n", "sum_to_like", "cumsum"]


# ---------------------------------------------------------------------------------------------
# add_n: the n-ary sum


def _add_n_infer(types, attrs):
    if not types:
        raise ShapeError("add_n needs at least one input")
    dts = {t.dtype for t in types}
    if len(dts) != 1:
        raise DTypeError(f"add_n: inputs have different dtypes {sorted(d.name for d in dts)}")
    (dt,) = dts
    if not dt.is_floating:
        raise DTypeError(f"add_n: dtype {dt.name} is not supported (floating dtypes only)")
    return (TensorType(broadcast_shapes(*(t.shape for t in types)), dt),)


def _add_n_reference(node, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return (np.asarray(out).astype(node.outputs[0].dtype.np, copy=False),)


def _add_n_vjp(node, g):
    # Linear: each input receives the cotangent; the engine sums it down to the input's shape.
    return (g,) * len(node.inputs)


def _add_n_jvp(node, *tangents):
    present = [t for t in tangents if t is not None]
    if not present:
        return (None,)
    return (add_n(present),)


ADD_N = defop(
    "add_n",
    infer=_add_n_infer,
    reference=_add_n_reference,
    # two operands as Add: onnxruntime fuses MatMul + Add into Gemm, not MatMul + Sum
    lower=lambda ctx, node, *xs: (ctx.emit("Add" if len(xs) == 2 else "Sum", list(xs)),),
    vjp=_add_n_vjp,
    jvp=_add_n_jvp,
    doc="Sum of any number of same-dtype floating tensors (numpy broadcasting); ONNX Sum.",
)


def add_n(xs, name=None):
    """Elementwise sum of a list of tensors in one node (the input itself when there is one)."""
    xs = [as_tensor(x) for x in xs]
    if len(xs) == 1:
        return xs[0]
    return apply(ADD_N, tuple(xs), name=name)


# ---------------------------------------------------------------------------------------------
# sum_to_like: the engines' runtime broadcast adjustment


def _sum_to_like_infer(types, attrs):
    g, x = types
    rg, rx = len(g.shape), len(x.shape)
    pad_g = (1,) * max(rx - rg, 0) + tuple(g.shape[max(rg - rx, 0):])
    for gd, xd in zip(pad_g, x.shape):
        if isinstance(gd, int) and isinstance(xd, int) and gd != xd and 1 not in (gd, xd):
            raise ShapeError(
                f"sum_to_like: shape {format_shape(g.shape)} cannot be summed or broadcast to "
                f"shape {format_shape(x.shape)}"
            )
    return (TensorType(x.shape, g.dtype),)


def _sum_to_like_reference(node, g, x):
    rg, rx = g.ndim, x.ndim
    if rg > rx:
        g = g.sum(axis=tuple(range(rg - rx)))
    elif rg < rx:
        g = g.reshape((1,) * (rx - rg) + g.shape)
    axes = tuple(i for i in range(rx) if x.shape[i] == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    out = np.broadcast_to(g, x.shape)
    return (np.array(out, dtype=node.outputs[0].dtype.np),)


def _sum_to_like_lower(ctx, node, g, x):
    gt, xt = node.inputs[0].type, node.inputs[1].type
    rg, rx = gt.rank, xt.rank
    if rg > rx:
        g = ctx.emit("ReduceSum", [g, ctx.i64(list(range(rg - rx)))], keepdims=0)
    elif rg < rx:
        g = ctx.emit("Unsqueeze", [g, ctx.i64(list(range(rx - rg)))])
    shape_x = ctx.emit("Shape", [x])
    one = ctx.i64([1])
    # Axes where x has size 1 and g does not, found at run time (dims may be unknown).
    mask = ctx.emit("And", [ctx.emit("Equal", [shape_x, one]),
                            ctx.emit("Not", [ctx.emit("Equal", [ctx.emit("Shape", [g]), one])])])
    axes = ctx.emit("Reshape", [ctx.emit("NonZero", [mask]), ctx.i64([-1])])
    g = ctx.emit("ReduceSum", [g, axes], keepdims=1, noop_with_empty_axes=1)
    return (ctx.emit("Expand", [g, shape_x]),)


def _sum_to_like_vjp(node, ct):
    # The op is the linear "fit to x's shape" map; its adjoint fits back to g's shape.
    if ct is None:
        return (None, None)
    return (sum_to_like(ct, node.inputs[0]), None)


def _sum_to_like_jvp(node, t_g, t_x):
    if t_g is None:
        return (None,)
    return (sum_to_like(t_g, node.inputs[1]),)


SUM_TO_LIKE = defop(
    "sum_to_like",
    shape_only=(1,),  # inputs whose values are not read
    infer=_sum_to_like_infer,
    reference=_sum_to_like_reference,
    lower=_sum_to_like_lower,
    vjp=_sum_to_like_vjp,
    jvp=_sum_to_like_jvp,
    doc=(
        "g summed over its broadcast axes and expanded over x's, to x's run-time shape (x gives "
        "only its shape). The derivative engines use it when unknown dims make the broadcast "
        "axes undecidable while building the graph (a None dim may be fed 1)."
    ),
)


def sum_to_like(g, x, name=None):
    """`g` reduced (summed over broadcast axes) or expanded to the run-time shape of `x`."""
    g, x = as_tensor(g), as_tensor(x)
    return apply(SUM_TO_LIKE, (g, x), name=name)


# ---------------------------------------------------------------------------------------------
# cumsum: running sums along one axis, added left to right (so equal to repeated addition)


def _cumsum_infer(types, attrs):
    x = types[0]
    if not x.shape or not -len(x.shape) <= attrs["axis"] < len(x.shape):
        raise ShapeError(f"cumsum: axis {attrs['axis']} is out of range for shape "
                         f"{format_shape(x.shape)}")
    if x.dtype.is_bool:
        raise DTypeError("cumsum: needs a numeric dtype, got bool")
    return (x,)


def _cumsum_vjp(node, g):
    # the transpose of a running sum is the running sum from the other end
    if g is None:
        return (None,)
    from .indexing import slice_axis  # noqa: PLC0415

    axis = node.attrs["axis"] % len(node.inputs[0].shape)
    flipped = slice_axis(g, axis, None, None, -1)
    return (slice_axis(cumsum(flipped, axis), axis, None, None, -1),)


CUMSUM = defop(
    "cumsum",
    infer=_cumsum_infer,
    reference=lambda node, x: (np.cumsum(x, axis=node.attrs["axis"], dtype=x.dtype),),
    lower=lambda ctx, node, x: (ctx.emit("CumSum", [x, ctx.i64(node.attrs["axis"])]),),
    vjp=_cumsum_vjp,
    jvp=linear_jvp,
    doc="Running sums along `axis` (numpy.cumsum / ONNX CumSum), each the previous one plus the "
        "next element: bit-equal to adding the elements one by one (both run sequentially).",
)


def cumsum(x, axis=0, name=None):
    """numpy.cumsum(x, axis): running sums, added in order."""
    x = as_tensor(x)
    return apply(CUMSUM, (x,), {"axis": int(axis)}, name=name)
