"""Sparse derivatives: sparsity patterns read off the graph (`jacobian_sparsity`,
`hessian_sparsity`), colorings, and compressed Jacobians/Hessians: one JVP/VJP/HVP per color,
all in one graph, decompressed by a gather into the nonzeros of a CSR matrix.

Sparse results are always 2-D, (out.size, in.size): outputs (rows) and differentiated inputs
(columns) are flattened in order and laid side by side, whatever the pytrees are.
"""

import numpy as np

from .batched import push_directions
from .build import constant
from .coloring import Coloring, as_rows, coloring
from .graph import Tensor
from .jacobians import _call, _key, _prepare
from .sparsity import analyze
from .sparsity_rules import size_of
from .tracing import (
    Transformed,
    autodiff_engine,
    forward_engine,
    ops,
    transformed,
)
from .types import as_dtype

__all__ = [
    "jacobian_sparsity",
    "hessian_sparsity",
    "coloring",
    "Coloring",
    "SparseMatrix",
    "SparseTensor",
    "sparse_jacobian",
]


def _scipy_sparse():
    try:
        import scipy.sparse as sp  # noqa: PLC0415  (optional)
    except ImportError:
        return None
    return sp


def _as_pattern(rows, dense=False):
    sp = _scipy_sparse()
    if sp is None or dense:
        return rows.to_dense()
    return rows.to_scipy()


# ---------------------------------------------------------------------------------------------
# Detection


def _detect(f, args, argnums, has_aux, who, second_order):
    """Trace f once (placeholders for the arguments) and analyse the traced graph."""
    from .transforms import scalar_output, split_aux  # noqa: PLC0415  (transforms imports us)

    box = {}

    def traced_fn(*a, **kw):
        _, a, parts = _prepare(a, argnums, who)
        xs = [t for leaves, _ in parts for t in leaves]
        if second_order:
            y, _ = split_aux(f(*a, **kw), has_aux, who)
            ys = [scalar_output(y, who)]
        else:
            ys, _, _ = _call(f, a, kw, has_aux, who)
        box["result"] = analyze(xs, ys, second_order)
        return ys

    Transformed(traced_fn, name=who, wrapped=f).trace(*args)
    return box["result"]


def jacobian_sparsity(f, *example_args, argnums=0, has_aux=False, dense=False):
    """The boolean sparsity pattern of f's Jacobian, read off the traced graph (no derivative
    is evaluated): shape (out.size, in.size), outputs and the `argnums` inputs flattened and
    concatenated. A `scipy.sparse` CSR matrix when scipy is installed (or `dense=True`: a numpy
    bool array). `example_args` fix shapes and dtypes only (values, or TensorTypes).

    The pattern is global (valid for every input value): it is exact for elementwise, structural,
    reduction, matmul and unrolled-loop code, and a documented superset for data-dependent
    loops (fixpoint), data-dependent gathers (dense along the axis) and ops without a rule
    (dense); see graphad/sparsity_rules.py.
    """
    jac, _ = _detect(f, example_args, argnums, has_aux, "jacobian_sparsity", False)
    return _as_pattern(jac, dense)


def hessian_sparsity(f, *example_args, argnums=0, has_aux=False, dense=False):
    """The symmetric boolean sparsity pattern of the Hessian of scalar f, (in.size, in.size):
    index pairs that meet in a nonlinear op on a path to the output (see jacobian_sparsity)."""
    _, hess = _detect(f, example_args, argnums, has_aux, "hessian_sparsity", True)
    return _as_pattern(hess, dense)


# ---------------------------------------------------------------------------------------------
# Results


class SparseMatrix:
    """CSR result used when scipy is not installed: `.data`, `.indices`, `.indptr`, `.shape`,
    `.nnz`, `.ncolors`, `.toarray()`."""

    def __init__(self, data, indices, indptr, shape, ncolors=None):
        self.data, self.indices, self.indptr = data, indices, indptr
        self.shape = tuple(shape)
        self.ncolors = ncolors

    @property
    def nnz(self):
        return len(self.data)

    def toarray(self):
        out = np.zeros(self.shape, self.data.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out

    todense = toarray

    def __repr__(self):
        return f"<SparseMatrix {self.shape[0]}x{self.shape[1]} nnz={self.nnz}>"


class _Structure:
    """What a compressed evaluation knows statically: the pattern (CSR) and its coloring."""

    def __init__(self, pattern, col):
        small = max(pattern.nnz, pattern.ncols) < 2**31  # scipy's own index dtype: no recast
        dt = np.int32 if small else np.int64
        self.indptr, self.indices = pattern.indptr.astype(dt), pattern.indices.astype(dt)
        self.shape = (pattern.nrows, pattern.ncols)
        self.coloring = col
        self.ncolors = col.ncolors

    def build(self, values):
        values = np.asarray(values)
        sp = _scipy_sparse()
        if sp is None:
            return SparseMatrix(values, self.indices.copy(), self.indptr.copy(), self.shape,
                                self.ncolors)
        m = sp.csr_matrix((values, self.indices.copy(), self.indptr.copy()), shape=self.shape)
        m.ncolors = self.ncolors  # how many JVPs/VJPs/HVPs filled it
        return m


class SparseTensor:
    """A sparse Jacobian inside a graph: `.values` (Tensor of the nonzeros, CSR order),
    `.indices`, `.indptr`, `.shape`, `.nnz`, `.ncolors`; `.todense()` -> a dense 2-D Tensor."""

    def __init__(self, values, structure):
        self.values = values
        self.indices, self.indptr = structure.indices, structure.indptr
        self.shape, self.ncolors = structure.shape, structure.ncolors

    @property
    def nnz(self):
        return len(self.indices)

    def todense(self):
        m, n = self.shape
        where = np.full(m * n, self.nnz, np.int64)
        rows = np.repeat(np.arange(m), np.diff(self.indptr))
        where[rows * n + self.indices] = np.arange(self.nnz)
        o = ops()
        zero = o.zeros((1,), dtype=self.values.dtype)
        return o.reshape(o.gather(o.concat([self.values, zero], 0), where), (m, n))

    def __repr__(self):
        return f"<SparseTensor {self.shape[0]}x{self.shape[1]} nnz={self.nnz} of {self.values!r}>"


# ---------------------------------------------------------------------------------------------
# Compressed evaluation


def _flat_concat(pieces, dtype):
    o = ops()
    flat = [o.reshape(p if p.dtype is dtype else o.cast(p, dtype), (-1,)) for p in pieces]
    return flat[0] if len(flat) == 1 else o.concat(flat, 0)


def _seed(t, colors, off, c):
    """0/1 constant shaped like t: the elements (off..) of t whose color is c; None if none."""
    n = size_of(t)
    mask = colors[off:off + n] == c
    if not mask.any():
        return None
    with t.graph.as_default():
        return constant(mask.astype(t.dtype.np).reshape(t.shape), dtype=t.dtype)


def _zeros_like_size(t, dtype):
    return ops().zeros(t.shape, dtype=dtype)


def _decompress(rows, col, dtype, like):
    """Stack the per-color rows into B (ncolors, len) (or take B as it is, a matrix) and gather
    the nonzeros (CSR order)."""
    o = ops()
    c, r = col.positions()
    if not len(c):
        with like.graph.as_default():
            return constant(np.zeros(0, dtype.np), dtype=dtype)
    if isinstance(rows, Tensor):  # B already: one batched JVP/VJP/HVP for all colors
        width, b = rows.shape[1], o.reshape(rows, (-1,))
    else:
        width = rows[0].shape[0]
        b = rows[0] if len(rows) == 1 else o.reshape(o.stack(rows, 0), (-1,))
    return o.gather(b, c * width + r)


def _color_directions(ts, col):
    """Per tensor, the 0/1 seeds of every color stacked: constants of shape (ncolors,) + t.shape."""
    out, off = [], 0
    for t in ts:
        n = size_of(t)
        mask = col.colors[off:off + n][None, :] == np.arange(col.ncolors)[:, None]
        with t.graph.as_default():
            out.append(constant(mask.astype(t.dtype.np).reshape((col.ncolors,) + tuple(t.shape)),
                                dtype=t.dtype))
        off += n
    return out


def _batched_matrix(likes, call, targets, col, dtype):
    """B (ncolors, len) from one batched JVP/VJP/HVP seeded by every color at once (None when an
    op on the path has no batching rule): row c holds the results for color c side by side."""
    got = push_directions(likes, _color_directions(likes, col), call)
    if got is None:
        return None
    o, k = ops(), col.ncolors
    parts = []
    for t, b in zip(targets, got):
        if b is None:
            parts.append(o.zeros((k, size_of(t)), dtype=dtype))
        else:
            b = b if b.dtype is dtype else o.cast(b, dtype)
            parts.append(o.reshape(b, (k, size_of(t))))
    return parts[0] if len(parts) == 1 else o.concat(parts, 1)


def _result_dtype(tensors):
    return as_dtype(np.result_type(*[t.dtype.np for t in tensors]))


def _check_pattern(given, shape, who):
    if given is not None and (given.nrows, given.ncols) != shape:
        raise ValueError(f"{who}: the sparsity pattern has shape {(given.nrows, given.ncols)} but "
                         f"the Jacobian is {shape} (out.size, in.size)")


def _fwd_rows(o_leaves, xs, col, dtype):
    batched = _batched_matrix(xs, lambda seeds: forward_engine().jvp(o_leaves, xs, seeds),
                              o_leaves, col, dtype)
    if batched is not None:
        return batched
    rows = []
    for c in range(col.ncolors):
        tangents, off = [], 0
        for x in xs:
            tangents.append(_seed(x, col.colors, off, c))
            off += size_of(x)
        touts = forward_engine().jvp(o_leaves, xs, tangents)
        rows.append(_flat_concat([_zeros_like_size(o, dtype) if t is None else t
                                  for o, t in zip(o_leaves, touts)], dtype))
    return rows


def _rev_rows(o_leaves, xs, col, dtype):
    batched = _batched_matrix(o_leaves, lambda seeds: autodiff_engine().vjp(o_leaves, xs, seeds),
                              xs, col, dtype)
    if batched is not None:
        return batched
    rows = []
    for c in range(col.ncolors):
        ys, cts, off = [], [], 0
        for o in o_leaves:
            s = _seed(o, col.colors, off, c)
            off += size_of(o)
            if s is not None:
                ys.append(o)
                cts.append(s)
        grads = autodiff_engine().vjp(ys, xs, cts)
        rows.append(_flat_concat([_zeros_like_size(x, dtype) if g is None else g
                                  for x, g in zip(xs, grads)], dtype))
    return rows


def _jacobian_run(f, argnums, has_aux, given, mode):
    who = "jacfwd" if mode == "fwd" else "jacrev"

    def run(*args, **kwargs):
        _, args, parts = _prepare(args, argnums, who)
        o_leaves, _, aux = _call(f, args, kwargs, has_aux, who)
        xs = [t for leaves, _ in parts for t in leaves]
        shape = (sum(size_of(o) for o in o_leaves), sum(size_of(x) for x in xs))
        _check_pattern(given, shape, who)
        pattern = given if given is not None else analyze(xs, o_leaves)[0]
        col = coloring(pattern, "column" if mode == "fwd" else "row")
        dtype = _result_dtype(o_leaves + xs)  # no precision is lost to a narrower side
        rows_fn = _fwd_rows if mode == "fwd" else _rev_rows
        values = _decompress(rows_fn(o_leaves, xs, col, dtype), col, dtype, o_leaves[0])
        return values, _Structure(pattern, col), aux

    return run


def _hvp_rows(xs, grads, col, dtype):
    """One Hessian-vector product per color (the unbatched way)."""
    live = [(x, g) for x, g in zip(xs, grads) if g is not None]
    rows = []
    for c in range(col.ncolors):
        tangents, off = [], 0
        for x in xs:
            tangents.append(_seed(x, col.colors, off, c))
            off += size_of(x)
        touts = forward_engine().jvp([g for _, g in live], xs, tangents) if live else []
        by_x = {x: t for (x, _), t in zip(live, touts)}
        rows.append(_flat_concat([by_x.get(x) if by_x.get(x) is not None else
                                  _zeros_like_size(x, dtype) for x in xs], dtype))
    return rows


def _hessian_run(f, argnums, has_aux, given):
    from .transforms import scalar_output, split_aux  # noqa: PLC0415

    def run(*args, **kwargs):
        _, args, parts = _prepare(args, argnums, "hessian")
        value, aux = split_aux(f(*args, **kwargs), has_aux, "hessian")
        y = scalar_output(value, "hessian")
        xs = [t for leaves, _ in parts for t in leaves]
        n = sum(size_of(x) for x in xs)
        _check_pattern(given, (n, n), "hessian")
        pattern = given if given is not None else analyze(xs, [y], second_order=True)[1]
        col = coloring(pattern, "star")
        grads = autodiff_engine().gradients([y], xs)
        dtype = _result_dtype([y] + xs)
        rows = None
        if all(g is not None for g in grads):  # one batched HVP for all colors
            rows = _batched_matrix(xs, lambda seeds: forward_engine().jvp(grads, xs, seeds),
                                   xs, col, dtype)
        if rows is None:
            rows = _hvp_rows(xs, grads, col, dtype)
        values = _decompress(rows, col, dtype, y)
        return values, _Structure(col.pattern, col), aux

    return run


class _SparseFunction:
    """The function returned by jacfwd/jacrev/hessian with `sparsity`: concrete arguments give
    a scipy CSR matrix (or SparseMatrix), Tensor arguments a SparseTensor."""

    def __init__(self, inner, has_aux, name):
        self._inner, self._has_aux = inner, has_aux
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        values, structure, aux = self._inner(*args, **kwargs)
        if isinstance(values, Tensor):
            result = SparseTensor(values, structure)
        else:
            result = structure.build(values)
        return (result, aux) if self._has_aux else result

    def __repr__(self):
        return f"<sparse transformed function {self.__name__}>"


def _pattern_key(given):
    if given is None:
        return "auto"
    return ("pattern", given.nrows, given.ncols, given.indptr.tobytes(), given.indices.tobytes())


def sparse_jacobian(f, argnums=0, has_aux=False, sparsity="auto", mode="fwd"):
    """jacfwd (`mode="fwd"`), jacrev ("rev") or hessian ("hessian") of f with a sparse result.

    `sparsity`: "auto" (detected from the graph at each trace) or a pattern (scipy.sparse
    matrix, dense bool array) of shape (out.size, in.size). One JVP (fwd, hessian: HVP) or VJP
    (rev) per color of the pattern's coloring, all in one graph: a concrete call is one
    onnxruntime run. The result is 2-D (see the module docstring) and has `.ncolors`.
    """
    if isinstance(sparsity, str):
        if sparsity != "auto":
            raise ValueError(f"sparsity must be 'auto' or a pattern, got {sparsity!r}")
        given = None
    else:
        given = as_rows(sparsity)
    if not isinstance(argnums, int):
        argnums = tuple(argnums)
    base = {"fwd": "jacfwd", "rev": "jacrev", "hessian": "hessian"}[mode]
    name = f"{base}({getattr(f, '__name__', 'f')}, sparse)"
    if mode == "hessian":
        run = _hessian_run(f, argnums, has_aux, given)
    else:
        run = _jacobian_run(f, argnums, has_aux, given, mode)
    key = (f"sparse_{base}", f, _key(argnums), has_aux, _pattern_key(given))
    inner = transformed(key, lambda: Transformed(run, name=name, wrapped=f))
    return _SparseFunction(inner, has_aux, name)

