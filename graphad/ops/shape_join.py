"""Joining and splitting ops: concat, stack, split, and split_like (concat's transpose at run-time
sizes). Linear in every input: VJPs split or join the cotangent, JVPs join or split tangents."""

import numpy as np

from ..build import as_tensor, promote
from ..errors import DTypeError, ShapeError
from ..graph import Tensor
from ..registry import apply, defop, linear_jvp
from ..types import TensorType, dims_compatible, format_shape, merge_dims
from .shape import _is_int, _ops, describe, dim_sum, normalize_axis, shape_error, squeeze

__all__ = ["concat", "stack", "split", "split_like"]


def _listing(types):
    return ", ".join(format_shape(t.shape) for t in types)


def _same_dtype(types, opname):
    if len({t.dtype for t in types}) != 1:
        raise DTypeError(f"{opname}: inputs have different dtypes "
                         f"{sorted({t.dtype.name for t in types})}")
    return types[0].dtype


def _merged_dims(types, skip, opname):
    """Per-axis merge of equal-rank shapes (axis `skip` excluded); ShapeError on a conflict."""
    shapes = [t.shape for t in types]
    if len({len(s) for s in shapes}) != 1:
        raise ShapeError(f"{opname}: the inputs have different ranks: shapes {_listing(types)}")
    out = []
    for i in range(len(shapes[0])):
        d = shapes[0][i]
        if i != skip:
            for s in shapes[1:]:
                if not dims_compatible(d, s[i]):
                    raise ShapeError(f"{opname}: shapes {_listing(types)} differ at axis {i}")
                d = merge_dims(d, s[i])
        out.append(d)
    return out


def _fill_zeros(cots, like):
    """Cotangents/tangents with None replaced by zeros shaped like the matching tensor."""
    return [c if c is not None else _ops().zeros_like(t) for c, t in zip(cots, like)]


def _as_list(xs, opname):
    if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)):
        raise shape_error(f"{opname} takes a list or tuple of tensors, got {type(xs).__name__}")
    if not xs:
        raise shape_error(f"{opname} needs at least one tensor")
    return promote(*xs)


# ---------------------------------------------------------------------------------------------
# concat


def _concat_infer(types, attrs):
    axis = attrs["axis"]
    dtype = _same_dtype(types, "concat")
    out = _merged_dims(types, axis, f"concat along axis {axis}")
    out[axis] = dim_sum([t.shape[axis] for t in types])
    return (TensorType(tuple(out), dtype),)


def _concat_vjp(node, g):
    if g is None:
        return (None,) * len(node.inputs)
    if len(node.inputs) == 1:
        return (g,)
    return tuple(split_like(g, node.inputs, node.attrs["axis"]))


def _concat_jvp(node, *tangents):
    if all(t is None for t in tangents):
        return (None,)
    return (concat(_fill_zeros(tangents, node.inputs), node.attrs["axis"]),)


CONCAT = defop(
    "concat",
    infer=_concat_infer,
    reference=lambda node, *xs: (np.concatenate(xs, axis=node.attrs["axis"]),),
    lower=lambda ctx, node, *xs: (ctx.emit("Concat", list(xs), axis=node.attrs["axis"]),),
    vjp=_concat_vjp,
    jvp=_concat_jvp,
    doc="numpy.concatenate; the VJP splits the cotangent at the inputs' (run-time) sizes.",
)


def concat(xs, axis=0, name=None):
    """Join tensors along an existing axis (dtypes promoted as jnp.concatenate does)."""
    xs = _as_list(xs, "concat")
    if xs[0].ndim == 0:
        raise shape_error(f"concat: zero-dimensional tensors cannot be concatenated "
                          f"({describe(xs[0])})")
    axis = normalize_axis(axis, xs[0].ndim, "concat", xs[0])
    return apply(CONCAT, tuple(xs), {"axis": axis}, name=name)


# ---------------------------------------------------------------------------------------------
# split_like: split g along an axis into pieces sized like the reference tensors


def _split_like_infer(types, attrs):
    g, likes, axis = types[0], types[1:], attrs["axis"]
    for t in likes:
        if t.rank != g.rank:
            raise ShapeError(f"split_like: reference shapes {_listing(likes)} and split shape "
                             f"{format_shape(g.shape)} have different ranks")
    return tuple(
        TensorType(g.shape[:axis] + (t.shape[axis],) + g.shape[axis + 1:], g.dtype) for t in likes
    )


def _split_like_reference(node, g, *likes):
    sizes = [t.shape[node.attrs["axis"]] for t in likes]
    return tuple(np.split(g, np.cumsum(sizes)[:-1], axis=node.attrs["axis"]))


def _split_like_lower(ctx, node, g, *likes):
    axis = node.attrs["axis"]
    dims = [t.shape[axis] for t in node.inputs[1:]]
    if all(isinstance(d, int) for d in dims):
        sizes = ctx.i64(dims)
    else:
        sizes = ctx.emit("Concat", [
            ctx.i64([d]) if isinstance(d, int) else ctx.emit("Shape", [n], start=axis, end=axis + 1)
            for d, n in zip(dims, likes)
        ], axis=0)
    outs = ctx.emit("Split", [g, sizes], axis=axis, outputs=len(likes))
    return outs if isinstance(outs, tuple) else (outs,)


def _split_like_vjp(node, *cots):
    nones = (None,) * (len(node.inputs) - 1)
    if all(c is None for c in cots):
        return (None,) + nones
    return (concat(_fill_zeros(cots, node.outputs), node.attrs["axis"]),) + nones


SPLIT_LIKE = defop(
    "split_like",
    shape_only="rest",  # inputs whose values are not read
    infer=_split_like_infer,
    reference=_split_like_reference,
    lower=_split_like_lower,
    vjp=_split_like_vjp,
    jvp=linear_jvp,
    doc="Split g along `axis` into pieces as long as the references' dims there (run-time "
        "sizes; the references' values are not read). The transpose of concat.",
)


def split_like(g, likes, axis, name=None):
    """Pieces of g along `axis` with the (run-time) sizes of `likes` along that axis."""
    g = as_tensor(g)
    likes = [as_tensor(t) for t in likes]
    axis = normalize_axis(axis, g.ndim, "split_like", g)
    outs = apply(SPLIT_LIKE, (g, *likes), {"axis": axis}, name=name)
    return list(outs) if isinstance(outs, tuple) else [outs]


# ---------------------------------------------------------------------------------------------
# stack


def _stack_infer(types, attrs):
    dtype = _same_dtype(types, "stack")
    out = _merged_dims(types, -1, "stack (all shapes must be equal)")
    out.insert(attrs["axis"], len(types))
    return (TensorType(tuple(out), dtype),)


def _stack_lower(ctx, node, *xs):
    axis = ctx.i64([node.attrs["axis"]])
    return (ctx.emit("Concat", [ctx.emit("Unsqueeze", [x, axis]) for x in xs],
                     axis=node.attrs["axis"]),)


def _stack_vjp(node, g):
    if g is None:
        return (None,) * len(node.inputs)
    axis = node.attrs["axis"]
    return tuple(squeeze(p, axis) for p in split(g, len(node.inputs), axis))


def _stack_jvp(node, *tangents):
    if all(t is None for t in tangents):
        return (None,)
    return (stack(_fill_zeros(tangents, node.inputs), node.attrs["axis"]),)


STACK = defop(
    "stack",
    infer=_stack_infer,
    reference=lambda node, *xs: (np.stack(xs, axis=node.attrs["axis"]),),
    lower=_stack_lower,
    vjp=_stack_vjp,
    jvp=_stack_jvp,
    doc="numpy.stack; the VJP splits the cotangent along the new axis.",
)


def stack(xs, axis=0, name=None):
    """Join equal-shaped tensors along a new axis."""
    xs = _as_list(xs, "stack")
    axis = normalize_axis(axis, xs[0].ndim + 1, "stack", xs[0])
    return apply(STACK, tuple(xs), {"axis": axis}, name=name)


# ---------------------------------------------------------------------------------------------
# split (numpy.split semantics)


def _points(indices, d):
    """numpy.split's division points normalised as Python slicing does, for a known size d."""
    pts = [0] + [min(max(i + d if i < 0 else i, 0), d) for i in indices] + [d]
    return pts


def _split_dims(d, attrs):
    n, indices = attrs["sections"], attrs["indices"]
    if n is not None:
        if isinstance(d, int):
            return [d // n] * n
        return [d if n == 1 else None] * n
    if isinstance(d, int):
        pts = _points(indices, d)
        return [max(0, b - a) for a, b in zip(pts, pts[1:])]
    bounds = list(zip((0,) + indices, indices + (None,)))
    return [d if (a, b) == (0, None) else (None if b is None else b - a) for a, b in bounds]


def _split_infer(types, attrs):
    x, axis = types[0], attrs["axis"]
    d = x.shape[axis]
    if attrs["sections"] is not None and isinstance(d, int) and d % attrs["sections"]:
        raise ShapeError(f"split: axis {axis} of shape {format_shape(x.shape)} (size {d}) "
                         f"does not divide into {attrs['sections']} equal sections")
    return tuple(TensorType(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype)
                 for s in _split_dims(d, attrs))


def _contiguous(node):
    """Whether the pieces tile the axis in order (so concat undoes the split)."""
    d = node.inputs[0].shape[node.attrs["axis"]]
    if node.attrs["sections"] is not None or not isinstance(d, int):
        return True  # unknown sizes: the builder only accepts increasing indices
    pts = _points(node.attrs["indices"], d)
    return all(a <= b for a, b in zip(pts, pts[1:]))


def _split_lower(ctx, node, x):
    axis, n, indices = node.attrs["axis"], node.attrs["sections"], node.attrs["indices"]
    sizes = [t.shape[axis] for t in node.outputs]
    if all(isinstance(s, int) for s in sizes) and _contiguous(node):
        outs = ctx.emit("Split", [x, ctx.i64(sizes)], axis=axis, outputs=len(sizes))
    elif n is not None:
        outs = ctx.emit("Split", [x], axis=axis, num_outputs=n, outputs=n)
    else:  # one Slice per piece: Python slicing semantics for any indices
        big = np.iinfo(np.int64).max
        outs = tuple(
            ctx.emit("Slice", [x, ctx.i64([a]), ctx.i64([big if b is None else b]),
                               ctx.i64([axis])])
            for a, b in zip((0,) + indices, indices + (None,))
        )
    return outs if isinstance(outs, tuple) else (outs,)


def _split_reference(node, x):
    n, indices = node.attrs["sections"], node.attrs["indices"]
    return tuple(np.split(x, n if n is not None else list(indices), axis=node.attrs["axis"]))


def _split_vjp(node, *cots):
    if all(c is None for c in cots):
        return (None,)
    axis = node.attrs["axis"]
    if _contiguous(node):
        return (concat(_fill_zeros(cots, node.outputs), axis),)
    # Overlapping pieces (decreasing indices): scatter each piece back and add.
    from .indexing import scatter_slice  # noqa: PLC0415

    x, indices = node.inputs[0], node.attrs["indices"]
    total = None
    for c, a, b in zip(cots, (0,) + indices, indices + (None,)):
        if c is None:
            continue
        spec = tuple((a, b, 1) if i == axis else (None, None, 1) for i in range(x.ndim))
        piece = scatter_slice(c, x, spec)
        total = piece if total is None else total + piece
    return (total,)


SPLIT = defop(
    "split",
    infer=_split_infer,
    reference=_split_reference,
    lower=_split_lower,
    vjp=_split_vjp,
    jvp=linear_jvp,
    doc="numpy.split: `sections` equal pieces or pieces between `indices`; the VJP concatenates.",
)


def split(x, indices_or_sections, axis=0, name=None):
    """numpy.split: an int gives that many equal sections, a list the split indices. A list."""
    x = as_tensor(x)
    if x.ndim == 0:
        raise shape_error(f"split: {describe(x)} is zero-dimensional and cannot be split")
    axis = normalize_axis(axis, x.ndim, "split", x)
    d = x.shape[axis]
    if _is_int(indices_or_sections):
        n = int(indices_or_sections)
        if n <= 0:
            raise shape_error(f"split: number of sections must be positive, got {n}")
        if isinstance(d, int) and d % n:
            raise shape_error(f"split: axis {axis} of {describe(x)} (size {d}) "
                              f"does not divide into {n} equal sections")
        attrs = {"axis": axis, "sections": n, "indices": None}
    else:
        indices = tuple(indices_or_sections)
        if not all(_is_int(i) for i in indices):
            raise shape_error(f"split: indices {indices!r} must be ints")
        indices = tuple(int(i) for i in indices)
        if not isinstance(d, int) and (
            any(i < 0 for i in indices) or any(a > b for a, b in zip(indices, indices[1:]))
        ):
            raise shape_error(f"split: axis {axis} of {describe(x)} has an unknown size, so "
                              f"indices {indices} must be >= 0 and increasing")
        attrs = {"axis": axis, "sections": None, "indices": indices}
    outs = apply(SPLIT, (x,), attrs, name=name)
    return list(outs) if isinstance(outs, tuple) else [outs]
