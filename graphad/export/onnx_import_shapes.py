"""Shape-op handlers of `import_onnx` (Reshape, Flatten, Transpose, Concat, Squeeze, Unsqueeze,
Gather, Shape, Slice, Expand, ConstantOfShape, Constant) and the symbolic shape vectors (`Sym`)
that let Shape -> Gather -> Concat -> Reshape chains over unknown dims resolve at import."""

import collections
import math

import numpy as np

from .. import ops as O
from ..types import broadcast_shapes
from .onnx_import_ops import handler, ints_of

# ---------------------------------------------------------------------------------------------
# Symbolic shape vectors


class Unknown:
    """An unknown dim of one tensor, as an entry of a shape vector."""

    __slots__ = ("key",)

    def __init__(self, tensor, axis):
        self.key = (id(tensor), axis)

    def __eq__(self, other):
        return isinstance(other, Unknown) and other.key == self.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return "?"


class Sym:
    """A shape vector (1-D, or a scalar entry) whose entries are ints or dim tokens (names or
    Unknown). Only shape ops and Reshape consume it; no graph node ever holds it."""

    __slots__ = ("dims", "scalar")

    def __init__(self, dims, scalar=False):
        self.dims, self.scalar = tuple(dims), scalar

    def __repr__(self):
        text = ", ".join(str(d) for d in self.dims)
        return text if self.scalar else f"({text})"


def shape_value(dims, scalar=False):
    """A constant int64 array when every entry is known, else a Sym."""
    if all(isinstance(d, int) for d in dims):
        arr = np.asarray(dims, dtype=np.int64)
        return arr.reshape(()) if scalar else arr
    return Sym(dims, scalar)


def dim_tokens(t):
    return [d if isinstance(d, (int, str)) else Unknown(t, i) for i, d in enumerate(t.shape)]


def _entries(ctx, i):
    """Input i as a list of shape entries (from a Sym or a constant int vector)."""
    s = ctx.sym(i)
    if s is not None:
        return list(s.dims), s.scalar
    v = ctx.const(i, "a shape")
    return ints_of(ctx, v, f"input {i}"), v.ndim == 0


def resolve_reshape(ctx, x, target, allowzero):
    """graphad's static reshape target for ONNX Reshape (0 copies a dim, one -1 is inferred):
    ints, with at most one -1 standing for the run-time dims, else a clear error."""
    dims = dim_tokens(x)
    entries = []
    for i, e in enumerate(target):
        if isinstance(e, int) and e == 0 and not allowzero:
            if i >= len(dims):
                raise ctx.fail(f"shape {list(target)} copies dim {i} (0) of a rank-{len(dims)} "
                               "input")
            e = dims[i]
        elif isinstance(e, int) and e < -1:
            raise ctx.fail(f"shape {list(target)} has the invalid entry {e}")
        entries.append(e)
    if sum(1 for e in entries if isinstance(e, int) and e == -1) > 1:
        raise ctx.fail(f"shape {list(target)} has more than one -1")
    sym_in = collections.Counter(d for d in dims if not isinstance(d, int))
    sym_out = collections.Counter(e for e in entries if not isinstance(e, int))
    if sym_out - sym_in:
        raise ctx.fail(f"shape {_fmt(entries)} uses run-time dims that are not dims of the input "
                       f"of shape {_fmt(dims)}")
    left = sym_in - sym_out
    known_in = math.prod(d for d in dims if isinstance(d, int))
    known_out = math.prod(e for e in entries if isinstance(e, int) and e != -1)
    if -1 in entries and not left:
        if known_out == 0 or known_in % known_out:
            raise ctx.fail(f"cannot reshape an input of shape {_fmt(dims)} to {_fmt(entries)}")
        entries[entries.index(-1)] = known_in // known_out
    elif -1 not in entries and (left or known_in != known_out):
        raise ctx.fail(f"cannot reshape an input of shape {_fmt(dims)} to {_fmt(entries)}")
    free = [i for i, e in enumerate(entries) if not isinstance(e, int) or e == -1]
    if len(free) > 1:
        raise ctx.fail(f"shape {_fmt(entries)} has {len(free)} dims known only at run time; "
                       "graphad's reshape needs all but one dim static")
    return tuple(-1 if i in free else e for i, e in enumerate(entries))


def _fmt(entries):
    return "(" + ", ".join(str(e) for e in entries) + ")"


# ---------------------------------------------------------------------------------------------
# Shapes


def _axes(ctx, index, input_since, required):
    if ctx.version >= input_since:
        axes = ints_of(ctx, ctx.const(index, "axes"), "axes") if ctx.has(index) else None
    else:
        axes = ctx.attr("axes", "ints", None)
    if axes is None and required:
        raise ctx.fail("axes are required")
    return axes


_SHAPE_VERSIONS = {1, 5, 11, 13, 14, 15, 19, 21, 23, 24, 25}


@handler("Reshape", versions=_SHAPE_VERSIONS)
def _reshape(ctx):
    x = ctx.input(0)
    target, _ = _entries(ctx, 1)
    allowzero = ctx.attr("allowzero", "int", 0) if ctx.version >= 14 else 0
    return [O.reshape(x, resolve_reshape(ctx, x, target, allowzero), name=ctx.out_name)]


@handler("Flatten", versions=_SHAPE_VERSIONS)
def _flatten(ctx):
    x = ctx.input(0)
    axis = ctx.attr("axis", "int", 1)
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        raise ctx.fail(f"axis {axis} is out of range for rank {x.ndim}")
    left, right = x.shape[:axis], x.shape[axis:]
    lk = math.prod(left) if all(isinstance(d, int) for d in left) else None
    rk = math.prod(right) if all(isinstance(d, int) for d in right) else None
    if lk is not None and (rk is not None or lk != 0):
        target = (lk, -1 if rk is None else rk)
    elif rk is not None and rk != 0:
        target = (-1, rk)
    else:
        raise ctx.fail(f"cannot flatten shape {x.shape} at axis {axis}: both sides have dims "
                       "known only at run time")
    return [O.reshape(x, target, name=ctx.out_name)]


@handler("Transpose", versions=_SHAPE_VERSIONS)
def _transpose(ctx):
    return [O.transpose(ctx.input(0), ctx.attr("perm", "ints", None), name=ctx.out_name)]


@handler("Concat", versions={4, 11, 13})
def _concat(ctx):
    axis = ctx.attr("axis", "int")
    if any(ctx.sym(i) is not None for i in range(ctx.n_inputs)):
        if axis not in (0, -1):
            raise ctx.fail("run-time shape vectors concatenate along axis 0 only")
        dims = []
        for i in range(ctx.n_inputs):
            entries, scalar = _entries(ctx, i)
            if scalar:
                raise ctx.fail("Concat of a scalar")
            dims += entries
        return [shape_value(dims)]
    return [O.concat(ctx.inputs(), axis=axis, name=ctx.out_name)]


@handler("Squeeze", versions=_SHAPE_VERSIONS)
def _squeeze(ctx):
    axes = _axes(ctx, 1, 13, required=False)
    s = ctx.sym(0)
    if s is not None:
        if s.scalar or len(s.dims) != 1 or axes not in (None, [0], [-1]):
            raise ctx.fail(f"cannot squeeze the shape vector {s}")
        return [shape_value(s.dims, scalar=True)]
    x = ctx.input(0)
    if axes is None:
        if not all(isinstance(d, int) for d in x.shape):
            raise ctx.fail(f"Squeeze without axes needs a static shape, got {x.shape}")
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    return [O.squeeze(x, tuple(axes), name=ctx.out_name)]


@handler("Unsqueeze", versions=_SHAPE_VERSIONS)
def _unsqueeze(ctx):
    axes = _axes(ctx, 1, 13, required=True)
    s = ctx.sym(0)
    if s is not None:
        if not s.scalar or axes not in ([0], [-1]):
            raise ctx.fail(f"cannot unsqueeze the shape vector {s} at {axes}")
        return [shape_value(s.dims)]
    return [O.expand_dims(ctx.input(0), tuple(axes), name=ctx.out_name)]


@handler("Gather", versions={1, 11, 13})
def _gather(ctx):
    axis = ctx.attr("axis", "int", 0)
    s = ctx.sym(0)
    if s is not None:
        idx = np.asarray(ctx.const(1, "indices"))
        n = len(s.dims)
        if s.scalar or axis not in (0, -1) or idx.ndim > 1 or np.any((idx < -n) | (idx >= n)):
            raise ctx.fail(f"cannot gather {idx.tolist()} from the shape vector {s}")
        picked = [s.dims[int(i)] for i in idx.ravel()]
        return [shape_value(picked, scalar=idx.ndim == 0)]
    idx = ctx.value(1)
    return [O.gather(ctx.input(0), ctx.input(1) if idx is None else idx, axis=axis,
                     name=ctx.out_name)]


@handler("Shape", versions=_SHAPE_VERSIONS)
def _shape(ctx):
    s, v = ctx.sym(0), ctx.value(0)
    if s is not None:
        dims = [] if s.scalar else [len(s.dims)]
    else:
        dims = list(v.shape) if v is not None else dim_tokens(ctx.input(0))
    start = ctx.attr("start", "int", 0) if ctx.version >= 15 else 0
    end = ctx.attr("end", "int", None) if ctx.version >= 15 else None
    return [shape_value(dims[start:end])]


@handler("Slice", versions={11, 13})
def _slice(ctx):
    starts = ints_of(ctx, ctx.const(1, "starts"), "starts")
    ends = ints_of(ctx, ctx.const(2, "ends"), "ends")
    axes = ints_of(ctx, ctx.const(3, "axes"), "axes") if ctx.has(3) else list(range(len(starts)))
    steps = ints_of(ctx, ctx.const(4, "steps"), "steps") if ctx.has(4) else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
        raise ctx.fail(f"starts {starts}, ends {ends}, axes {axes}, steps {steps} do not match "
                       "(or a step is 0)")
    s = ctx.sym(0)
    if s is not None:
        if s.scalar or any(a not in (0, -1) for a in axes):
            raise ctx.fail(f"cannot slice the shape vector {s} along {axes}")
        return [shape_value(s.dims[slice(starts[0], ends[0], steps[0])])]
    x = ctx.input(0)
    index = [slice(None)] * x.ndim
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = ax + x.ndim if ax < 0 else ax
        if not 0 <= ax < x.ndim:
            raise ctx.fail(f"axis {ax} is out of range for rank {x.ndim}")
        d = x.shape[ax]
        if isinstance(d, int):  # ONNX clamps like Python; keep the numbers small for graphad
            st, en = (max(-d - 1, min(v, d + 1)) for v in (st, en))
        index[ax] = slice(st, en, sp)
    return [O.getitem(x, tuple(index), name=ctx.out_name)]


@handler("Expand", versions={8, 13})
def _expand(ctx):
    x = ctx.input(0)
    shape, _ = _entries(ctx, 1)
    if not all(isinstance(d, int) for d in shape):
        raise ctx.fail(f"Expand to the run-time shape {_fmt(shape)} is not supported")
    target = broadcast_shapes(x.shape, tuple(shape))
    return [O.broadcast_to(x, target, name=ctx.out_name)]


@handler("ConstantOfShape", versions={9, 20, 21, 23, 24, 25})
def _constant_of_shape(ctx):
    shape, _ = _entries(ctx, 0)
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ctx.fail(f"the shape {_fmt(shape)} must be static and non-negative")
    value = ctx.attr("value", "tensor", np.zeros(1, dtype=np.float32))
    if value.size != 1:
        raise ctx.fail(f"value must hold one element, got shape {value.shape}")
    return [O.full(tuple(shape), value.ravel()[0].item(), dtype=value.dtype)]


@handler("Constant", versions={1, 9, 11, 12, 13, 19, 21, 23, 24, 25})
def _constant(ctx):
    names = ctx.attr_names()
    if "value" in names:
        return [ctx.attr("value", "tensor")]
    if "value_float" in names:
        return [np.asarray(ctx.attr("value_float", "float"), dtype=np.float32)]
    if "value_floats" in names:
        return [np.asarray(ctx.attr("value_floats", "floats"), dtype=np.float32)]
    if "value_int" in names:
        return [np.asarray(ctx.attr("value_int", "int"), dtype=np.int64)]
    if "value_ints" in names:
        return [np.asarray(ctx.attr("value_ints", "ints"), dtype=np.int64)]
    raise ctx.fail(f"only tensor, float and int values are supported, got attributes "
                   f"{list(names)}")


