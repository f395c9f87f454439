"""Dense Jacobians: jacfwd (a JVP per input basis direction) and jacrev (a VJP per output
element), all directions batched into one JVP/VJP where every op on the path has a batching rule
(graphad/batched.py), else one copy per direction; either way one graph, one onnxruntime run."""

import numpy as np

from . import tree
from .batched import push_batched
from .build import constant
from .errors import ShapeError
from .tracing import (
    Transformed,
    autodiff_engine,
    forward_engine,
    normalize_argnums,
    ops,
    tensor_leaves,
    to_float,
    transformed,
    zeros,
)
from .types import format_shape, is_static, num_elements

__all__ = ["jacfwd", "jacrev"]


def _static_size(t, who, role):
    if not is_static(t.shape):
        raise ShapeError(
            f"{who} needs static shapes to enumerate basis directions, but {role} {t.name!r} has "
            f"shape {format_shape(t.shape)}"
        )
    return num_elements(t.shape)


def _basis(t, k):
    """The k-th standard basis tensor of t's (static) shape and dtype, as a constant."""
    e = np.zeros(num_elements(t.shape), t.dtype.np)
    e[k] = 1
    with t.graph.as_default():
        return constant(e.reshape(t.shape), dtype=t.dtype)


def _assemble(pieces, lead_shape, tail_shape, axis, like):
    """Stack per-direction results along `axis` and reshape to lead_shape + tail_shape."""
    shape = tuple(lead_shape) + tuple(tail_shape)
    if not pieces:
        return zeros(_Shaped(shape, like), like.dtype)
    stacked = pieces[0] if len(pieces) == 1 else ops().stack(pieces, axis=axis)
    if tuple(stacked.shape) == shape:
        return stacked
    return ops().reshape(stacked, shape)


class _Shaped:
    """A stand-in with .shape/.graph for `zeros` (a Jacobian block with no directions)."""

    def __init__(self, shape, like):
        self.shape, self.graph = shape, like.graph


def _prepare(args, argnums, who):
    single, nums = normalize_argnums(argnums, len(args), who)
    args = list(args)
    parts = []
    for i in nums:
        leaves, td = tensor_leaves(args[i], f"{who}: argument {i}")
        leaves = [to_float(t) for t in leaves]  # integer inputs differentiate as floats
        args[i] = tree.unflatten(td, leaves)
        parts.append((leaves, td))
    return single, args, parts


def _call(f, args, kwargs, has_aux, who):
    out = f(*args, **kwargs)
    aux = None
    if has_aux:
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"{who} with has_aux=True needs f to return a pair (out, aux)")
        out, aux = out
    o_leaves, o_td = tensor_leaves(out, f"{who}: output of f")
    return [to_float(o) for o in o_leaves], o_td, aux


def _nest(blocks, o_leaves, o_td, parts, single):
    """Output pytree whose leaves are (per argnum) input pytrees of Jacobian blocks."""
    out = []
    for i in range(len(o_leaves)):
        per_arg, k = [], 0
        for leaves, td in parts:
            per_arg.append(tree.unflatten(td, blocks[i][k:k + len(leaves)]))
            k += len(leaves)
        out.append(per_arg[0] if single else tuple(per_arg))
    return tree.unflatten(o_td, out)


def _fwd_columns(o_leaves, xs, j):
    """Block column j (d outputs / d xs[j]) of every output: one batched JVP pushing all basis
    directions of xs[j] at once, or one JVP per direction when some op has no batching rule."""
    x = xs[j]
    n = _static_size(x, "jacfwd", "input")
    seeded = (lambda seed: forward_engine().jvp(o_leaves, xs, [seed if k == j else None
                                                             for k in range(len(xs))]))
    stacked = push_batched(x, seeded) if n > 0 else None
    if stacked is not None:  # (n,) + o.shape -> o.shape + x.shape
        return [zeros(_Shaped(o.shape + x.shape, o), o.dtype) if s is None
                else _directions_last(s, o, x) for o, s in zip(o_leaves, stacked)]
    cols = [[] for _ in o_leaves]
    for k in range(n):
        tangents = [None] * len(xs)
        tangents[j] = _basis(x, k)
        for i, (o, t) in enumerate(zip(o_leaves, forward_engine().jvp(o_leaves, xs, tangents))):
            cols[i].append(zeros(o, o.dtype) if t is None else t)
    return [_assemble(cols[i], o.shape, x.shape, -1, o) for i, o in enumerate(o_leaves)]


def _directions_last(s, o, x):
    """(n,) + o.shape stacked tangents as the Jacobian block o.shape + x.shape."""
    shape = tuple(o.shape) + tuple(x.shape)
    if o.shape:
        s = ops().reshape(s, (num_elements(x.shape), num_elements(o.shape)))
        s = ops().transpose(s, (1, 0))
    return ops().reshape(s, shape) if tuple(s.shape) != shape else s


def _rev_rows(o, xs):
    """Block row of output o (d o / d every x): one batched VJP pushing all basis cotangents of
    o at once, or one VJP per element when some op has no batching rule."""
    n = _static_size(o, "jacrev", "output")
    stacked = push_batched(o, lambda seed: autodiff_engine().vjp([o], xs, [seed])) if n else None
    if stacked is not None:  # (n,) + x.shape -> o.shape + x.shape
        return [zeros(_Shaped(o.shape + x.shape, x), x.dtype) if s is None
                else ops().reshape(s, tuple(o.shape) + tuple(x.shape)) for x, s in zip(xs, stacked)]
    rows = [[] for _ in xs]
    for k in range(n):
        for j, (x, g) in enumerate(zip(xs, autodiff_engine().vjp([o], xs, [_basis(o, k)]))):
            rows[j].append(zeros(x, x.dtype) if g is None else g)
    return [_assemble(rows[j], o.shape, x.shape, 0, x) for j, x in enumerate(xs)]


def _jacfwd_fn(f, argnums, has_aux):
    def run(*args, **kwargs):
        single, args, parts = _prepare(args, argnums, "jacfwd")
        o_leaves, o_td, aux = _call(f, args, kwargs, has_aux, "jacfwd")
        xs = [t for leaves, _ in parts for t in leaves]
        columns = [_fwd_columns(o_leaves, xs, j) for j in range(len(xs))]
        blocks = [[columns[j][i] for j in range(len(xs))] for i in range(len(o_leaves))]
        jac = _nest(blocks, o_leaves, o_td, parts, single)
        return (jac, aux) if has_aux else jac

    return run


def _jacrev_fn(f, argnums, has_aux):
    def run(*args, **kwargs):
        single, args, parts = _prepare(args, argnums, "jacrev")
        o_leaves, o_td, aux = _call(f, args, kwargs, has_aux, "jacrev")
        xs = [t for leaves, _ in parts for t in leaves]
        blocks = [_rev_rows(o, xs) for o in o_leaves]
        jac = _nest(blocks, o_leaves, o_td, parts, single)
        return (jac, aux) if has_aux else jac

    return run


def _key(argnums):
    return argnums if isinstance(argnums, int) else tuple(argnums)


def jacfwd(f, argnums=0, has_aux=False, sparsity=None):
    """Jacobian by forward mode, shape out.shape + in.shape: one JVP per input element.

    With `sparsity` ("auto" or a pattern): one JVP per color of the pattern's column coloring,
    returning a 2-D sparse matrix (out.size, in.size); see graphad/sparse.py.
    """
    if sparsity is not None:
        from .sparse import sparse_jacobian  # noqa: PLC0415  (sparse builds on this module)

        return sparse_jacobian(f, argnums, has_aux, sparsity, "fwd")
    name = f"jacfwd({getattr(f, '__name__', 'f')})"
    return transformed(("jacfwd", f, _key(argnums), has_aux),
                       lambda: Transformed(_jacfwd_fn(f, argnums, has_aux), name=name, wrapped=f))


def jacrev(f, argnums=0, has_aux=False, sparsity=None):
    """Jacobian by reverse mode, shape out.shape + in.shape: one VJP per output element.

    With `sparsity` ("auto" or a pattern): one VJP per color of the pattern's row coloring,
    returning a 2-D sparse matrix (out.size, in.size); see graphad/sparse.py.
    """
    if sparsity is not None:
        from .sparse import sparse_jacobian  # noqa: PLC0415  (sparse builds on this module)

        return sparse_jacobian(f, argnums, has_aux, sparsity, "rev")
    name = f"jacrev({getattr(f, '__name__', 'f')})"
    return transformed(("jacrev", f, _key(argnums), has_aux),
                       lambda: Transformed(_jacrev_fn(f, argnums, has_aux), name=name, wrapped=f))
