"""Neural-network ops: logsumexp, softmax, log_softmax (stable primitives) and one_hot.

logsumexp/softmax/log_softmax are primitives rather than compositions of exp/sum/log: the
naive composition overflows for large inputs (exp(1000) = inf), and their derivatives have
closed forms in terms of the stable outputs (softmax), which a composition would not find.
"""

import numpy as np

from ..build import as_tensor
from ..errors import DTypeError, user_location
from ..registry import NOT_DIFFERENTIABLE, apply, defop
from ..types import TensorType, as_dtype, default_float, float16, float32, format_shape
from .reduce import (
    SUM,
    emit_reduce,
    identity_if_no_axes,
    reduced_shape,
    reduction_axes,
    unreduce,
)
from .shape import normalize_axis, shape_error

__all__ = ["logsumexp", "softmax", "log_softmax", "one_hot"]


def _ops():
    from .. import ops  # noqa: PLC0415  (rules use other families; late import avoids cycles)

    return ops


def _float_input(x):
    x = as_tensor(x)
    return x if x.dtype.is_floating else _ops().cast(x, default_float())


def _axes_for(x, axis, opname):
    axes = reduction_axes(axis, x, opname)
    if not axes:
        raise shape_error(f"{opname}: needs at least one axis to normalise over, got "
                          f"axis={axis!r} for shape {format_shape(x.shape)}")
    return axes


def _sum(x, axes, keepdims):
    return apply(SUM, (x,), {"axes": tuple(axes), "keepdims": keepdims})


def _check_float(t, opname):
    if not t.dtype.is_floating:
        raise DTypeError(f"{opname}: needs a float dtype, got {t.dtype.name}")


def _np_lse(x, axes, keepdims):
    """Stable numpy logsumexp: shift by the max where it is finite (so all -inf gives -inf)."""
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    with np.errstate(divide="ignore"):
        y = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return y if keepdims else np.squeeze(y, axis=axes)


# ---------------------------------------------------------------------------------------------
# logsumexp


def _lse_infer(types, attrs):
    (t,) = types
    _check_float(t, "logsumexp")
    return (TensorType(reduced_shape(t.shape, attrs["axes"], attrs["keepdims"]), t.dtype),)


def _lse_reference(node, x):
    y = _np_lse(x.astype(np.float32) if x.dtype == np.float16 else x, node.attrs["axes"],
                node.attrs["keepdims"])
    return (np.asarray(y).astype(node.outputs[0].dtype.np),)


def _lse_lower(ctx, node, x):
    # Manual max-shift rather than ReduceLogSumExp: the ONNX spec defines that op naively
    # (log(sum(exp(x)))), so a runtime may overflow; this form is stable everywhere.
    axes, keep = node.attrs["axes"], node.attrs["keepdims"]
    half = node.inputs[0].dtype is float16  # accumulate in float32
    if half:
        x = ctx.cast(x, float32)
    m = emit_reduce(ctx, "ReduceMax", x, axes, True)
    zero = ctx.const(np.asarray(0, dtype=np.float32 if half else node.outputs[0].dtype.np))
    m = ctx.emit("Where", [ctx.emit("IsInf", [m]), zero, m])  # all -inf (or +inf): no shift
    s = emit_reduce(ctx, "ReduceSum", ctx.emit("Exp", [ctx.emit("Sub", [x, m])]), axes, keep)
    if not keep:
        m = ctx.emit("Squeeze", [m, ctx.i64(list(axes))])
    y = ctx.emit("Add", [ctx.emit("Log", [s]), m])
    return (ctx.cast(y, float16) if half else y,)


def _lse_weights(node):
    """softmax(x) over the axes, read off the output: exp(x - logsumexp(x))."""
    x, y = node.inputs[0], node.outputs[0]
    return _ops().exp(x - unreduce(y, x, node.attrs["axes"], node.attrs["keepdims"]))


def _lse_vjp(node, g):
    if g is None:
        return (None,)
    x = node.inputs[0]
    return (unreduce(g, x, node.attrs["axes"], node.attrs["keepdims"]) * _lse_weights(node),)


def _lse_jvp(node, t):
    if t is None:
        return (None,)
    return (_sum(t * _lse_weights(node), node.attrs["axes"], node.attrs["keepdims"]),)


LOGSUMEXP = defop(
    "logsumexp",
    infer=_lse_infer,
    reference=_lse_reference,
    lower=identity_if_no_axes(_lse_lower),
    vjp=_lse_vjp,
    jvp=_lse_jvp,
    doc="log(sum(exp(x))) over axes, shifted by the max (finite for large inputs; -inf when "
    "every entry is -inf). Gradient: softmax(x) = exp(x - logsumexp(x)).",
)


def logsumexp(x, axis=None, keepdims=False, name=None):
    """Stable log(sum(exp(x), axis)); integer inputs give the default float."""
    x = _float_input(x)
    axes = reduction_axes(axis, x, "logsumexp")
    return apply(LOGSUMEXP, (x,), {"axes": axes, "keepdims": bool(keepdims)}, name=name)


# ---------------------------------------------------------------------------------------------
# softmax, log_softmax


def _same_infer(opname):
    def infer(types, attrs):
        (t,) = types
        _check_float(t, opname)
        return (TensorType(t.shape, t.dtype),)

    return infer


def _np_softmax(x, axes):
    m = np.max(x, axis=axes, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axes, keepdims=True)


def _np_log_softmax(x, axes):
    s = x - np.max(x, axis=axes, keepdims=True)
    with np.errstate(divide="ignore"):
        return s - np.log(np.sum(np.exp(s), axis=axes, keepdims=True))


def _np_rule(fn):
    def reference(node, x):
        dt = node.outputs[0].dtype.np
        xx = x.astype(np.float32) if x.dtype == np.float16 else x
        return (np.asarray(fn(xx, node.attrs["axes"])).astype(dt),)

    return reference


def _softmax_lower(ctx, node, x):
    axes = node.attrs["axes"]
    if len(axes) == 1:
        return (ctx.emit("Softmax", [x], axis=axes[0]),)
    e = ctx.emit("Exp", [ctx.emit("Sub", [x, emit_reduce(ctx, "ReduceMax", x, axes, True)])])
    return (ctx.emit("Div", [e, emit_reduce(ctx, "ReduceSum", e, axes, True)]),)


def _log_softmax_lower(ctx, node, x):
    axes = node.attrs["axes"]
    if len(axes) == 1:
        return (ctx.emit("LogSoftmax", [x], axis=axes[0]),)
    s = ctx.emit("Sub", [x, emit_reduce(ctx, "ReduceMax", x, axes, True)])
    lse = ctx.emit("Log", [emit_reduce(ctx, "ReduceSum", ctx.emit("Exp", [s]), axes, True)])
    return (ctx.emit("Sub", [s, lse]),)


def _softmax_vjp(node, g):
    # J = diag(y) - y y^T (symmetric), so VJP and JVP share one formula.
    if g is None:
        return (None,)
    y = node.outputs[0]
    return (y * (g - _sum(g * y, node.attrs["axes"], True)),)


def _softmax_jvp(node, t):
    return _softmax_vjp(node, t)


def _log_softmax_vjp(node, g):
    # J = I - 1 softmax^T: the VJP subtracts softmax times the cotangent's sum.
    if g is None:
        return (None,)
    p = _ops().exp(node.outputs[0])
    return (g - p * _sum(g, node.attrs["axes"], True),)


def _log_softmax_jvp(node, t):
    if t is None:
        return (None,)
    p = _ops().exp(node.outputs[0])
    return (t - _sum(p * t, node.attrs["axes"], True),)


SOFTMAX = defop(
    "softmax",
    infer=_same_infer("softmax"),
    reference=_np_rule(_np_softmax),
    lower=_softmax_lower,
    vjp=_softmax_vjp,
    jvp=_softmax_jvp,
    doc="exp(x - max) / sum(exp(x - max)) over axes (ONNX Softmax for one axis). Derivative "
    "from the output: y * (g - sum(g * y)).",
)

LOG_SOFTMAX = defop(
    "log_softmax",
    infer=_same_infer("log_softmax"),
    reference=_np_rule(_np_log_softmax),
    lower=_log_softmax_lower,
    vjp=_log_softmax_vjp,
    jvp=_log_softmax_jvp,
    doc="x - logsumexp(x) over axes, stable (ONNX LogSoftmax for one axis). Derivative from "
    "the output: g - exp(y) * sum(g).",
)


def softmax(x, axis=-1, name=None):
    """Stable softmax over `axis` (int, tuple or None); integer inputs give the default float."""
    x = _float_input(x)
    return apply(SOFTMAX, (x,), {"axes": _axes_for(x, axis, "softmax")}, name=name)


def log_softmax(x, axis=-1, name=None):
    """Stable log-softmax over `axis` (int, tuple or None)."""
    x = _float_input(x)
    return apply(LOG_SOFTMAX, (x,), {"axes": _axes_for(x, axis, "log_softmax")}, name=name)


# ---------------------------------------------------------------------------------------------
# one_hot


def _one_hot_infer(types, attrs):
    (t,) = types
    if t.dtype.is_bool:
        raise DTypeError("one_hot: indices must be integers (or floats), got bool")
    shape = list(t.shape)
    shape.insert(attrs["axis"], attrs["depth"])
    return (TensorType(tuple(shape), attrs["dtype"]),)


def _iota_shape(node):
    rank_out = len(node.outputs[0].shape)
    return (node.attrs["depth"],) + (1,) * (rank_out - 1 - node.attrs["axis"])


def _one_hot_reference(node, idx):
    iota = np.arange(node.attrs["depth"]).astype(idx.dtype).reshape(_iota_shape(node))
    hot = np.expand_dims(idx, node.attrs["axis"]) == iota
    return (hot.astype(node.outputs[0].dtype.np),)


def _one_hot_lower(ctx, node, idx):
    # Equal against an iota rather than ONNX OneHot: OneHot has int64-only index kernels in
    # onnxruntime and wraps negative indices, whereas JAX gives an all-zero row for them.
    dt = node.inputs[0].dtype
    if dt is float16:
        idx, dt = ctx.cast(idx, float32), float32
    iota = np.arange(node.attrs["depth"]).astype(dt.np).reshape(_iota_shape(node))
    u = ctx.emit("Unsqueeze", [idx, ctx.i64([node.attrs["axis"]])])
    return (ctx.cast(ctx.emit("Equal", [u, ctx.const(iota)]), node.outputs[0].dtype),)


ONE_HOT = defop(
    "one_hot",
    infer=_one_hot_infer,
    reference=_one_hot_reference,
    lower=_one_hot_lower,
    vjp=NOT_DIFFERENTIABLE,
    jvp=NOT_DIFFERENTIABLE,
    doc="indices[..., None] == arange(depth) (at `axis`), as `dtype`; out-of-range and negative "
    "indices give all-zero rows (as jax.nn.one_hot).",
)


def one_hot(indices, depth, dtype=None, axis=-1, name=None):
    """One-hot encoding with `depth` classes inserted at `axis`; dtype defaults to the default
    float. Not differentiable with respect to `indices`."""
    idx = as_tensor(indices)
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"one_hot: depth must be a non-negative int, got {depth!r}\n"
                         f"  at {user_location()}")
    dtype = default_float() if dtype is None else as_dtype(dtype)
    axis = normalize_axis(axis, idx.ndim + 1, "one_hot", idx.shape + (depth,))
    attrs = {"depth": int(depth), "axis": axis, "dtype": dtype}
    return apply(ONE_HOT, (idx,), attrs, name=name)
