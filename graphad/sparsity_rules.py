"""Per-op dependency rules for sparsity detection: how each output element's index set comes from
the inputs' (first order) and which input sets interact nonlinearly (second order).

A rule is `rule(node, ctx) -> Local`. `Local.outs[k]` lists `(input, steps)`: output k's sets
are the union over its entries of `steps` (gathers/reductions, see sparse_rows.py) applied to the
input's sets. `Local.inter` lists `(k, (i, steps_i), (j, steps_j), adj_steps)`: for every
"virtual element" e (the space `steps_i`/`steps_j` map into) that reaches an output element of
output k with a nonzero adjoint (`adj_steps` maps output k's adjoint into that space), the
Hessian pattern gains set_i[e] x set_j[e].

An op's own rule may live with it as `opdef.extra["sparsity"]` (same signature); it wins over the
table below. Ops with neither are treated densely (every output element depends on every input
element, all pairs interact): a correct superset. Ops that are NOT_DIFFERENTIABLE, and integer
or bool outputs, carry no dependence. Ops covered by the table:

- elementwise, linear: add subtract negative add_n cast remat_barrier (stop_gradient: none);
  piecewise linear (first order only): abs relu maximum minimum clip where(x, y);
  nonlinear: sqrt rsqrt exp expm1 log log1p sin cos tan tanh arctan sinh cosh sigmoid
  softplus erf square reciprocal, multiply (cross terms), divide, power
- reductions: sum mean max min (linear / piecewise), prod logsumexp (all pairs in a group;
  for prod a superset: its second derivative in one factor is zero),
  unreduce sum_to_like tile_sum scatter_add (sums), softmax log_softmax (full along the axes)
- moves (exact, computed by running the op's numpy reference on element labels): transpose
  reshape reshape_like squeeze expand_dims broadcast_to broadcast_to_like tile slice
  scatter_slice pad concat stack split split_like gather (constant indices; data-dependent
  indices: dense along the gathered axis)
- matmul (exact; second order per (i, k, j) product while that space stays small)
- custom_jvp_call custom_vjp_call checkpoint_call: the function's own nodes (identity; a
  custom rule is assumed to differentiate its function), guard (its values)
- dense (conservative): inv solve det, implicit (fixed_point / root), and any op without a rule
  (e.g. convolutions, fused ops of the optimiser)
- loop / cond: handled by the engine (sparsity.py) from their bodies: a loop with a constant
  trip count (at most sparsity.UNROLL_LIMIT) and no condition is followed iteration by
  iteration (exact); a while loop or a longer loop iterates its body's dependency map to a
  fixpoint (the union over every trip count: a superset); cond takes the union of its branches.

The pattern is global (valid for any input values), so piecewise ops keep both sides; constants
are used: a constant zero factor (multiply, matmul) or a constant where-mask drops elements.
"""

import types as _pytypes

import numpy as np

from .errors import ShapeError
from .registry import NOT_DIFFERENTIABLE
from .sparse_rows import gather, reduce
from .types import float64, format_shape, is_static, num_elements

__all__ = ["Local", "rule_for", "size_of", "dense_rule", "RULES"]

# matmul's exact second-order rule walks batch * m * k * n products; above this, per output
# element pairs of (row of a) x (column of b) are used instead (a superset).
MATMUL_EXACT_LIMIT = 4_000_000


class Local:
    """The dependency structure of one node (see the module docstring)."""

    __slots__ = ("outs", "inter")

    def __init__(self, outs, inter=()):
        self.outs = outs
        self.inter = list(inter)


def size_of(t):
    if not is_static(t.shape):
        raise ShapeError(f"sparsity detection needs static shapes, but tensor {t.name!r} has "
                         f"shape {format_shape(t.shape)}")
    return num_elements(t.shape)


def _arange(shape):
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def _identity_or(src, nin):
    """[] (identity) when `src` is 0..nin-1 in order, else one gather step."""
    if len(src) == nin and np.array_equal(src, np.arange(nin)):
        return []
    return [gather(src, nin)]


def _bcast_src(t, out_shape):
    return np.broadcast_to(_arange(t.shape), out_shape).ravel()


def _bcast_steps(t, out_shape, keep=None):
    """Steps taking t's sets to out_shape by numpy broadcasting; `keep` (a bool array of
    out_shape) drops the elements where it is False."""
    if keep is None and tuple(t.shape) == tuple(out_shape):
        return []
    src = _bcast_src(t, out_shape)
    if keep is not None:
        src = np.where(np.broadcast_to(keep, out_shape).ravel(), src, -1)
    return _identity_or(src, size_of(t))


# ---------------------------------------------------------------------------------------------
# Elementwise


def elementwise(inputs=None, pairs=(), masks=None):
    """Rule for broadcasting elementwise ops: `inputs` carry derivatives (None: all), `pairs`
    (i, j) interact nonlinearly; `masks(node, ctx) -> {i: bool array or None}` drops elements
    whose derivative is structurally zero (a constant zero factor, a constant where-mask)."""

    def rule(node, ctx):
        out = node.outputs[0].shape
        idx = range(len(node.inputs)) if inputs is None else inputs
        keep = masks(node, ctx) if masks is not None else {}
        terms = {i: (i, _bcast_steps(node.inputs[i], out, keep.get(i))) for i in idx}
        inter = [(0, terms[i], terms[j], []) for i, j in pairs if i in terms and j in terms]
        return Local([list(terms.values())], inter)

    return rule


def _multiply_masks(node, ctx):
    """d(x*c)/dx is zero where the constant factor c is zero."""
    keep = {}
    for i, j in ((0, 1), (1, 0)):
        c = ctx.const_value(node.inputs[j])
        if c is not None and not np.all(c != 0):
            keep[i] = c != 0
    return keep


def _where_masks(node, ctx):
    """A constant condition routes each element from one side only."""
    c = ctx.const_value(node.inputs[0])
    return {} if c is None else {1: c.astype(bool), 2: ~c.astype(bool)}


def _power(node, ctx):
    y = ctx.const_value(node.inputs[1])
    pairs = [(0, 1), (1, 1)]
    if y is None or not np.all(y == 1):  # x ** 1 is linear in x
        pairs.append((0, 0))
    return elementwise(pairs=pairs)(node, ctx)


def _clip(node, ctx):
    return elementwise()(node, ctx)


# ---------------------------------------------------------------------------------------------
# Reductions and group ops


def _keep_shape(shape, axes):
    return tuple(1 if a in axes else d for a, d in enumerate(shape))


def _group_dst(shape, axes):
    """(dst, ngroups): the group (reduced element) of every element of `shape`."""
    keep = _keep_shape(shape, axes)
    return np.broadcast_to(_arange(keep), shape).ravel(), int(np.prod(keep, dtype=np.int64))


def reduction(nonlinear=False):
    def rule(node, ctx):
        x = node.inputs[0]
        dst, g = _group_dst(x.shape, set(node.attrs["axes"]))
        term = (0, [reduce(dst, g)])
        return Local([[term]], [(0, term, term, [])] if nonlinear else [])

    return rule


def _group_op(node, ctx):
    """softmax / log_softmax: every output element depends on its whole group along the axes."""
    x = node.inputs[0]
    dst, g = _group_dst(x.shape, set(node.attrs["axes"]))
    group = (0, [reduce(dst, g)])
    return Local([[(0, [reduce(dst, g), gather(dst, g)])]], [(0, group, group, [reduce(dst, g)])])


def _unreduce(node, ctx):
    g, like = node.inputs
    keep = _keep_shape(like.shape, set(node.attrs["axes"]))
    src = np.broadcast_to(_arange(keep), like.shape).ravel()
    return Local([[(0, _identity_or(src, size_of(g)))]])


def _sum_to_like(node, ctx):
    g, x = node.inputs
    gs, xs = tuple(g.shape), tuple(x.shape)
    al = gs[len(gs) - len(xs):] if len(gs) >= len(xs) else (1,) * (len(xs) - len(gs)) + gs
    r = tuple(1 if (xd == 1 and gd != 1) else gd for gd, xd in zip(al, xs))
    nr = int(np.prod(r, dtype=np.int64))
    dst = np.broadcast_to(_arange(r), al)
    dst = np.broadcast_to(dst, gs) if len(gs) >= len(xs) else dst
    src = np.broadcast_to(_arange(r), xs).ravel()
    return Local([[(0, [reduce(dst.ravel(), nr), gather(src, nr)])]])


def _tile_sum(node, ctx):
    out = node.outputs[0]
    dst = np.tile(_arange(out.shape), node.attrs["reps"]).ravel()
    return Local([[(0, [reduce(dst, size_of(out))])]])


def _axis_groups(shape, axis, mid_ndim):
    """Group ids of (pre, post) positions, laid out as pre + (1,) * mid_ndim + post."""
    pre, post = tuple(shape[:axis]), tuple(shape[axis + 1:])
    ids = _arange(pre + post).reshape(pre + (1,) * mid_ndim + post)
    return ids, int(ids.size)


def _scatter_add(node, ctx):
    g, idx, like = node.inputs
    axis = node.attrs["axis"]
    iv = ctx.const_value(idx)
    if iv is not None:
        dst = np.take(_arange(like.shape), iv.astype(np.int64), axis=axis).ravel()
        return Local([[(0, [reduce(dst, size_of(like))])]])
    ids, n = _axis_groups(like.shape, axis, idx.ndim)  # unknown indices: any row of the axis
    dst = np.broadcast_to(ids, g.shape).ravel()
    src = np.broadcast_to(_axis_groups(like.shape, axis, 1)[0], like.shape).ravel()
    return Local([[(0, [reduce(dst, n), gather(src, n)])]])


# ---------------------------------------------------------------------------------------------
# Moves: run the op's own numpy reference on element labels


def _shim(node, **attrs):
    """A stand-in node whose outputs are float64 (labels stay exact) with some attrs replaced."""
    outs = [_pytypes.SimpleNamespace(dtype=float64, shape=o.shape, type=o.type, index=o.index)
            for o in node.outputs]
    return _pytypes.SimpleNamespace(op=node.op, opdef=node.opdef, attrs={**node.attrs, **attrs},
                                    inputs=node.inputs, outputs=outs, name=node.name)


def moves(data=(0,), values=(), **attrs):
    """Rule for ops that only move elements: inputs `data` are labelled 1.. (0 = no source),
    inputs `values` need their constant value (else the rule declines), others are zeros."""

    def rule(node, ctx):
        arrays, spans, off = [], {}, 0
        for i, t in enumerate(node.inputs):
            if data == "all" or i in data:
                n = size_of(t)
                arrays.append((np.arange(n, dtype=np.float64) + off + 1).reshape(t.shape))
                spans[i] = (off, n)
                off += n
            elif i in values:
                v = ctx.const_value(t)
                if v is None:
                    return None
                arrays.append(v)
            else:
                arrays.append(np.zeros(tuple(t.shape)))
        outs = node.opdef.reference(_shim(node, **attrs), *arrays)
        result = []
        for o in outs:
            lab = np.rint(np.asarray(o, np.float64)).astype(np.int64).ravel() - 1
            terms = []
            for i, (start, n) in spans.items():
                inside = (lab >= start) & (lab < start + n)
                if inside.any():
                    terms.append((i, _identity_or(np.where(inside, lab - start, -1), n)))
            result.append(terms)
        return Local(result)

    return rule


def _gather(node, ctx):
    local = moves(data=(0,), values=(1,))(node, ctx)
    if local is not None:
        return local
    x, idx = node.inputs  # data-dependent indices: dense along the gathered axis
    axis = node.attrs["axis"]
    ids, n = _axis_groups(x.shape, axis, 1)
    dst = np.broadcast_to(ids, x.shape).ravel()
    src = np.broadcast_to(_axis_groups(x.shape, axis, idx.ndim)[0], node.outputs[0].shape)
    return Local([[(0, [reduce(dst, n), gather(src.ravel(), n)])]])


# ---------------------------------------------------------------------------------------------
# matmul


def _matmul(node, ctx):
    """C[b,i,j] = sum_k A[b,i,k] B[b,k,j]. First order: row i of A and column j of B, or, when
    an operand is a constant with zeros, exactly the products with a nonzero constant factor.
    Second order: A[b,i,k] x B[b,k,j] per product (row x column beyond MATMUL_EXACT_LIMIT)."""
    a, b = node.inputs
    sa, sb = tuple(a.shape), tuple(b.shape)
    a2 = sa if len(sa) > 1 else (1,) + sa
    b2 = sb if len(sb) > 1 else sb + (1,)
    batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
    (m, k), n = a2[-2:], b2[-1]
    out = batch + (m, n)
    na, nb, nout = size_of(a), size_of(b), size_of(node.outputs[0])
    full = batch + (m, k, n)
    if int(np.prod(full, dtype=np.int64)) > MATMUL_EXACT_LIMIT:
        ta, tb = _matmul_factored(a2, b2, out)
        return Local([[ta, tb]], [(0, ta, tb, [])])
    la = np.broadcast_to(_arange(a2)[..., None], full).ravel()
    lb = np.broadcast_to(_arange(b2)[..., None, :, :], full).ravel()
    lo = np.broadcast_to(_arange(out)[..., None, :], full).ravel()
    keep = np.ones(len(la), bool)
    for t, shape, idx, expand in ((a, a2, la, (..., None)), (b, b2, lb, (..., None, slice(None),
                                                                         slice(None)))):
        c = ctx.const_value(t)
        if c is not None:
            keep &= np.broadcast_to(np.reshape(c != 0, shape)[expand], full).ravel()
    if keep.all():
        ta, tb = _matmul_factored(a2, b2, out)
    else:
        ta = (0, [gather(la[keep], na), reduce(lo[keep], nout)])
        tb = (1, [gather(lb[keep], nb), reduce(lo[keep], nout)])
    inter = [(0, (0, [gather(la, na)]), (1, [gather(lb, nb)]), [gather(lo, nout)])]
    return Local([[ta, tb]], inter)


def _matmul_factored(a2, b2, out):
    """First-order terms: A's rows reduce over k, then spread over j (B's columns likewise)."""
    ga = _arange(a2[:-2] + (a2[-2], 1))
    gb = _arange(b2[:-2] + (1, b2[-1]))
    ta = (0, [reduce(np.broadcast_to(ga, a2).ravel(), ga.size),
              gather(np.broadcast_to(ga, out).ravel(), ga.size)])
    tb = (1, [reduce(np.broadcast_to(gb, b2).ravel(), gb.size),
              gather(np.broadcast_to(gb, out).ravel(), gb.size)])
    return ta, tb


# ---------------------------------------------------------------------------------------------
# Identity-like and dense


def _outs_identity(node, ctx):
    """custom_*_call / checkpoint_call: inputs (args..., outs..., extra...), outputs = outs."""
    n = node.attrs["n_args"]
    return Local([[(n + k, [])] for k in range(len(node.outputs))])


def _guard(node, ctx):
    """guard: inputs (failed, values...), outputs = values."""
    return Local([[(k + 1, [])] for k in range(len(node.outputs))])


def _none(node, ctx):
    return Local([[] for _ in node.outputs])


def dense_rule(node, ctx=None):
    """Every output element depends on every element of every input; all pairs interact."""
    ins = [i for i, t in enumerate(node.inputs) if t.dtype.is_floating]
    to_one = {i: [reduce(np.zeros(size_of(node.inputs[i]), np.int64), 1)] for i in ins}
    outs, inter = [], []
    for k, o in enumerate(node.outputs):
        nout = size_of(o)
        outs.append([(i, to_one[i] + [gather(np.zeros(nout, np.int64), 1)]) for i in ins])
        adj = [reduce(np.zeros(nout, np.int64), 1)]
        inter += [(k, (i, to_one[i]), (j, to_one[j]), adj) for i in ins for j in ins if i <= j]
    return Local(outs, inter)


_LINEAR = ("add", "subtract", "negative", "add_n", "cast", "remat_barrier")
_PIECEWISE = ("abs", "relu", "maximum", "minimum")
_NONLINEAR_UNARY = ("sqrt", "rsqrt", "exp", "expm1", "log", "log1p", "sin", "cos", "tan", "tanh",
                    "arctan", "sinh", "cosh", "sigmoid", "softplus", "erf", "square",
                    "reciprocal")

RULES = {name: elementwise() for name in _LINEAR + _PIECEWISE}
RULES.update({name: elementwise(pairs=[(0, 0)]) for name in _NONLINEAR_UNARY})
RULES.update({
    "stop_gradient": _none,
    "multiply": elementwise(pairs=[(0, 1)], masks=_multiply_masks),
    "divide": elementwise(pairs=[(0, 1), (1, 1)]),
    "power": _power,
    "clip": _clip,
    "where": elementwise(inputs=(1, 2), masks=_where_masks),
    "sum": reduction(),
    "mean": reduction(),
    "max": reduction(),
    "min": reduction(),
    "prod": reduction(nonlinear=True),
    "logsumexp": reduction(nonlinear=True),
    "softmax": _group_op,
    "log_softmax": _group_op,
    "unreduce": _unreduce,
    "sum_to_like": _sum_to_like,
    "tile_sum": _tile_sum,
    "scatter_add": _scatter_add,
    "transpose": moves(),
    "reshape": moves(),
    "reshape_like": moves(),
    "squeeze": moves(),
    "expand_dims": moves(),
    "broadcast_to": moves(),
    "broadcast_to_like": moves(),
    "tile": moves(),
    "slice": moves(),
    "scatter_slice": moves(),
    "pad": moves(value=0),
    "concat": moves(data="all"),
    "stack": moves(data="all"),
    "split": moves(),
    "split_like": moves(),
    "gather": _gather,
    "matmul": _matmul,
    "custom_jvp_call": _outs_identity,
    "custom_vjp_call": _outs_identity,
    "checkpoint_call": _outs_identity,
    "guard": _guard,
    "inv": dense_rule,
    "solve": dense_rule,
    "det": dense_rule,
})


def rule_for(node):
    """The rule of `node`'s op: its OpDef's extra["sparsity"], else the table, else dense."""
    opdef = node.opdef
    own = opdef.extra.get("sparsity") if opdef is not None else None
    if own is not None:
        return own
    if node.op in RULES:
        return RULES[node.op]
    if opdef is not None and opdef.vjp is NOT_DIFFERENTIABLE:
        return _none  # derivative zero everywhere (comparisons, floor, argmax, ...)
    return dense_rule
