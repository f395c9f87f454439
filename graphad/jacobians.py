"""Dense Jacobians: jacfwd (one JVP per input basis direction) and jacrev (one VJP per output
element), every direction in one graph so a concrete call is a single onnxruntime run."""

import numpy as np

from . import tree
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


def _jacfwd_fn(f, argnums, has_aux):
    def run(*args, **kwargs):
        single, args, parts = _prepare(args, argnums, "jacfwd")
        o_leaves, o_td, aux = _call(f, args, kwargs, has_aux, "jacfwd")
        xs = [t for leaves, _ in parts for t in leaves]
        cols = [[[] for _ in xs] for _ in o_leaves]  # cols[out][in] = one tangent per direction
        for j, x in enumerate(xs):
            for k in range(_static_size(x, "jacfwd", "input")):
                tangents = [None] * len(xs)
                tangents[j] = _basis(x, k)
                touts = forward_engine().jvp(o_leaves, xs, tangents)
                for i, (o, t) in enumerate(zip(o_leaves, touts)):
                    cols[i][j].append(zeros(o, o.dtype) if t is None else t)
        blocks = [[_assemble(cols[i][j], o.shape, x.shape, -1, o) for j, x in enumerate(xs)]
                  for i, o in enumerate(o_leaves)]
        jac = _nest(blocks, o_leaves, o_td, parts, single)
        return (jac, aux) if has_aux else jac

    return run


def _jacrev_fn(f, argnums, has_aux):
    def run(*args, **kwargs):
        single, args, parts = _prepare(args, argnums, "jacrev")
        o_leaves, o_td, aux = _call(f, args, kwargs, has_aux, "jacrev")
        xs = [t for leaves, _ in parts for t in leaves]
        rows = [[[] for _ in xs] for _ in o_leaves]  # rows[out][in] = one cotangent per element
        for i, o in enumerate(o_leaves):
            for k in range(_static_size(o, "jacrev", "output")):
                grads = autodiff_engine().vjp([o], xs, [_basis(o, k)])
                for j, (x, g) in enumerate(zip(xs, grads)):
                    rows[i][j].append(zeros(x, x.dtype) if g is None else g)
        blocks = [[_assemble(rows[i][j], o.shape, x.shape, 0, x) for j, x in enumerate(xs)]
                  for i, o in enumerate(o_leaves)]
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
