"""Shape ops: transpose, reshape, squeeze/expand_dims, broadcast_to (+ runtime-shape `_like` twins)
and tile. All are linear: each VJP is the op's transpose, each JVP the same op on the tangent.
concat, stack and split live in `shape_join.py` (re-exported here)."""

import numpy as np

from ..build import as_tensor
from ..errors import ShapeError, user_location
from ..graph import Tensor
from ..registry import apply, defop, linear_jvp
from ..types import TensorType, as_shape, broadcast_shapes, format_shape, is_static, merge_dims

__all__ = [
    "transpose",
    "reshape",
    "reshape_like",
    "squeeze",
    "expand_dims",
    "broadcast_to",
    "broadcast_to_like",
    "tile",
    "tile_sum",
]


def _ops():
    from .. import ops  # noqa: PLC0415  (late: sum lives in another family)

    return ops


# ---------------------------------------------------------------------------------------------
# Helpers shared by the shape and indexing families


def shape_error(msg):
    """A ShapeError for a bad static argument, naming the user's line."""
    return ShapeError(f"{msg}\n  at {user_location()}")


def describe(x):
    """How builder errors name a tensor: its name and shape."""
    return f"tensor {x.name!r} of shape {format_shape(x.shape)}"


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def normalize_axis(axis, ndim, opname, x):
    """`axis` in [-ndim, ndim) as a non-negative int, else a ShapeError naming the tensor `x`
    (or the shape `x`). For ops that add axes, ndim is the output rank."""
    what = describe(x) if isinstance(x, Tensor) else f"a tensor of shape {format_shape(x)}"
    if not _is_int(axis):
        raise shape_error(f"{opname}: axis {axis!r} is not an int ({what})")
    if not -ndim <= axis < ndim:
        raise shape_error(f"{opname}: axis {axis} is out of range for {what} (valid axes "
                          f"{-ndim}..{ndim - 1})")
    return int(axis) % ndim


def normalize_axes(axis, ndim, opname, x):
    """An int or a sequence of ints as a tuple of distinct non-negative axes."""
    axes = (axis,) if _is_int(axis) else tuple(axis)
    out = tuple(normalize_axis(a, ndim, opname, x) for a in axes)
    if len(set(out)) != len(out):
        what = describe(x) if isinstance(x, Tensor) else format_shape(x)
        raise shape_error(f"{opname}: repeated axis in {axis!r} for {what}")
    return out


def dim_mul(d, k):
    """d * k for a dim that may be unknown or named."""
    if k == 0:
        return 0
    if isinstance(d, int):
        return d * k
    return d if k == 1 else None


def dim_sum(dims):
    """Sum of dims: an int when all are known, the one symbolic dim when the rest are 0."""
    known = [d for d in dims if isinstance(d, int)]
    sym = [d for d in dims if not isinstance(d, int)]
    if not sym:
        return sum(known)
    return sym[0] if len(sym) == 1 and sum(known) == 0 else None


def _sum_down(g, in_shape, out_shape):
    """Sum `g` (of `out_shape`) over the axes statically known to be broadcast from `in_shape`.

    Axes that unknown dims leave undecidable stay broadcast-shaped: the engine reduces them.
    """
    lead = len(out_shape) - len(in_shape)
    keep = tuple(
        lead + i
        for i, (d, o) in enumerate(zip(in_shape, out_shape[lead:]))
        if d == 1 and o != 1
    )
    if keep:
        g = _ops().sum(g, axis=keep, keepdims=True)
    if lead:
        g = _ops().sum(g, axis=tuple(range(lead)))
    return g


# ---------------------------------------------------------------------------------------------
# transpose


def _transpose_infer(types, attrs):
    x, perm = types[0], attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"perm {perm} is not a permutation of the axes of shape "
                         f"{format_shape(x.shape)}")
    return (TensorType(tuple(x.shape[p] for p in perm), x.dtype),)


def _transpose_vjp(node, g):
    if g is None:
        return (None,)
    perm = node.attrs["perm"]
    inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
    return (transpose(g, inverse),)


TRANSPOSE = defop(
    "transpose",
    infer=_transpose_infer,
    reference=lambda node, x: (np.transpose(x, node.attrs["perm"]),),
    lower=lambda ctx, node, x: (ctx.emit("Transpose", [x], perm=list(node.attrs["perm"]))
                                if node.attrs["perm"] else ctx.emit("Identity", [x]),),
    vjp=_transpose_vjp,
    jvp=linear_jvp,
    doc="Permute axes (numpy.transpose); the VJP applies the inverse permutation.",
)


def transpose(x, perm=None, name=None):
    """Permute the axes of x; `perm=None` reverses them (x.T)."""
    x = as_tensor(x)
    n = x.ndim
    if perm is None:
        perm = tuple(reversed(range(n)))
    else:
        perm = tuple(perm)
        if len(perm) != n or not all(_is_int(p) and -n <= p < n for p in perm) or len(
            {int(p) % n for p in perm}
        ) != n:
            raise shape_error(
                f"transpose: perm {perm} is not a permutation of the axes of {describe(x)} "
                f"(rank {n})"
            )
        perm = tuple(int(p) % n for p in perm)
    return apply(TRANSPOSE, (x,), {"perm": perm}, name=name)


# ---------------------------------------------------------------------------------------------
# reshape (static target) and reshape_like (runtime target)


def _size_text(shape):
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return "unknown size"
        n *= d
    return f"size {n}"


def reshape_shape(src, target):
    """The output shape of reshape(src -> target); `target` is ints with at most one -1."""
    known_in = int(np.prod([d for d in src if isinstance(d, int)], dtype=np.int64))
    sym_in = [d for d in src if not isinstance(d, int)]
    known_out = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    bad = ShapeError(f"cannot reshape a tensor of shape {format_shape(src)} ({_size_text(src)}) "
                     f"into shape {tuple(target)}")
    if -1 not in target:
        if not sym_in and known_in != known_out:
            raise bad
        if sym_in and known_in and known_out % known_in:
            raise bad
        return tuple(target)
    if known_out == 0:
        raise bad  # -1 next to a zero dim is ambiguous (numpy refuses it too)
    if not sym_in:
        if known_in % known_out:
            raise bad
        fill = known_in // known_out
    elif len(sym_in) == 1 and known_in == known_out:
        fill = sym_in[0]  # the one unknown/named dim moves to the -1 slot unchanged
    else:
        fill = None
    return tuple(fill if d == -1 else d for d in target)


def _reshape_infer(types, attrs):
    x = types[0]
    return (TensorType(reshape_shape(x.shape, attrs["shape"]), x.dtype),)


def _reshape_lower(ctx, node, x):
    target = node.attrs["shape"]
    return (ctx.emit("Reshape", [x, ctx.i64(list(target))], allowzero=1 if 0 in target else None),)


def _reshape_vjp(node, g):
    if g is None:
        return (None,)
    x = node.inputs[0]
    unknown = [d for d in x.shape if not isinstance(d, int)]
    if len(unknown) <= 1:
        return (reshape(g, tuple(d if isinstance(d, int) else -1 for d in x.shape)),)
    return (reshape_like(g, x),)


RESHAPE = defop(
    "reshape",
    infer=_reshape_infer,
    reference=lambda node, x: (np.reshape(x, node.attrs["shape"]),),
    lower=_reshape_lower,
    vjp=_reshape_vjp,
    jvp=linear_jvp,
    doc="Reshape to a static target (one dim may be -1); the VJP reshapes back.",
)


def reshape(x, shape, name=None):
    """x with a new shape of the same size; one target dim may be -1 (inferred)."""
    x = as_tensor(x)
    target = (shape,) if _is_int(shape) else tuple(shape)
    for d in target:
        if not _is_int(d) or d < -1:
            hint = " (use ga.reshape_like for a runtime shape)" if d is None or isinstance(
                d, str) else ""
            raise shape_error(f"reshape: target {target} must hold ints >= -1{hint}; "
                              f"input {describe(x)}")
    target = tuple(int(d) for d in target)
    if target.count(-1) > 1:
        raise shape_error(f"reshape: target {target} has more than one -1; input "
                          f"{describe(x)}")
    return apply(RESHAPE, (x,), {"shape": target}, name=name)


def _reshape_like_infer(types, attrs):
    x, y = types
    if is_static(x.shape) and is_static(y.shape) and np.prod(x.shape) != np.prod(y.shape):
        raise ShapeError(f"cannot reshape a tensor of shape {format_shape(x.shape)} into the "
                         f"shape {format_shape(y.shape)} of the reference tensor")
    return (TensorType(y.shape, x.dtype),)


def _reshape_like_vjp(node, g):
    if g is None:
        return (None, None)
    return (reshape_like(g, node.inputs[0]), None)


RESHAPE_LIKE = defop(
    "reshape_like",
    shape_only=(1,),  # inputs whose values are not read
    infer=_reshape_like_infer,
    reference=lambda node, x, y: (np.reshape(x, y.shape),),
    lower=lambda ctx, node, x, y: (ctx.emit("Reshape", [x, ctx.emit("Shape", [y])], allowzero=1),),
    vjp=_reshape_like_vjp,
    jvp=linear_jvp,
    doc="Reshape x to y's run-time shape (ONNX Reshape(x, Shape(y))); y's values are not read.",
)


def reshape_like(x, y, name=None):
    """x reshaped to the run-time shape of y (same number of elements)."""
    x, y = as_tensor(x), as_tensor(y)
    return apply(RESHAPE_LIKE, (x, y), name=name)


# ---------------------------------------------------------------------------------------------
# squeeze and expand_dims


def _squeeze_infer(types, attrs):
    x, axes = types[0], attrs["axes"]
    for a in axes:
        if isinstance(x.shape[a], int) and x.shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of shape {format_shape(x.shape)}: "
                             f"its size is {x.shape[a]}, not 1")
    return (TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype),)


def _squeeze_lower(ctx, node, x):
    axes = node.attrs["axes"]
    if not axes:
        return (ctx.emit("Identity", [x]),)  # an empty Squeeze would drop every size-1 dim
    return (ctx.emit("Squeeze", [x, ctx.i64(list(axes))]),)


def _squeeze_vjp(node, g):
    if g is None:
        return (None,)
    return (expand_dims(g, node.attrs["axes"]) if node.attrs["axes"] else g,)


SQUEEZE = defop(
    "squeeze",
    infer=_squeeze_infer,
    reference=lambda node, x: (np.squeeze(x, axis=node.attrs["axes"]),),
    lower=_squeeze_lower,
    vjp=_squeeze_vjp,
    jvp=linear_jvp,
    doc="Drop size-1 axes; the VJP re-inserts them.",
)


def squeeze(x, axis=None, name=None):
    """Remove size-1 axes: `axis=None` drops every axis statically known to be 1."""
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = normalize_axes(axis, x.ndim, "squeeze", x)
        for a in axes:
            if isinstance(x.shape[a], int) and x.shape[a] != 1:
                raise shape_error(f"squeeze: axis {a} of {describe(x)} has size "
                                  f"{x.shape[a]}, not 1")
    return apply(SQUEEZE, (x,), {"axes": tuple(sorted(axes))}, name=name)


def _expand_dims_infer(types, attrs):
    x, axes = types[0], attrs["axes"]
    dims = iter(x.shape)
    out = tuple(1 if i in axes else next(dims) for i in range(x.rank + len(axes)))
    return (TensorType(out, x.dtype),)


def _expand_dims_lower(ctx, node, x):
    axes = node.attrs["axes"]
    if not axes:
        return (ctx.emit("Identity", [x]),)
    return (ctx.emit("Unsqueeze", [x, ctx.i64(list(axes))]),)


def _expand_dims_vjp(node, g):
    if g is None:
        return (None,)
    return (squeeze(g, node.attrs["axes"]) if node.attrs["axes"] else g,)


EXPAND_DIMS = defop(
    "expand_dims",
    infer=_expand_dims_infer,
    reference=lambda node, x: (np.expand_dims(x, node.attrs["axes"]),),
    lower=_expand_dims_lower,
    vjp=_expand_dims_vjp,
    jvp=linear_jvp,
    doc="Insert size-1 axes at the given positions of the output; the VJP squeezes them.",
)


def expand_dims(x, axis, name=None):
    """Insert size-1 axes; `axis` (int or tuple) counts positions in the output."""
    x = as_tensor(x)
    n_new = 1 if _is_int(axis) else len(tuple(axis))
    axes = normalize_axes(axis, x.ndim + n_new, "expand_dims", x)
    return apply(EXPAND_DIMS, (x,), {"axes": tuple(sorted(axes))}, name=name)


# ---------------------------------------------------------------------------------------------
# broadcast_to (static target) and broadcast_to_like (runtime target)


def broadcast_target(src, target):
    """Output shape of broadcast_to(src -> target). Unknown/named target dims keep src's dim."""
    bad = f"cannot broadcast shape {format_shape(src)} to {format_shape(target)}"
    if len(target) < len(src):
        raise ShapeError(f"{bad}: the target has fewer dims")
    lead = len(target) - len(src)
    for i, t in enumerate(target[:lead]):
        if not isinstance(t, int):
            raise ShapeError(f"{bad}: target dim {i} is {t!r} and the input has no dim there "
                             "to take it from (use ga.broadcast_to_like)")
    out = list(target[:lead])
    for i, (d, t) in enumerate(zip(src, target[lead:])):
        if isinstance(t, int):
            if isinstance(d, int) and d not in (1, t):
                raise ShapeError(f"{bad} (axis {lead + i}: {d} vs {t})")
            out.append(t)
        elif d == 1:
            raise ShapeError(f"{bad}: a size-1 dim cannot grow to the unknown dim {t!r} "
                             "(use ga.broadcast_to_like)")
        else:
            out.append(merge_dims(d, t))
    return tuple(out)


def _broadcast_to_infer(types, attrs):
    x = types[0]
    return (TensorType(broadcast_target(x.shape, attrs["shape"]), x.dtype),)


def _runtime_target(x, node):
    """The concrete target for array x: None/named target dims take x's dim."""
    target = node.attrs["shape"]
    lead = len(target) - x.ndim
    return tuple(t if isinstance(t, int) else x.shape[i - lead] for i, t in enumerate(target))


def _broadcast_to_vjp(node, g):
    if g is None:
        return (None,)
    return (_sum_down(g, node.inputs[0].shape, node.outputs[0].shape),)


def _broadcast_to_lower(ctx, node, x):
    # Expand broadcasts both ways: a 1 in the target keeps the input's (unknown) dim.
    target = [t if isinstance(t, int) else 1 for t in node.attrs["shape"]]
    return (ctx.emit("Expand", [x, ctx.i64(target)]),)


BROADCAST_TO = defop(
    "broadcast_to",
    infer=_broadcast_to_infer,
    reference=lambda node, x: (np.array(np.broadcast_to(x, _runtime_target(x, node))),),
    lower=_broadcast_to_lower,
    vjp=_broadcast_to_vjp,
    jvp=linear_jvp,
    doc="numpy.broadcast_to; None/named target dims keep the input's dim. VJP: sum over the "
        "broadcast axes.",
)


def broadcast_to(x, shape, name=None):
    """x broadcast to `shape` (numpy rules); a None or named target dim keeps x's dim there."""
    x = as_tensor(x)
    return apply(BROADCAST_TO, (x,), {"shape": as_shape(shape)}, name=name)


def _broadcast_to_like_vjp(node, g):
    if g is None:
        return (None, None)
    return (_sum_down(g, node.inputs[0].shape, node.outputs[0].shape), None)


BROADCAST_TO_LIKE = defop(
    "broadcast_to_like",
    shape_only=(1,),  # inputs whose values are not read
    infer=lambda types, attrs: (TensorType(broadcast_shapes(types[0].shape, types[1].shape),
                                           types[0].dtype),),
    reference=lambda node, x, y: (np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape,
                                                                                  y.shape))),),
    lower=lambda ctx, node, x, y: (ctx.emit("Expand", [x, ctx.emit("Shape", [y])]),),
    vjp=_broadcast_to_like_vjp,
    jvp=linear_jvp,
    doc="x broadcast against y's run-time shape (ONNX Expand(x, Shape(y))); y's values are not "
        "read.",
)


def broadcast_to_like(x, y, name=None):
    """x broadcast to the run-time shape of y (the numpy broadcast of both shapes)."""
    x, y = as_tensor(x), as_tensor(y)
    return apply(BROADCAST_TO_LIKE, (x, y), name=name)


# ---------------------------------------------------------------------------------------------
# tile and its transpose tile_sum


def _tile_infer(types, attrs):
    x, reps = types[0], attrs["reps"]
    return (TensorType(tuple(dim_mul(d, r) for d, r in zip(x.shape, reps)), x.dtype),)


def _tile_lower(ctx, node, x):
    if not node.attrs["reps"]:
        return (ctx.emit("Identity", [x]),)
    return (ctx.emit("Tile", [x, ctx.i64(list(node.attrs["reps"]))]),)


def _tile_vjp(node, g):
    if g is None or 0 in node.attrs["reps"]:
        return (None,)  # zero repetitions: the output does not depend on x
    return (apply(TILE_SUM, (g,), {"reps": node.attrs["reps"]}),)


TILE = defop(
    "tile",
    infer=_tile_infer,
    reference=lambda node, x: (np.tile(x, node.attrs["reps"]),),
    lower=_tile_lower,
    vjp=_tile_vjp,
    jvp=linear_jvp,
    doc="numpy.tile with one repetition count per axis; the VJP is tile_sum.",
)


def _tile_sum_infer(types, attrs):
    g, reps = types[0], attrs["reps"]
    out = []
    for d, r in zip(g.shape, reps):
        if isinstance(d, int):
            if r == 0 or d % r:
                raise ShapeError(f"tile_sum: dim {d} of shape {format_shape(g.shape)} is not a "
                                 f"multiple of the repetition count {r}")
            out.append(d // r)
        else:
            out.append(d if r == 1 else None)
    return (TensorType(tuple(out), g.dtype),)


def _tile_sum_reference(node, g):
    reps = node.attrs["reps"]
    split = [v for d, r in zip(g.shape, reps) for v in (r, d // r)]
    summed = np.sum(np.reshape(g, split), axis=tuple(range(0, 2 * len(reps), 2)))
    return (np.asarray(summed, dtype=g.dtype),)


def _tile_sum_lower(ctx, node, g):
    reps = node.attrs["reps"]
    if not reps:
        return (ctx.emit("Identity", [g]),)
    shape = node.inputs[0].shape
    if is_static(shape):
        split = ctx.i64([v for d, r in zip(shape, reps) for v in (r, d // r)])
    else:  # interleave (r_i, D_i / r_i) computed from the run-time shape
        r = ctx.i64(list(reps))
        dims = ctx.emit("Div", [ctx.emit("Shape", [g]), r])
        one = ctx.i64([1])
        pairs = ctx.emit("Concat", [ctx.emit("Unsqueeze", [r, one]),
                                    ctx.emit("Unsqueeze", [dims, one])], axis=1)
        split = ctx.emit("Reshape", [pairs, ctx.i64([-1])])
    blocks = ctx.emit("Reshape", [g, split])
    axes = ctx.i64(list(range(0, 2 * len(reps), 2)))
    return (ctx.emit("ReduceSum", [blocks, axes], keepdims=0),)


def _tile_sum_vjp(node, g):
    if g is None:
        return (None,)
    return (apply(TILE, (g,), {"reps": node.attrs["reps"]}),)


TILE_SUM = defop(
    "tile_sum",
    infer=_tile_sum_infer,
    reference=_tile_sum_reference,
    lower=_tile_sum_lower,
    vjp=_tile_sum_vjp,
    jvp=linear_jvp,
    doc="The transpose of tile: sums the repeated blocks of each axis (reshape to (r, d) pairs "
        "and sum the r axes). Works with run-time shapes.",
)


def tile(x, reps, name=None):
    """numpy.tile: repeat x `reps[i]` times along axis i (reps aligned to the trailing axes)."""
    x = as_tensor(x)
    reps = (reps,) if _is_int(reps) else tuple(reps)
    if not all(_is_int(r) and r >= 0 for r in reps):
        raise shape_error(f"tile: reps {reps} must be non-negative ints (input {describe(x)})")
    reps = tuple(int(r) for r in reps)
    if len(reps) > x.ndim:
        x = expand_dims(x, tuple(range(len(reps) - x.ndim)))
    reps = (1,) * (x.ndim - len(reps)) + reps
    return apply(TILE, (x,), {"reps": reps}, name=name)


def tile_sum(g, reps, name=None):
    """Sum the `reps[i]` repeated blocks of each axis of g (the transpose of tile)."""
    g = as_tensor(g)
    reps = tuple(int(r) for r in reps)
    if len(reps) != g.ndim:
        raise shape_error(f"tile_sum: {len(reps)} reps for {describe(g)}")
    return apply(TILE_SUM, (g,), {"reps": reps}, name=name)


from .shape_join import *  # noqa: E402,F401,F403
from .shape_join import __all__ as _join_all  # noqa: E402

__all__ += _join_all
