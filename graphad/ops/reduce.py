"""Reductions (sum mean max min prod argmax argmin) and `unreduce`, the transpose of sum/mean.

`axis` is an int, a tuple of ints or None (all axes); negative axes count from the end.
"""

import numpy as np

from ..build import as_tensor
from ..errors import DTypeError, ShapeError
from ..registry import NOT_DIFFERENTIABLE, apply, defop, linear_jvp
from ..types import TensorType, default_float, default_int, float16, float32, format_shape
from .shape import normalize_axes, normalize_axis

__all__ = ["sum", "mean", "max", "min", "prod", "argmax", "argmin"]

def _ops():
    from .. import ops  # noqa: PLC0415  (rules use other families; late import avoids cycles)

    return ops


# ---------------------------------------------------------------------------------------------
# Static-argument helpers (shared with nn.py)


def reduction_axes(axis, x, opname):
    """`axis` (int, tuple/list of ints or None = all) as a sorted tuple of distinct non-negative
    axes; a ShapeError naming the shape and the user's line when one is out of range."""
    if axis is None:
        return tuple(range(x.ndim))
    return tuple(sorted(normalize_axes(axis, x.ndim, opname, x.shape)))


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _check_rank(types, attrs, opname):
    rank = len(types[0].shape)
    bad = [a for a in attrs["axes"] if not 0 <= a < rank]
    if bad:
        raise ShapeError(f"{opname}: axes {bad} out of range for rank {rank}")


def emit_reduce(ctx, op_type, x, axes, keepdims):
    """ONNX Reduce* over `axes` (opset 18+: axes is an input tensor)."""
    return ctx.emit(op_type, [x, ctx.i64(list(axes))], keepdims=int(keepdims))


# ---------------------------------------------------------------------------------------------
# Shared op factory


def _reduce_infer(opname, kinds):
    def infer(types, attrs):
        (t,) = types
        if t.dtype.kind not in kinds:
            raise DTypeError(f"{opname}: dtype {t.dtype.name} is not supported")
        _check_rank(types, attrs, opname)
        return (TensorType(reduced_shape(t.shape, attrs["axes"], attrs["keepdims"]), t.dtype),)

    return infer


def _reference(np_fn):
    def reference(node, x):
        dt = node.outputs[0].dtype.np
        if x.dtype == np.float16:  # accumulate in float32, as the lowering does
            x = x.astype(np.float32)
        y = np_fn(x, axis=tuple(node.attrs["axes"]), keepdims=node.attrs["keepdims"])
        return (np.asarray(y).astype(dt, copy=False),)

    return reference


def identity_if_no_axes(lower):
    """Reducing over no axis (axis=() or a scalar with axis=None) is the identity; ONNX Reduce*
    would instead read an empty axes list as "all axes"."""

    def wrapped(ctx, node, x):
        if not node.attrs["axes"]:
            return (ctx.emit("Identity", [x]),)
        return lower(ctx, node, x)

    return wrapped


def _reduction_op(name, np_fn, kinds, lower, vjp, jvp, doc):
    return defop(name, infer=_reduce_infer(name, kinds), reference=_reference(np_fn),
                 lower=identity_if_no_axes(lower), vjp=vjp, jvp=jvp, doc=doc)


def _build(opdef, x, axis, keepdims, name):
    axes = reduction_axes(axis, x, opdef.name)
    return apply(opdef, (x,), {"axes": axes, "keepdims": bool(keepdims)}, name=name)


def _accumulator_int(x):
    """JAX's `promote_integers`: bool and ints narrower than the default int become it."""
    if x.dtype.is_bool or (x.dtype.is_integer and x.dtype.bits < default_int().bits):
        return _ops().cast(x, default_int())
    return x


def _lower_via_f32(op_type):
    """Float16 reductions accumulate in float32 (as JAX does) and round once at the end."""

    def lower(ctx, node, x):
        axes, keep = node.attrs["axes"], node.attrs["keepdims"]
        if node.inputs[0].dtype is float16:
            y = emit_reduce(ctx, op_type, ctx.cast(x, float32), axes, keep)
            return (ctx.cast(y, float16),)
        return (emit_reduce(ctx, op_type, x, axes, keep),)

    return lower


# ---------------------------------------------------------------------------------------------
# unreduce: broadcast a reduced tensor back to the shape of the reduction's input.
# Not shape.broadcast_to_like: here the broadcast axes are known exactly (no run-time guessing
# when dims are unknown), the transpose is exactly sum/mean over them, and `mean` divides by the
# run-time count of reduced elements.


def _unreduce_infer(types, attrs):
    g, like = types
    want = len(like.shape) - (0 if attrs["keepdims"] else len(attrs["axes"]))
    if len(g.shape) != want:
        raise ShapeError(f"unreduce: cotangent of rank {len(g.shape)} for a reduction of "
                         f"{format_shape(like.shape)} over axes {attrs['axes']}")
    if attrs["mean"] and not g.dtype.is_floating:
        raise DTypeError(f"unreduce: mean needs a float dtype, got {g.dtype.name}")
    return (TensorType(like.shape, g.dtype),)


def _unreduce_reference(node, g, like):
    axes = node.attrs["axes"]
    arr = g if node.attrs["keepdims"] else np.expand_dims(g, axes)
    out = np.broadcast_to(arr, like.shape)
    if node.attrs["mean"]:
        count = int(np.prod([like.shape[a] for a in axes]))
        out = out / np.asarray(count, dtype=g.dtype)
    return (np.array(out, dtype=node.outputs[0].dtype.np),)


def _count(ctx, node, like, dtype):
    """Number of elements reduced over, as a scalar of `dtype` (a constant when known)."""
    dims = [node.inputs[1].shape[a] for a in node.attrs["axes"]]
    if all(isinstance(d, int) for d in dims):
        return ctx.const(np.asarray(int(np.prod(dims)), dtype=dtype.np))
    sizes = ctx.emit("Gather", [ctx.emit("Shape", [like]), ctx.i64(list(node.attrs["axes"]))])
    return ctx.cast(ctx.emit("ReduceProd", [sizes], keepdims=0), dtype)


def _unreduce_lower(ctx, node, g, like):
    axes = node.attrs["axes"]
    if not node.attrs["keepdims"] and axes:
        g = ctx.emit("Unsqueeze", [g, ctx.i64(list(axes))])
    out = ctx.emit("Expand", [g, ctx.emit("Shape", [like])])
    if node.attrs["mean"]:
        out = ctx.emit("Div", [out, _count(ctx, node, like, node.outputs[0].dtype)])
    return (out,)


def _unreduce_vjp(node, ct):
    # The transpose of "broadcast (and divide by the count)" is "sum (or mean)" over the axes.
    if ct is None:
        return (None, None)
    opdef = MEAN if node.attrs["mean"] else SUM
    attrs = {"axes": node.attrs["axes"], "keepdims": node.attrs["keepdims"]}
    return (apply(opdef, (ct,), attrs), None)


UNREDUCE = defop(
    "unreduce",
    shape_only=(1,),  # inputs whose values are not read
    infer=_unreduce_infer,
    reference=_unreduce_reference,
    lower=_unreduce_lower,
    vjp=_unreduce_vjp,
    jvp=linear_jvp,
    doc="unreduce(g, like): g (the result of reducing `like` over `axes`) broadcast back to "
    "like's shape, divided by the reduced count when `mean`. The transpose of sum/mean; "
    "`like` only supplies the (possibly dynamic) shape and gets no gradient.",
)


def unreduce(g, like, axes, keepdims=False, mean=False):
    """Broadcast `g` (a reduction of `like` over `axes`) back to like's shape (see UNREDUCE)."""
    attrs = {"axes": tuple(axes), "keepdims": bool(keepdims), "mean": bool(mean)}
    return apply(UNREDUCE, (g, like), attrs)


# ---------------------------------------------------------------------------------------------
# sum, mean


def _sum_lower(ctx, node, x):
    if node.inputs[0].dtype.is_integer:
        return (_exact_int_sum(ctx, node, x),)
    return _lower_via_f32("ReduceSum")(ctx, node, x)


def _exact_int_sum(ctx, node, x):
    """Integer sums without ReduceSum: onnxruntime's integer Reduce* kernels accumulate in double
    (inexact above 2**53, saturating on overflow); CumSum is exact and wraps like numpy/JAX."""
    shape = node.inputs[0].shape
    for a in sorted(node.attrs["axes"], reverse=True):
        if not (isinstance(shape[a], int) and shape[a] > 0):  # a size-0 axis must sum to 0
            pads = [0] * (2 * len(shape))
            pads[a] = 1
            x = ctx.emit("Pad", [x, ctx.i64(pads)])
        x = ctx.emit("CumSum", [x, ctx.const(np.asarray(a, dtype=np.int64))])
        x = ctx.emit("Gather", [x, ctx.i64([-1])], axis=a)
    if not node.attrs["keepdims"]:
        x = ctx.emit("Squeeze", [x, ctx.i64(list(node.attrs["axes"]))])
    return x


def _sum_vjp(node, g):
    x = node.inputs[0]
    if g is None or not x.dtype.is_floating:
        return (None,)
    return (unreduce(g, x, node.attrs["axes"], node.attrs["keepdims"]),)


SUM = _reduction_op(
    "sum", np.sum, "fi", _sum_lower, _sum_vjp, linear_jvp,
    "Sum over axes. Linear: VJP broadcasts the cotangent back (unreduce), JVP sums the tangent.",
)


def sum(x, axis=None, keepdims=False, name=None):  # noqa: A001
    """Sum over `axis`. Bool and narrow int inputs give the default int (as jnp.sum)."""
    x = _accumulator_int(as_tensor(x))
    return _build(SUM, x, axis, keepdims, name)


def _mean_vjp(node, g):
    if g is None:
        return (None,)
    return (unreduce(g, node.inputs[0], node.attrs["axes"], node.attrs["keepdims"], mean=True),)


MEAN = _reduction_op(
    "mean", np.mean, "f", _lower_via_f32("ReduceMean"), _mean_vjp, linear_jvp,
    "Mean over axes (float only; the builder casts ints to the default float). Linear.",
)


def mean(x, axis=None, keepdims=False, name=None):
    """Mean over `axis`; integer and bool inputs give the default float (as jnp.mean)."""
    x = as_tensor(x)
    if not x.dtype.is_floating:
        x = _ops().cast(x, default_float())
    return _build(MEAN, x, axis, keepdims, name)


# ---------------------------------------------------------------------------------------------
# max, min


def _nan_aware(ctx, node, x, op_type):
    """onnxruntime's ReduceMax/Min skip NaN depending on its position; numpy and JAX propagate
    it, so a NaN anywhere in a group makes that group's result NaN."""
    axes, keep = node.attrs["axes"], node.attrs["keepdims"]
    y = emit_reduce(ctx, op_type, x, axes, keep)
    if not node.inputs[0].dtype.is_floating:
        return (y,)
    any_nan = emit_reduce(ctx, "ReduceMax", ctx.emit("IsNaN", [x]), axes, keep)
    nan = ctx.const(np.asarray(np.nan, dtype=node.outputs[0].dtype.np))
    return (ctx.emit("Where", [any_nan, nan, y]),)


def _chooser_mask(node):
    """Float mask of the positions that attain the max/min, and their count per group."""
    ops = _ops()
    x, y = node.inputs[0], node.outputs[0]
    axes, keep = node.attrs["axes"], node.attrs["keepdims"]
    hit = ops.cast(ops.equal(x, unreduce(y, x, axes, keep)), x.dtype)
    return hit, apply(SUM, (hit,), {"axes": axes, "keepdims": True})


def _chooser_vjp(node, g):
    # Ties split the cotangent equally among the maximal entries (as JAX): a subgradient that
    # is symmetric in the tied entries, and the VJP stays the exact transpose of the JVP below.
    x = node.inputs[0]
    if g is None or not x.dtype.is_floating:
        return (None,)
    hit, count = _chooser_mask(node)
    return (unreduce(g, x, node.attrs["axes"], node.attrs["keepdims"]) * (hit / count),)


def _chooser_jvp(node, t):
    if t is None or not node.inputs[0].dtype.is_floating:
        return (None,)
    hit, count = _chooser_mask(node)
    attrs = {"axes": node.attrs["axes"], "keepdims": node.attrs["keepdims"]}
    return (apply(SUM, (t * (hit / count),), attrs),)


MAX = _reduction_op(
    "max", np.max, "fib", lambda ctx, node, x: _nan_aware(ctx, node, x, "ReduceMax"),
    _chooser_vjp, _chooser_jvp,
    "Maximum over axes; NaN propagates. Derivative: the cotangent is split equally among ties.",
)
MIN = _reduction_op(
    "min", np.min, "fib", lambda ctx, node, x: _nan_aware(ctx, node, x, "ReduceMin"),
    _chooser_vjp, _chooser_jvp,
    "Minimum over axes; NaN propagates. Derivative: the cotangent is split equally among ties.",
)


def max(x, axis=None, keepdims=False, name=None):  # noqa: A001
    """Maximum over `axis` (NaN propagates). The gradient is shared equally among ties."""
    return _build(MAX, as_tensor(x), axis, keepdims, name)


def min(x, axis=None, keepdims=False, name=None):  # noqa: A001
    """Minimum over `axis` (NaN propagates). The gradient is shared equally among ties."""
    return _build(MIN, as_tensor(x), axis, keepdims, name)


# ---------------------------------------------------------------------------------------------
# prod


def _prod_lower(ctx, node, x):
    # Integer ReduceProd accumulates in double in onnxruntime: exact for results below 2**53,
    # saturating instead of wrapping beyond the dtype's range (documented limitation).
    return _lower_via_f32("ReduceProd")(ctx, node, x)


def _prod_vjp(node, g):
    # d prod / d x_i = product of the *other* entries, computed without dividing by x (exact
    # when x holds zeros, and differentiable again): see `prod_of_others`.
    x = node.inputs[0]
    if g is None or not x.dtype.is_floating:
        return (None,)
    axes, keep = node.attrs["axes"], node.attrs["keepdims"]
    if not axes:  # over no axis: the identity
        return (g,)
    return (unreduce(g, x, axes, keep) * prod_of_others(x, axes),)


def _prod_jvp(node, t):
    x = node.inputs[0]
    if t is None or not x.dtype.is_floating:
        return (None,)
    if not node.attrs["axes"]:
        return (t,)
    attrs = {"axes": node.attrs["axes"], "keepdims": node.attrs["keepdims"]}
    return (apply(SUM, (t * prod_of_others(x, node.attrs["axes"]),), attrs),)


PROD = _reduction_op(
    "prod", np.prod, "fi", _prod_lower, _prod_vjp, _prod_jvp,
    "Product over axes. Its derivative uses products of the other entries (no division by x).",
)


def prod(x, axis=None, keepdims=False, name=None):
    """Product over `axis`. Bool and narrow int inputs give the default int (as jnp.prod)."""
    x = _accumulator_int(as_tensor(x))
    return _build(PROD, x, axis, keepdims, name)


def prod_of_others(x, axes):
    """For each entry, the product of the other entries of its reduction group (broadcastable
    to x's shape). Over axes (a1, .., ak) it factors as the exclusive product along a1 of the
    products over (a2..ak), times the exclusive product along a2 of those over (a3..ak), ..."""
    out = None
    for k, a in enumerate(axes):
        rest = axes[k + 1:]
        part = apply(PROD, (x,), {"axes": rest, "keepdims": True}) if rest else x
        excl = _exclusive_prod(part, a)
        out = excl if out is None else out * excl
    return out


def _exclusive_prod(x, axis):
    """prod_{j != i} x_j along one axis, from prefix and suffix products (no division)."""
    n = x.shape[axis]
    if not isinstance(n, int):
        return _exclusive_prod_dynamic(x, axis)
    ops = _ops()
    if n <= 1:
        return ops.ones_like(x)
    left = _scan_mul(_shift(x, axis, 1, n), axis, n, forward=True)
    right = _scan_mul(_shift(x, axis, -1, n), axis, n, forward=False)
    return left * right


def _slice(x, axis, start, stop):
    return x[(slice(None),) * axis + (slice(start, stop),)]


def _ones_gap(x, axis, start, stop):
    """Ones shaped like x[start:stop] along `axis` (a constant when x's shape is static)."""
    ops = _ops()
    if all(isinstance(d, int) for d in x.shape):
        shape = x.shape[:axis] + (stop - start,) + x.shape[axis + 1:]
        return ops.ones(shape, dtype=x.dtype)
    return ops.ones_like(_slice(x, axis, start, stop))


def _shift(x, axis, k, n):
    """x shifted by k (>0: toward higher indices) along `axis`, the gap filled with ones."""
    ops = _ops()
    if k > 0:
        return ops.concat([_ones_gap(x, axis, 0, k), _slice(x, axis, 0, n - k)], axis)
    return ops.concat([_slice(x, axis, -k, n), _ones_gap(x, axis, n + k, n)], axis)


def _scan_mul(x, axis, n, forward):
    """Inclusive cumulative product along `axis` in ceil(log2 n) doubling steps
    (Hillis-Steele): only slices, concats and multiplies, so derivatives of any order exist."""
    d = 1
    while d < n:
        x = x * _shift(x, axis, d if forward else -d, n)
        d *= 2
    return x


def _exclusive_prod_dynamic(x, axis):
    """Unknown axis length (no static scan): product of the nonzero entries divided by x_i where
    no entry is zero (the division is only by nonzero x), else the zero-count cases. Exact to
    first order everywhere; its own derivative is exact away from zeros."""
    ops = _ops()
    is_zero = ops.equal(x, 0.0)
    safe = ops.where(is_zero, 1.0, x)
    p = apply(PROD, (safe,), {"axes": (axis,), "keepdims": True})
    zeros = apply(SUM, (ops.cast(is_zero, default_int()),), {"axes": (axis,), "keepdims": True})
    one_zero_here = ops.logical_and(ops.equal(zeros, 1), is_zero)
    return ops.where(ops.equal(zeros, 0), p / safe, ops.where(one_zero_here, p, 0.0))


# ---------------------------------------------------------------------------------------------
# argmax, argmin


def _arg_infer(opname):
    def infer(types, attrs):
        (t,) = types
        axis, keep = attrs["axis"], attrs["keepdims"]
        if axis is None:
            shape = (1,) * len(t.shape) if keep else ()
        else:
            if not 0 <= axis < len(t.shape):
                raise ShapeError(f"{opname}: axis {axis} out of range for rank {len(t.shape)}")
            shape = reduced_shape(t.shape, (axis,), keep)
        return (TensorType(shape, attrs["dtype"]),)

    return infer


def _arg_reference(np_fn):
    def reference(node, x):
        y = np_fn(x, axis=node.attrs["axis"], keepdims=node.attrs["keepdims"])
        return (np.asarray(y).astype(node.outputs[0].dtype.np),)

    return reference


def _arg_lower(op_type):
    def lower(ctx, node, x):
        xt = node.inputs[0]
        axis, keep = node.attrs["axis"], node.attrs["keepdims"]
        if xt.dtype.is_bool:  # no bool kernel; int32 keeps the order
            x = ctx.cast(x, "int32")
        if axis is None:  # numpy: index into the flattened array
            x, axis, reshape_to = ctx.emit("Reshape", [x, ctx.i64([-1])]), 0, len(xt.shape)
        else:
            reshape_to = None
        attrs = {"axis": axis, "keepdims": int(keep and reshape_to is None)}
        y = ctx.emit(op_type, [x], **attrs)
        if xt.dtype.is_floating:  # numpy/JAX: the first NaN wins; onnxruntime skips NaNs
            nan = ctx.emit("IsNaN", [x])
            first_nan = ctx.emit("ArgMax", [ctx.cast(nan, "int32")], **attrs)
            any_nan = ctx.emit("ReduceMax", [nan, ctx.i64([axis])], keepdims=attrs["keepdims"])
            y = ctx.emit("Where", [any_nan, first_nan, y])
        if reshape_to is not None and keep:
            y = ctx.emit("Reshape", [y, ctx.i64([1] * reshape_to)])
        return (ctx.cast(y, node.outputs[0].dtype),)

    return lower


def _arg_op(name, np_fn, op_type, doc):
    return defop(name, infer=_arg_infer(name), reference=_arg_reference(np_fn),
                 lower=_arg_lower(op_type), vjp=NOT_DIFFERENTIABLE, jvp=NOT_DIFFERENTIABLE, doc=doc)


ARGMAX = _arg_op("argmax", np.argmax, "ArgMax",
                 "Index of the first maximum (a NaN counts as the maximum, as numpy).")
ARGMIN = _arg_op("argmin", np.argmin, "ArgMin",
                 "Index of the first minimum (a NaN counts as the minimum, as numpy).")


def _build_arg(opdef, x, axis, keepdims, name):
    x = as_tensor(x)
    if axis is not None:
        axis = normalize_axis(axis, x.ndim, opdef.name, x.shape)
    attrs = {"axis": axis, "keepdims": bool(keepdims), "dtype": default_int()}
    return apply(opdef, (x,), attrs, name=name)


def argmax(x, axis=None, keepdims=False, name=None):
    """Index of the first maximum along `axis` (None: of the flattened array); default int."""
    return _build_arg(ARGMAX, x, axis, keepdims, name)


def argmin(x, axis=None, keepdims=False, name=None):
    """Index of the first minimum along `axis` (None: of the flattened array); default int."""
    return _build_arg(ARGMIN, x, axis, keepdims, name)

