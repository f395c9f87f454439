"""Indexing ops: strided slices, gather (jnp.take), `x[...]` (getitem) and pad, with their
transposes scatter_slice and scatter_add (the VJPs: cotangents scattered into zeros)."""

import numpy as np

from ..build import as_tensor
from ..errors import DTypeError, ShapeError, user_location
from ..graph import Tensor
from ..registry import apply, defop, linear_jvp
from ..types import TensorType, dims_compatible, format_shape, is_static
from .creation import emit_fill
from .shape import _is_int, _ops, describe, dim_sum, expand_dims, normalize_axis, shape_error
from .shape import squeeze
from .shape import transpose
from .shape_join import concat

__all__ = ["getitem", "gather", "pad", "scatter_add", "scatter_slice"]

_BIG = int(np.iinfo(np.int64).max)
_SMALL = int(np.iinfo(np.int64).min)
_FULL = (None, None, 1)


def _dtype_error(msg):
    return DTypeError(f"{msg}\n  at {user_location()}")


# ---------------------------------------------------------------------------------------------
# slice: Python slicing on every axis, and its transpose scatter_slice


def slice_dim(d, start, stop, step):
    """Length of d[start:stop:step]; for an unknown d only a full slice keeps it."""
    if isinstance(d, int):
        return len(range(d)[slice(start, stop, step)])
    return d if (start, stop, abs(step)) == (None, None, 1) else None


def _slice_infer(types, attrs):
    x, spec = types[0], attrs["spec"]
    if len(spec) != x.rank:
        raise ShapeError(f"slice spec {spec} does not match shape {format_shape(x.shape)}")
    return (TensorType(tuple(slice_dim(d, *s) for d, s in zip(x.shape, spec)), x.dtype),)


def _emit_slice(ctx, x, spec):
    """ONNX Slice over the non-trivial axes of `spec`; its clamping follows Python's."""
    axes = [i for i, s in enumerate(spec) if s != _FULL]
    if not axes:
        return ctx.emit("Identity", [x])
    starts, ends, steps = [], [], []
    for i in axes:
        a, b, s = spec[i]
        starts.append(a if a is not None else (0 if s > 0 else _BIG))
        ends.append(b if b is not None else (_BIG if s > 0 else _SMALL))
        steps.append(s)
    return ctx.emit("Slice", [x, ctx.i64(starts), ctx.i64(ends), ctx.i64(axes), ctx.i64(steps)])


def _index(spec):
    return tuple(slice(*s) for s in spec)


def _slice_vjp(node, g):
    if g is None:
        return (None,)
    return (scatter_slice(g, node.inputs[0], node.attrs["spec"]),)


SLICE = defop(
    "slice",
    infer=_slice_infer,
    reference=lambda node, x: (np.array(x[_index(node.attrs["spec"])]),),
    lower=lambda ctx, node, x: (_emit_slice(ctx, x, node.attrs["spec"]),),
    vjp=_slice_vjp,
    jvp=linear_jvp,
    doc="x[start:stop:step, ...] with one (start, stop, step) per axis (Python semantics).",
)


def slice_axis(x, axis, start=None, stop=None, step=1):
    """x[..., start:stop:step, ...] on one axis."""
    spec = tuple((start, stop, step) if i == axis else _FULL for i in range(x.ndim))
    return apply(SLICE, (x,), {"spec": spec})


def _scatter_slice_infer(types, attrs):
    g, like, spec = types[0], types[1], attrs["spec"]
    want = tuple(slice_dim(d, *s) for d, s in zip(like.shape, spec))
    if g.rank != like.rank or not all(dims_compatible(a, b) for a, b in zip(g.shape, want)):
        raise ShapeError(f"scatter_slice: values of shape {format_shape(g.shape)} do not fit the "
                         f"slice {spec} of shape {format_shape(like.shape)}")
    return (TensorType(like.shape, g.dtype),)


def _scatter_slice_reference(node, g, like):
    out = np.zeros(like.shape, dtype=g.dtype)
    out[_index(node.attrs["spec"])] = g
    return (out,)


def _scatter_slice_lower(ctx, node, g, like):
    spec, shape, dtype = node.attrs["spec"], node.inputs[1].shape, node.outputs[0].dtype
    if is_static(shape) and all(s == 1 for _, _, s in spec):
        before, after = [], []
        for d, (a, b, _) in zip(shape, spec):
            start, stop, _ = slice(a, b).indices(d)
            before.append(start)
            after.append(d - start - max(0, stop - start))
        return (ctx.emit("Pad", [g, ctx.i64(before + after), ctx.const(np.zeros((), dtype.np))]),)
    # Strided or run-time shapes: number every element of `like`, slice the numbers exactly as
    # the forward pass sliced the values, and scatter g to those flat positions.
    shape_name, size = ctx.emit("Shape", [like]), ctx.emit("Size", [like])
    flat = ctx.emit("Range", [ctx.i64(0), size, ctx.i64(1)])
    numbered = ctx.emit("Reshape", [flat, shape_name], allowzero=1)
    picked = ctx.emit("Reshape", [_emit_slice(ctx, numbered, spec), ctx.i64([-1])])
    zeros = emit_fill(ctx, ctx.emit("Unsqueeze", [size, ctx.i64([0])]), 0, dtype)
    updates = ctx.emit("Reshape", [g, ctx.i64([-1])])
    out = ctx.emit("ScatterElements", [zeros, picked, updates], axis=0)
    return (ctx.emit("Reshape", [out, shape_name], allowzero=1),)


def _scatter_slice_vjp(node, g):
    if g is None:
        return (None, None)
    return (apply(SLICE, (g,), {"spec": node.attrs["spec"]}), None)


SCATTER_SLICE = defop(
    "scatter_slice",
    shape_only=(1,),  # inputs whose values are not read
    infer=_scatter_slice_infer,
    reference=_scatter_slice_reference,
    lower=_scatter_slice_lower,
    vjp=_scatter_slice_vjp,
    jvp=linear_jvp,
    doc="zeros shaped like `like` with g written at the slice `spec` (the transpose of slice): "
        "ONNX Pad for unit steps and static shapes, else a flat-index ScatterElements.",
)


def scatter_slice(g, like, spec, name=None):
    """zeros of like's (run-time) shape with g written at like[spec]; spec: (start, stop, step)
    per axis. like's values are not read."""
    g, like = as_tensor(g), as_tensor(like)
    return apply(SCATTER_SLICE, (g, like), {"spec": tuple(tuple(s) for s in spec)}, name=name)


# ---------------------------------------------------------------------------------------------
# gather (jnp.take) and its transpose scatter_add


def _gather_infer(types, attrs):
    x, idx, axis = types[0], types[1], attrs["axis"]
    if not idx.dtype.is_integer:
        raise DTypeError(f"gather indices must be int32 or int64, not {idx.dtype.name}")
    return (TensorType(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype),)


def _gather_vjp(node, g):
    if g is None:
        return (None, None)
    x, idx = node.inputs
    # Repeated indices must add up: scatter_add, not a scatter that overwrites.
    return (scatter_add(g, idx, x, node.attrs["axis"]), None)


GATHER = defop(
    "gather",
    infer=_gather_infer,
    reference=lambda node, x, idx: (np.take(x, idx, axis=node.attrs["axis"]),),
    lower=lambda ctx, node, x, idx: (ctx.emit("Gather", [x, idx], axis=node.attrs["axis"]),),
    vjp=_gather_vjp,
    jvp=linear_jvp,
    doc="jnp.take(x, indices, axis) for in-range indices (negative ones wrap); the VJP "
        "scatter-adds, so repeated indices accumulate. Not differentiable in the indices.",
)


def _index_tensor(indices, x, axis):
    """indices as an int Tensor; static ones are range-checked and wrapped when the dim is known."""
    if isinstance(indices, Tensor):
        if not indices.dtype.is_integer:
            raise _dtype_error(f"index tensor {indices.name!r} has dtype {indices.dtype.name}; "
                               "integer indices are required (boolean masks are not supported)")
        return indices
    arr = np.asarray(indices)
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # an empty list indexes nothing (numpy accepts x[[]])
    if arr.dtype.kind not in "iu":
        raise _dtype_error(f"indices {indices!r} have dtype {arr.dtype}; integer indices are "
                           "required (boolean masks are not supported)")
    d = x.shape[axis]
    if isinstance(d, int) and arr.size:
        bad = arr[(arr < -d) | (arr >= d)]
        if bad.size:
            raise shape_error(f"index {int(bad.flat[0])} is out of range for axis {axis} of "
                              f"{describe(x)} (size {d})")
        arr = np.where(arr < 0, arr + d, arr)
    return as_tensor(arr.astype(np.int64), graph=x.graph)


def gather(x, indices, axis=0, name=None):
    """jnp.take: elements of x at integer `indices` along `axis` (negative indices wrap)."""
    x = as_tensor(x)
    if x.ndim == 0:
        raise shape_error(f"gather: cannot index the zero-dimensional {describe(x)}")
    axis = normalize_axis(axis, x.ndim, "gather", x)
    idx = _index_tensor(indices, x, axis)
    return apply(GATHER, (x, idx), {"axis": axis}, name=name)


def _scatter_add_infer(types, attrs):
    g, idx, like, axis = types[0], types[1], types[2], attrs["axis"]
    want = like.shape[:axis] + idx.shape + like.shape[axis + 1:]
    if g.rank != len(want) or not all(dims_compatible(a, b) for a, b in zip(g.shape, want)):
        raise ShapeError(f"scatter_add: values of shape {format_shape(g.shape)} do not match "
                         f"indices {format_shape(idx.shape)} into shape "
                         f"{format_shape(like.shape)} along axis {axis}")
    if not idx.dtype.is_integer:
        raise DTypeError(f"scatter_add indices must be int32 or int64, not {idx.dtype.name}")
    return (TensorType(like.shape, g.dtype),)


def _scatter_add_reference(node, g, idx, like):
    out = np.zeros(like.shape, dtype=g.dtype)
    np.add.at(out, (slice(None),) * node.attrs["axis"] + (idx,), g)
    return (out,)


def _scatter_add_lower(ctx, node, g, idx, like):
    axis, k = node.attrs["axis"], node.inputs[1].ndim
    rank, shape = node.inputs[2].ndim, node.inputs[2].shape
    # ScatterND scatters along leading axes: bring `axis` (and g's index dims) to the front.
    perm_g = [*range(axis, axis + k), *range(axis), *range(axis + k, rank - 1 + k)]
    perm_x = [axis, *range(axis), *range(axis + 1, rank)]
    if perm_g != sorted(perm_g):
        g = ctx.emit("Transpose", [g], perm=perm_g)
    if is_static(shape):
        shape_t = ctx.i64([shape[p] for p in perm_x])
    else:
        shape_t = ctx.emit("Gather", [ctx.emit("Shape", [like]), ctx.i64(perm_x)], axis=0)
    if node.inputs[1].dtype.bits != 64:
        idx = ctx.cast(idx, "int64")
    idx = ctx.emit("Unsqueeze", [idx, ctx.i64([-1])])
    zeros = emit_fill(ctx, shape_t, 0, node.outputs[0].dtype)
    out = ctx.emit("ScatterND", [zeros, idx, g], reduction="add")
    if perm_x != sorted(perm_x):
        out = ctx.emit("Transpose", [out], perm=sorted(range(rank), key=perm_x.__getitem__))
    return (out,)


def _scatter_add_vjp(node, g):
    if g is None:
        return (None, None, None)
    return (apply(GATHER, (g, node.inputs[1]), {"axis": node.attrs["axis"]}), None, None)


SCATTER_ADD = defop(
    "scatter_add",
    shape_only=(2,),  # inputs whose values are not read
    infer=_scatter_add_infer,
    reference=_scatter_add_reference,
    lower=_scatter_add_lower,
    vjp=_scatter_add_vjp,
    jvp=linear_jvp,
    doc="zeros shaped like `like` plus g added at `indices` along `axis` (repeats accumulate): "
        "the transpose of gather, lowered to ScatterND(reduction='add').",
)


def scatter_add(g, indices, like, axis=0, name=None):
    """zeros of like's run-time shape with g added at `indices` along `axis` (like's values are
    not read); the transpose of gather(x, indices, axis)."""
    g, like = as_tensor(g), as_tensor(like)
    axis = normalize_axis(axis, like.ndim, "scatter_add", like)
    idx = _index_tensor(indices, like, axis)
    return apply(SCATTER_ADD, (g, idx, like), {"axis": axis}, name=name)



# ---------------------------------------------------------------------------------------------
# getitem: x[idx] as slice -> gather -> squeeze -> transpose -> expand_dims


def _kind(e):
    if e is None:
        return "new"
    if e is Ellipsis:
        return "ellipsis"
    if isinstance(e, slice):
        return "slice"
    if _is_int(e) or (isinstance(e, np.ndarray) and e.ndim == 0 and e.dtype.kind in "iu"):
        return "int"
    if isinstance(e, (Tensor, list, np.ndarray)):
        return "array"
    raise _dtype_error(f"unsupported index {e!r} of type {type(e).__name__}: use ints, slices, "
                       "None, ..., or one integer array / int Tensor")


def _expand_index(x, idx):
    """(kinds, entries) with the Ellipsis replaced by full slices."""
    entries = list(idx) if isinstance(idx, tuple) else [idx]
    kinds = [_kind(e) for e in entries]
    if kinds.count("ellipsis") > 1:
        raise shape_error(f"an index can only have a single ellipsis ('...'); indexing "
                          f"{describe(x)}")
    if kinds.count("array") > 1:
        raise shape_error(f"indexing {describe(x)}: only one integer-array / Tensor index is "
                          "supported per expression (index the axes one at a time)")
    used = sum(k in ("slice", "int", "array") for k in kinds)
    if used > x.ndim:
        raise shape_error(f"too many indices for {describe(x)}: "
                          f"{used} indexed axes, rank {x.ndim}")
    at = kinds.index("ellipsis") if "ellipsis" in kinds else len(kinds)
    fill = x.ndim - used
    kinds[at:at + 1] = ["slice"] * fill
    entries[at:at + 1] = [slice(None)] * fill
    return kinds, entries


def _static_slice(e, x):
    parts = (e.start, e.stop, 1 if e.step is None else e.step)
    for v in parts:
        if v is not None and not _is_int(v):
            raise _dtype_error(f"slice bounds must be Python ints or None, got {e!r} (indexing "
                               f"{describe(x)})")
    if parts[2] == 0:
        raise shape_error(f"slice step cannot be zero (indexing {describe(x)})")
    return tuple(None if v is None else int(v) for v in parts)


def _int_slice(i, axis, x):
    d = x.shape[axis]
    i = int(i)
    if isinstance(d, int):
        if not -d <= i < d:
            raise shape_error(f"index {i} is out of range for axis {axis} of {describe(x)} "
                              f"(size {d})")
        i %= d
    return (i, None if i == -1 else i + 1, 1)


def _index_plan(x, kinds, entries):
    """Per-axis slice spec, dropped (int) axes and the array index (axis, value) or None."""
    spec, drop, adv, axis = [], [], None, 0
    for k, e in zip(kinds, entries):
        if k == "new":
            continue
        if k == "slice":
            spec.append(_static_slice(e, x))
        elif k == "int":
            spec.append(_int_slice(e, axis, x))
            drop.append(axis)
        else:
            spec.append(_FULL)
            adv = (axis, e)
        axis += 1
    return tuple(spec), drop, adv


def _final_layout(kinds, front, k):
    """Output positions of new axes: numpy puts the array's dims in place when the advanced
    indices (ints and the array) are adjacent, else in front."""
    layout = [{"new": "new", "slice": "dim", "array": "adv"}[t] for t in kinds if t != "int"]
    if front:
        layout = ["adv"] + [t for t in layout if t != "adv"]
    final = []
    for t in layout:
        final.extend(["dim"] * k if t == "adv" else [t])
    return tuple(i for i, t in enumerate(final) if t == "new")


def getitem(x, idx, name=None):
    """numpy basic indexing (ints, slices with steps, None, ...) plus one integer-array or
    int-Tensor index (gathered along its axis, placed where numpy places it)."""
    x = as_tensor(x)
    kinds, entries = _expand_index(x, idx)
    spec, drop, adv = _index_plan(x, kinds, entries)
    out = x
    if any(s != _FULL for s in spec):
        out = apply(SLICE, (out,), {"spec": spec}, name=name)
    front, k = False, 0
    if adv is not None:
        a, value = adv
        idx_t = _index_tensor(value, x, a)
        out = apply(GATHER, (out, idx_t), {"axis": a}, name=name)
        k = idx_t.ndim
        drop = [j if j < a else j + k - 1 for j in drop]
        pos = [i for i, t in enumerate(kinds) if t in ("int", "array")]
        front = pos[-1] - pos[0] + 1 != len(pos)
    if drop:
        out = squeeze(out, tuple(drop))
    start = 0 if adv is None else adv[0] - sum(j < adv[0] for j in drop)
    if front and k and start:  # move the array's dims to the front, as numpy does
        rest = [i for i in range(out.ndim) if not start <= i < start + k]
        out = transpose(out, tuple(range(start, start + k)) + tuple(rest))
    new_axes = _final_layout(kinds, front, k)
    if new_axes:
        out = expand_dims(out, new_axes)
    return out


# ---------------------------------------------------------------------------------------------
# pad (numpy.pad: constant, reflect, edge, wrap)

_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_infer(types, attrs):
    x, pads, mode = types[0], attrs["pads"], attrs["mode"]
    out = []
    for axis, (d, (b, a)) in enumerate(zip(x.shape, pads)):
        if isinstance(d, int) and (b or a):
            # reflect mirrors inside the axis, wrap copies at most the axis, edge needs an edge
            too_short = {"reflect": max(b, a) > d - 1, "wrap": max(b, a) > d, "edge": d == 0}
            if too_short.get(mode, False):
                raise ShapeError(f"pad mode {mode!r} cannot pad axis {axis} of shape "
                                 f"{format_shape(x.shape)} by {(b, a)} (axis too short)")
        out.append(dim_sum([d, b, a]))
    return (TensorType(tuple(out), x.dtype),)


def _pad_reference(node, x):
    mode = node.attrs["mode"]
    kw = {"constant_values": node.attrs["value"]} if mode == "constant" else {}
    return (np.pad(x, node.attrs["pads"], mode=mode, **kw).astype(x.dtype, copy=False),)


def _pad_lower(ctx, node, x):
    pads, mode = node.attrs["pads"], node.attrs["mode"]
    widths = ctx.i64([b for b, _ in pads] + [a for _, a in pads])
    extra = []
    if mode == "constant":
        extra = [ctx.const(np.asarray(node.attrs["value"]).astype(node.outputs[0].dtype.np))]
    return (ctx.emit("Pad", [x, widths, *extra], mode=mode),)


def _fold_reflect(g, axis, b, a):
    """Transpose of reflect padding on one axis: mirrored cotangents add onto x[1:b+1] and
    x[d-1-a:d-1]."""
    c = slice_axis(g, axis, b, -a if a else None)
    if b:
        left = slice_axis(g, axis, b - 1, None, -1)  # g[:b] reversed
        c = concat([slice_axis(c, axis, 0, 1), slice_axis(c, axis, 1, b + 1) + left,
                    slice_axis(c, axis, b + 1, None)], axis)
    if a:
        right = slice_axis(g, axis, None, -a - 1, -1)  # g[-a:] reversed
        c = concat([slice_axis(c, axis, None, -a - 1), slice_axis(c, axis, -a - 1, -1) + right,
                    slice_axis(c, axis, -1, None)], axis)
    return c


def _fold_edge(g, axis, b, a):
    """Transpose of edge padding on one axis: every padded cotangent adds onto the border."""
    c = slice_axis(g, axis, b, -a if a else None)
    if b:
        left = _ops().sum(slice_axis(g, axis, 0, b), axis=axis, keepdims=True)
        c = concat([slice_axis(c, axis, 0, 1) + left, slice_axis(c, axis, 1, None)], axis)
    if a:
        right = _ops().sum(slice_axis(g, axis, -a, None), axis=axis, keepdims=True)
        c = concat([slice_axis(c, axis, None, -1), slice_axis(c, axis, -1, None) + right], axis)
    return c


def _fold_wrap(g, axis, b, a):
    """Transpose of wrap padding on one axis: the left pad came from x[d-b:], the right from
    x[:a]."""
    c = slice_axis(g, axis, b, -a if a else None)
    if b:
        c = concat([slice_axis(c, axis, None, -b),
                    slice_axis(c, axis, -b, None) + slice_axis(g, axis, 0, b)], axis)
    if a:
        c = concat([slice_axis(c, axis, 0, a) + slice_axis(g, axis, -a, None),
                    slice_axis(c, axis, a, None)], axis)
    return c


_FOLDS = {"reflect": _fold_reflect, "edge": _fold_edge, "wrap": _fold_wrap}


def _pad_vjp(node, g):
    if g is None:
        return (None,)
    pads, mode = node.attrs["pads"], node.attrs["mode"]
    if mode == "constant":  # the fill value is not an input: the VJP only crops
        return (apply(SLICE, (g,), {"spec": tuple((b, -a if a else None, 1) for b, a in pads)}),)
    # reflect/edge/wrap index each axis independently, so their transpose folds axis by axis.
    for axis, (b, a) in enumerate(pads):
        if b or a:
            g = _FOLDS[mode](g, axis, b, a)
    return (g,)


def _pad_jvp(node, t):
    if t is None:
        return (None,)
    # Padding is affine in x: the tangent is padded with zeros, not with the fill value.
    return (apply(PAD, (t,), dict(node.attrs, value=0)),)


PAD = defop(
    "pad",
    infer=_pad_infer,
    reference=_pad_reference,
    lower=_pad_lower,
    vjp=_pad_vjp,
    jvp=_pad_jvp,
    doc="numpy.pad with modes constant / reflect / edge / wrap (ONNX Pad).",
)


def _pad_widths(pad_width, x):
    arr = np.asarray(pad_width)
    if arr.dtype.kind not in "iu":
        raise shape_error(f"pad: pad_width {pad_width!r} must hold ints")
    try:
        arr = np.broadcast_to(arr, (x.ndim, 2))
    except ValueError:
        raise shape_error(f"pad: pad_width {pad_width!r} does not fit {describe(x)} (use an "
                          "int, (before, after) or one pair per axis)") from None
    if (arr < 0).any():
        raise shape_error(f"pad: pad_width {pad_width!r} has negative entries")
    return tuple((int(b), int(a)) for b, a in arr)


def pad(x, pad_width, mode="constant", constant_values=0, name=None):
    """numpy.pad: `pad_width` an int, (before, after) or per-axis pairs; mode "constant"
    (with a scalar `constant_values`), "reflect", "edge" or "wrap"."""
    x = as_tensor(x)
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode {mode!r} is not supported (use one of {_PAD_MODES})\n"
                         f"  at {user_location()}")
    if isinstance(constant_values, Tensor) or np.ndim(constant_values) != 0:
        raise ValueError(f"pad: constant_values must be a Python scalar, got "
                         f"{constant_values!r}\n  at {user_location()}")
    value = np.asarray(constant_values).item()
    attrs = {"pads": _pad_widths(pad_width, x), "mode": mode, "value": value}
    return apply(PAD, (x,), attrs, name=name)
