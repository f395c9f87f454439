"""Finite differences: numerical_grad (forward / central / five-point stencils, float64) and
check_grads (autodiff JVPs/VJPs against finite differences in random directions, any order)."""

import numpy as np

from . import tree
from .graph import Graph, Tensor
from .types import x64

__all__ = ["numerical_grad", "check_grads"]

_EPS64 = np.finfo(np.float64).eps
# default relative steps: the error-balancing step of each stencil in float64
_STEPS = {"forward": _EPS64 ** 0.5, "central": _EPS64 ** (1 / 3), "five_point": _EPS64 ** 0.2}


def _as_args(args):
    return tuple(args) if isinstance(args, (tuple, list)) else (args,)


def _is_number(x):
    return isinstance(x, (bool, int, float, np.ndarray, np.generic)) and not isinstance(x, str)


def _to64(x):
    """Numeric leaves as float64 arrays (integers too: they are differentiated as floats)."""
    return np.array(x, dtype=np.float64) if _is_number(x) and not isinstance(x, bool) else x


# ---------------------------------------------------------------------------------------------
# Evaluating f


def _evaluator(f, how):
    """A function args -> f(*args) as numpy, through jit (float64) or plain numpy."""
    from .tracing import jit  # noqa: PLC0415

    def by_jit(args):
        with x64():
            return jit(f)(*args)

    def by_numpy(args):
        with Graph():  # a graphad f given numpy values must not grow the global default graph
            out = f(*args)
        if any(isinstance(x, Tensor) for x in tree.leaves(out)):
            raise TypeError("f returned Tensors when called with numpy values; use how='jit'")
        return tree.tree_map(np.asarray, out)

    if how == "jit":
        return by_jit
    if how == "numpy":
        return by_numpy
    if how != "auto":
        raise ValueError(f"unknown evaluator {how!r}: use 'auto', 'jit' or 'numpy'")
    chosen = []

    def auto(args):
        if chosen:
            return chosen[0](args)
        try:
            out = by_jit(args)
            chosen.append(by_jit)
        except (TypeError, AttributeError) as e:
            try:
                out = by_numpy(args)
            except Exception:
                raise e from None
            chosen.append(by_numpy)
        return out

    return auto


def _stencil(phi, h, method):
    """Derivative at 0 of the scalar-parameter function phi (pytree-valued) with step h."""
    if method == "forward":
        terms = [(1.0, h), (-1.0, 0.0)]
        denom = h
    elif method == "central":
        terms = [(1.0, h), (-1.0, -h)]
        denom = 2 * h
    elif method == "five_point":
        terms = [(-1.0, 2 * h), (8.0, h), (-8.0, -h), (1.0, -2 * h)]
        denom = 12 * h
    else:
        raise ValueError(f"unknown method {method!r}: use 'forward', 'central' or 'five_point'")
    total = None
    for c, t in terms:
        val = tree.tree_map(lambda v, c=c: c * np.asarray(v, np.float64), phi(t))
        total = val if total is None else tree.tree_map(np.add, total, val)
    return tree.tree_map(lambda v: v / denom, total)


# ---------------------------------------------------------------------------------------------
# numerical_grad


def numerical_grad(f, args, method="central", eps=None, how="auto"):
    """Finite-difference gradient of scalar `f` at `args` (a tuple: one entry per argument).

    float64 throughout. `eps` is the absolute step (default: the error-balancing relative step
    of the stencil times max(1, |x_i|)). `f` runs through ga.jit (x64), or as plain numpy
    when it cannot be traced (`how` = "auto", "jit" or "numpy").
    """
    if method not in _STEPS:
        raise ValueError(f"unknown method {method!r}: use 'forward', 'central' or 'five_point'")
    args = tuple(tree.tree_map(_to64, a) for a in _as_args(args))
    leaves, td = tree.flatten(args)
    evaluate = _evaluator(f, how)

    def scalar(new_leaves):
        out = np.asarray(evaluate(tree.unflatten(td, new_leaves)), np.float64)
        if out.shape != ():
            raise ValueError(f"numerical_grad needs a scalar f, got shape {out.shape}")
        return out

    grads = []
    for li, leaf in enumerate(leaves):
        if not isinstance(leaf, np.ndarray) or leaf.dtype != np.float64:
            grads.append(None)
            continue
        g = np.zeros(leaf.shape, np.float64)
        for idx in np.ndindex(leaf.shape):
            h = eps if eps is not None else _STEPS[method] * max(1.0, abs(leaf[idx]))

            def phi(t, li=li, idx=idx):
                moved = leaf.copy()
                moved[idx] += t
                return scalar(leaves[:li] + [moved] + leaves[li + 1:])

            g[idx] = _stencil(phi, h, method)
        grads.append(g)
    return tuple(tree.unflatten(td, grads))


# ---------------------------------------------------------------------------------------------
# check_grads


_TOL = {np.dtype(np.float16): 5e-2, np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-5}


def _random_like(x, rng):
    def one(leaf):
        arr = np.asarray(leaf)
        if arr.dtype.kind != "f":
            return np.zeros(arr.shape, np.float64 if arr.dtype.kind in "iub" else arr.dtype)
        return rng.standard_normal(arr.shape).astype(arr.dtype)

    return tree.tree_map(one, x)


def _axpy(t, v, x):
    """x + t·v on the float leaves of pytree x."""
    def one(xl, vl):
        xl = np.asarray(xl)
        return xl + t * vl if xl.dtype.kind == "f" else xl

    return tree.tree_map(one, x, v)


def _inner(a, b):
    """(sum of a·b, sum of |a·b|) over float leaves."""
    s = scale = 0.0
    for x, y in zip(tree.leaves(a), tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        s += float(np.sum(x * y))
        scale += float(np.sum(np.abs(x * y)))
    return s, scale


class _Checker:
    def __init__(self, eps, atol, rtol, rng, method="five_point"):
        self.eps, self.atol, self.rtol, self.rng, self.method = eps, atol, rtol, rng, method

    def tolerances(self, values):
        dts = [np.asarray(v).dtype for v in tree.leaves(values) if np.asarray(v).dtype.kind == "f"]
        tol = max((_TOL.get(d, 1e-5) for d in dts), default=1e-5)
        return (tol if self.atol is None else self.atol), (tol if self.rtol is None else self.rtol)

    def directional(self, f, args, v):
        evaluate = _evaluator(f, "jit")
        h = 1e-3 if self.eps is None else self.eps
        return _stencil(lambda t: evaluate(_axpy(t, v, args)), h, self.method)

    def compare(self, got, want, what, scale=None):
        atol, rtol = self.tolerances(got)
        worst = None
        for i, (a, b) in enumerate(zip(tree.leaves(got), tree.leaves(want))):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if a.shape != b.shape:
                raise AssertionError(f"{what}: shapes differ: autodiff {a.shape} vs numerical "
                                     f"{b.shape} (output leaf {i})")
            ref = np.abs(b) if scale is None else scale
            excess = np.abs(a - b) - (atol + rtol * ref)
            if excess.size and (worst is None or np.max(excess) > worst[0]):
                k = np.unravel_index(np.argmax(excess), excess.shape) if excess.ndim else ()
                worst = (float(np.max(excess)), i, k, float(a[k]), float(b[k]))
        if worst is not None and (worst[0] > 0 or not np.isfinite(worst[0])):
            _, i, k, a, b = worst
            raise AssertionError(
                f"{what}: autodiff and finite differences disagree; worst mismatch at output "
                f"leaf {i} index {k}: autodiff {a!r} vs numerical {b!r} (abs err {abs(a - b):.3g},"
                f" atol {atol:g}, rtol {rtol:g})"
            )

    def check_jvp(self, f, args, order):
        from .transforms import jvp  # noqa: PLC0415

        v = _random_like(args, self.rng)
        _, t_out = jvp(f, args, v)
        self.compare(t_out, self.directional(f, args, v), f"JVP check (order {order})")

    def check_vjp(self, f, args, order):
        from .transforms import vjp  # noqa: PLC0415

        out, pullback = vjp(f, *args)
        u = _random_like(out, self.rng)
        v = _random_like(args, self.rng)
        lhs, scale = _inner(pullback(u), v)
        rhs, _ = _inner(u, self.directional(f, args, v))
        self.compare(np.float64(lhs), np.float64(rhs), f"VJP check <J^T u, v> == <u, J v> "
                     f"(order {order})", scale=scale)

    def run(self, f, args, order, modes, level=1):
        for mode in modes:
            (self.check_jvp if mode == "fwd" else self.check_vjp)(f, args, level)
        if order > 1:
            for mode in modes:
                self.run(self._derivative(f, args, mode), args, order - 1, modes, level + 1)

    def _derivative(self, f, args, mode):
        """The function x -> J(x)·v (fwd) or J(x)ᵀ·u (rev) for fixed random v / u."""
        from .tracing import jit  # noqa: PLC0415
        from .transforms import jvp, vjp  # noqa: PLC0415

        if mode == "fwd":
            v = _random_like(args, self.rng)
            return lambda *a: jvp(f, a, v)[1]
        u = _random_like(jit(f)(*args), self.rng)
        return lambda *a: vjp(f, *a)[1](u)


def check_grads(f, args, order=1, modes=("fwd", "rev"), eps=None, atol=None, rtol=None, seed=0):
    """Check f's derivatives against finite differences in random directions, up to `order`.

    "fwd" compares JVPs with a five-point directional difference; "rev" checks VJPs through the
    identity <Jᵀu, v> = <u, J v>. Higher orders check the derivative functions recursively (as
    JAX's check_grads). Runs in float64 (x64); raises AssertionError naming the worst mismatch.
    """
    if isinstance(modes, str):
        modes = (modes,)
    bad = [m for m in modes if m not in ("fwd", "rev")]
    if bad:
        raise ValueError(f"check_grads: unknown mode(s) {bad}; use 'fwd' and/or 'rev'")
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"check_grads: order must be a positive int, got {order!r}")
    args = tuple(tree.tree_map(_to64_float_only, a) for a in _as_args(args))
    checker = _Checker(eps, atol, rtol, np.random.default_rng(seed))
    with x64():
        checker.run(f, args, order, tuple(modes))


def _to64_float_only(x):
    """Float leaves (and Python floats) as float64; integers keep their type (not perturbed)."""
    if isinstance(x, float) or (isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind == "f"):
        return np.array(x, dtype=np.float64)
    return x
