"""Functional derivative transforms (JAX / Nx style): grad, value_and_grad, jvp, vjp, hessian, hvp.

Each returns a function that works in both modes (see graphad/tracing.py); all are built on the
reverse engine (passes/autodiff.py) and the forward engine (passes/forward.py).
"""

from . import tree
from .build import as_tensor
from .errors import DTypeError, ShapeError
from .graph import Tensor
from .jacobians import jacfwd, jacrev
from .tracing import (
    Traced,
    _param_names,
    Transformed,
    autodiff_engine,
    contains_tensor,
    float_dtype_for,
    forward_engine,
    graph_of_tree,
    jit,
    normalize_argnums,
    ops,
    tensor_leaves,
    to_float,
    transformed,
    zeros,
)
from .types import format_shape

__all__ = [
    "jit",
    "Traced",
    "grad",
    "value_and_grad",
    "jvp",
    "vjp",
    "jacfwd",
    "jacrev",
    "hessian",
    "hvp",
    "debug_expr",
]


class ScalarOutputError(ShapeError, TypeError):
    """grad of a function whose output is not a scalar (a ShapeError, and a TypeError as in JAX)."""


# ---------------------------------------------------------------------------------------------
# Shared pieces


def diff_args(args, argnums, who):
    """Replace args[argnums] by pytrees of floating Tensors; returns (args, [(leaves, treedef)]).

    Integer inputs are cast to the default float first: their gradients are floating (API.md).
    """
    args = list(args)
    parts = []
    for i in argnums:
        leaves, td = tensor_leaves(args[i], f"{who}: argument {i}")
        leaves = [to_float(t) for t in leaves]
        args[i] = tree.unflatten(td, leaves)
        parts.append((leaves, td))
    return args, parts


def scalar_output(y, who):
    """`y` as a floating scalar Tensor, or a clear error naming what f returned."""
    if not isinstance(y, Tensor):
        if isinstance(y, (list, tuple, dict)) or y is None:
            raise ScalarOutputError(
                f"{who} needs f to return a scalar, got {type(y).__name__} {y!r:.80}; with "
                "has_aux=True, f returns (value, aux)"
            )
        y = as_tensor(y)
    if y.shape != ():
        raise ScalarOutputError(
            f"{who} needs f to return a scalar (shape ()), but it returned tensor {y.name!r} of "
            f"shape {format_shape(y.shape)}; reduce it (e.g. ga.sum) or use jacrev/vjp"
        )
    if not y.dtype.is_floating:
        raise DTypeError(
            f"{who} needs a floating output, but f returned {y.dtype.name} tensor {y.name!r}"
        )
    return y


def split_aux(out, has_aux, who):
    if not has_aux:
        return out, None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"{who} with has_aux=True needs f to return a pair (value, aux), got "
                        f"{type(out).__name__}")
    return out[0], out[1]


def _gradients_of(y, parts):
    """d y / d leaves for each (leaves, treedef) in parts, as pytrees (zeros where unconnected)."""
    flat = [t for leaves, _ in parts for t in leaves]
    grads = autodiff_engine().gradients([y], flat)
    out, k = [], 0
    for leaves, td in parts:
        gs = []
        for t in leaves:
            g = grads[k]
            k += 1
            gs.append(zeros(t, t.dtype) if g is None else g)
        out.append(tree.unflatten(td, gs))
    return out


def _grad_result(grads, single):
    return grads[0] if single else tuple(grads)


# ---------------------------------------------------------------------------------------------
# grad / value_and_grad


def _value_and_grad_fn(f, argnums, has_aux, transform, who):
    def run(*args, **kwargs):
        single, nums = normalize_argnums(argnums, len(args), who)
        args, parts = diff_args(args, nums, who)
        value, aux = split_aux(f(*args, **kwargs), has_aux, who)
        y = scalar_output(value, who)
        target = y
        if transform is not None:
            target = scalar_output(transform(y), f"{who} (after transform)")
        grads = _grad_result(_gradients_of(target, parts), single)
        return (y, aux, grads) if has_aux else (y, grads)

    return run


def value_and_grad(f, argnums=0, has_aux=False, transform=None):
    """`(f(x), df/dx)`; with has_aux `((value, aux), grad)`; with `transform` the gradient is
    of `transform(f(x))` while the value stays `f(x)` (Nx's value_and_grad/3)."""
    inner = _value_and_grad_fn(f, argnums, has_aux, transform, "value_and_grad")

    def run(*args, **kwargs):
        res = inner(*args, **kwargs)
        return ((res[0], res[1]), res[2]) if has_aux else res

    key = ("value_and_grad", f, _hashable(argnums), has_aux, transform)
    return transformed(key, lambda: Transformed(run, name=f"value_and_grad({_name(f)})",
                                                wrapped=f))


def grad(f, argnums=0, has_aux=False):
    """Gradient of scalar-valued `f` w.r.t. argument(s) `argnums` (pytrees give pytrees).

    With has_aux, f returns (value, aux) and the result is (grad, aux).
    """
    inner = _value_and_grad_fn(f, argnums, has_aux, None, "grad")

    def run(*args, **kwargs):
        res = inner(*args, **kwargs)
        return (res[2], res[1]) if has_aux else res[1]

    key = ("grad", f, _hashable(argnums), has_aux)
    return transformed(key, lambda: Transformed(run, name=f"grad({_name(f)})", wrapped=f))


def _hashable(argnums):
    return argnums if isinstance(argnums, int) else tuple(argnums)


def _name(f):
    return getattr(f, "__name__", type(f).__name__)


# ---------------------------------------------------------------------------------------------
# jvp


def _check_tangent(p, t, i):
    if len(t.shape) != len(p.shape) or any(
        isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(t.shape, p.shape)
    ):
        raise ShapeError(
            f"jvp: tangent {i} has shape {format_shape(t.shape)} but its primal has shape "
            f"{format_shape(p.shape)}"
        )
    return t if t.dtype is p.dtype else ops().cast(t, p.dtype)


def _jvp_fn(f, has_aux, n):
    def run(*args):  # the n primals, then the n tangents (flat: placeholders get f's names)
        primals, tangents = args[:n], args[n:]
        p_leaves, p_td = tensor_leaves(tuple(primals), "jvp primals")
        t_leaves, t_td = tensor_leaves(tuple(tangents), "jvp tangents")
        if p_td != t_td:
            raise ValueError(f"jvp: primals {p_td!r} and tangents {t_td!r} differ in structure")
        xs, ts = [], []
        for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
            if p.dtype.is_floating:  # integer primals carry no tangent (JAX's float0)
                xs.append(p)
                ts.append(_check_tangent(p, t, i))
        out, aux = split_aux(f(*tree.unflatten(p_td, p_leaves)), has_aux, "jvp")
        o_leaves, o_td = tensor_leaves(out, "jvp: output of f")
        touts = forward_engine().jvp(o_leaves, xs, ts) if xs else [None] * len(o_leaves)
        touts = [zeros(o, float_dtype_for(o)) if t is None else t for o, t in zip(o_leaves, touts)]
        res = (tree.unflatten(o_td, o_leaves), tree.unflatten(o_td, touts))
        return res + (aux,) if has_aux else res

    return run


def _jvp_arg_names(f, n):
    """Placeholder names of a traced jvp (and vjp): f's parameter names for the primals
    (`arg<i>` where f has none, e.g. *args), `<name>_tangent` for the tangents. Errors then name the user's
    argument (`cannot differentiate 'sign' with respect to 'x'`), not jvp's internals."""
    params = _param_names(f)
    names = [params[i] if i < len(params) else f"arg{i}" for i in range(n)]
    return names + [f"{nm}_tangent" for nm in names]


def jvp(f, primals, tangents, has_aux=False):
    """`(f(*primals), J·tangents)`; `primals` and `tangents` are tuples of the same structure."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (one entry per argument), got "
                        f"{type(primals).__name__} and {type(tangents).__name__}")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    n = len(primals)
    fn = transformed(("jvp", f, has_aux, n),
                     lambda: Transformed(_jvp_fn(f, has_aux, n), name=f"jvp({_name(f)})",
                                         arg_names=_jvp_arg_names(f, n), wrapped=f))
    return fn(*primals, *tangents)


# ---------------------------------------------------------------------------------------------
# vjp


def _pullback(out, p_leaves, p_td, ct):
    """Cotangents of p_leaves given cotangent `ct` of `out` (pytrees); one pytree per primal."""
    o_leaves, o_td = tree.flatten(out)
    c_leaves, c_td = tensor_leaves(ct, "vjp cotangent")
    if c_td != o_td:
        raise ValueError(f"vjp: the cotangent has structure {c_td!r} but f's output has {o_td!r}")
    ys, cts = [], []
    for i, (o, c) in enumerate(zip(o_leaves, c_leaves)):
        if isinstance(o, Tensor) and o.dtype.is_floating:
            if len(c.shape) != len(o.shape):
                raise ShapeError(f"vjp: cotangent {i} has shape {format_shape(c.shape)} but the "
                                 f"output has shape {format_shape(o.shape)}")
            ys.append(o)
            cts.append(c if c.dtype is o.dtype else ops().cast(c, o.dtype))
    xs = [p for p in p_leaves if p.dtype.is_floating]
    grads = autodiff_engine().vjp(ys, xs, cts) if ys and xs else [None] * len(xs)
    it = iter(grads)
    res = []
    for p in p_leaves:
        g = next(it) if p.dtype.is_floating else None
        res.append(zeros(p, float_dtype_for(p)) if g is None else g)
    return tuple(tree.unflatten(p_td, res))


def _vjp_apply_fn(f, has_aux, n):
    def run(*args):  # the n primals, then the cotangent (flat: placeholders get f's names)
        primals, ct = args[:n], args[n]
        p_leaves, p_td = tensor_leaves(tuple(primals), "vjp primals")
        out, _ = split_aux(f(*tree.unflatten(p_td, p_leaves)), has_aux, "vjp")
        o_leaves, o_td = tensor_leaves(out, "vjp: output of f")
        return _pullback(tree.unflatten(o_td, o_leaves), p_leaves, p_td, ct)

    return run


class _VJPFunction:
    """vjp_fn(cotangent) -> tuple, one entry per primal; works in both modes."""

    def __init__(self, apply, primals):
        self._apply, self._primals = apply, primals

    def __call__(self, cotangent):
        return self._apply(*self._primals, cotangent)


def vjp(f, *primals, has_aux=False):
    """`(f(*primals), vjp_fn)` (with has_aux `(out, vjp_fn, aux)`); vjp_fn(ct) -> tuple."""
    g = graph_of_tree(primals)
    if g is not None:
        with g.as_default():
            p_leaves, p_td = tensor_leaves(tuple(primals), "vjp primals")
            out, aux = split_aux(f(*tree.unflatten(p_td, p_leaves)), has_aux, "vjp")
            o_leaves, o_td = tensor_leaves(out, "vjp: output of f")
            out = tree.unflatten(o_td, o_leaves)

        def vjp_fn(ct):
            with g.as_default():
                return _pullback(out, p_leaves, p_td, ct)

        return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)
    res = jit(f)(*primals)
    out, aux = split_aux(res, has_aux, "vjp")
    n = len(primals)
    names = _jvp_arg_names(f, n)[:n] + ["cotangent"]
    apply = transformed(("vjp", f, has_aux, n),
                        lambda: Transformed(_vjp_apply_fn(f, has_aux, n), name=f"vjp({_name(f)})",
                                            arg_names=names, wrapped=f))
    fn = _VJPFunction(apply, tuple(primals))
    return (out, fn, aux) if has_aux else (out, fn)


# ---------------------------------------------------------------------------------------------
# Second order


def hessian(f, argnums=0, has_aux=False, sparsity=None):
    """Hessian of scalar `f`: jacfwd of grad (forward-over-reverse), shape in.shape + in.shape.

    With `sparsity` ("auto" or a pattern): one Hessian-vector product per color of a star
    coloring of the pattern, returning a 2-D sparse matrix (in.size, in.size); see
    graphad/sparse.py.
    """
    if sparsity is not None:
        from .sparse import sparse_jacobian  # noqa: PLC0415  (sparse builds on this module)

        return sparse_jacobian(f, argnums, has_aux, sparsity, "hessian")
    return jacfwd(grad(f, argnums, has_aux=has_aux), argnums, has_aux=has_aux)


def hvp(f, primals, tangents):
    """Hessian-vector product H·v of scalar `f` at `primals` (forward-over-reverse).

    Differentiates w.r.t. every primal; returns one pytree per primal (the bare pytree when
    there is one primal).
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("hvp: primals and tangents must be tuples (one entry per argument)")
    nums = tuple(range(len(primals)))
    _, out = jvp(grad(f, argnums=nums), tuple(primals), tuple(tangents))
    return out[0] if len(primals) == 1 else out


# ---------------------------------------------------------------------------------------------
# debug_expr


class ExprText(str):
    """The text IR of a trace; shows as itself (no quotes) in a REPL or notebook."""

    def __repr__(self):
        return str(self)


def debug_expr(f):
    """`debug_expr(f)(*args)` -> the traced graph as text (one line per node, like a jaxpr)."""

    def show(*args, **kwargs):
        if contains_tensor((args, kwargs)):
            from .viz import outputs_text  # noqa: PLC0415

            g = graph_of_tree((args, kwargs))
            with g.as_default():
                out = f(*args, **kwargs)
            return ExprText(outputs_text(tree.leaves(out), title=f"# {_name(f)}"))
        return ExprText(Transformed(f, wrapped=f).trace(*args, **kwargs).text())

    return show


# custom rules and numerical checks live in their own modules; re-exported here
from .custom import checkpoint, checkpoint_policies, custom_jvp, custom_vjp, remat  # noqa: E402
from .numerics import check_grads, numerical_grad  # noqa: E402

__all__ += ["custom_jvp", "custom_vjp", "checkpoint", "checkpoint_policies", "remat",
            "check_grads", "numerical_grad"]
