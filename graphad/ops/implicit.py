"""fixed_point and root: a while_loop finds the solution, the implicit function theorem gives its
derivatives (an `implicit` node whose VJP/JVP solve a linear system; the loop is never unrolled).

Derivatives. With R(x, p) = 0 at the solution (R = f(x, p) - x for fixed_point, R = F for
root), dx/dp = -R_x^{-1} R_p. Reverse mode solves R_x^T u = g and returns -R_p^T u; forward mode
solves R_x t = -R_p t_p. R_x is built densely from one forward-mode JVP of R per element of x
(n JVPs for n = x.size, then ga.linalg.solve: O(n) copies of f's derivative graph plus an n x n
solve) when x is static with n <= DENSE_MAX; otherwise (fixed_point only) the adjoint system is
solved by the same fixed-point iteration (v <- g + J^T v, or t <- f_p t_p + J t), which
converges whenever the forward iteration does. Every piece is built from differentiable ops at
the solution x* (the node's own output), so second derivatives work too.
"""

import numpy as np

from .. import tree
from ..build import as_tensor
from ..errors import DTypeError, ShapeError, user_location
from ..graph import Tensor, ancestors, get_default_graph, inline
from ..registry import defop, graph_of
from ..types import num_elements
from .control import StructureError, _label, guard, trace_body, while_loop
from .control_grad import engines, new_body, replay, safe_vjp

__all__ = ["fixed_point", "root"]

DENSE_MAX = 64  # the largest x (in elements) whose Jacobian is built densely


def _ops():
    from .. import ops  # noqa: PLC0415

    return ops


# ---------------------------------------------------------------------------------------------
# The implicit node: inputs (x* from the loop, param leaves..., captures of f); output x*


def _residual(attrs, g, x, params, caps):
    """R(x, params) in graph `g` (f's graph replayed; its captures read `caps`)."""
    out = replay(attrs["f"], g, [x] + list(params), caps)[0]
    return out - x if attrs["kind"] == "fixed_point" else out


def _dense(x):
    return x.shape is not None and all(isinstance(d, int) for d in x.shape) and (
        num_elements(x.shape) <= DENSE_MAX)


def _jacobian(r, x):
    """dR/dx as an (n, n) matrix (or a scalar for a scalar x): one forward JVP per element."""
    forward, ops = engines()[1], _ops()
    n = int(np.prod(x.shape, dtype=np.int64))
    cols = []
    for i in range(n):
        e = np.zeros(n, dtype=x.dtype.np)
        e[i] = 1
        (t,) = forward.jvp([r], [x], [as_tensor(e.reshape(x.shape))])
        cols.append(ops.zeros_like(r) if t is None else t)
    if x.shape == ():
        return cols[0]
    return ops.stack([ops.reshape(c, (n,)) for c in cols], axis=1)


def _solve(jac, b, x, transpose):
    """jac^T y = b (or jac y = b) for y shaped like x."""
    ops = _ops()
    if x.shape == ():
        return b / jac
    n = int(np.prod(x.shape, dtype=np.int64))
    a = ops.transpose(jac) if transpose else jac
    return ops.reshape(ops.linalg.solve(a, ops.reshape(b, (n,))), x.shape)


def _iterate(attrs, step, start):
    """The fixed point of v -> step(v) from `start` (while_loop, the forward's tolerance)."""
    ops = _ops()
    tol, big = attrs["tol"], as_tensor(np.asarray(np.inf, start.dtype.np))

    def body(s):
        v = step(s[0])
        return v, ops.max(ops.abs(v - s[0])) / ops.maximum(ops.max(ops.abs(v)), 1.0)

    return while_loop(lambda s: _unconverged(s[1], tol), body, (start, big),
                      max_iterations=attrs["max_iterations"])[0]


def _split(node):
    k = node.attrs["n_params"]
    return node.inputs[1:1 + k], node.inputs[1 + k:]


def _implicit_vjp(node, g):
    autodiff = engines()[0]
    params, caps = _split(node)
    k, a, x_star = len(params), node.attrs, node.outputs[0]
    need = [autodiff.needs_gradient(node, i) for i in range(len(node.inputs))]
    fp = [i for i, p in enumerate(params) if p.dtype.is_floating and need[1 + i]]
    fk = [j for j, c in enumerate(caps) if c.dtype.is_floating and need[1 + k + j]]
    result = [None] * len(node.inputs)
    if g is None or not (fp or fk):
        return tuple(result)
    s, ph = new_body(node.graph, "implicit_vjp", [x_star.type] + [p.type for p in params]
                     + [x_star.type])
    px, pp, pg = ph[0], ph[1:1 + k], ph[-1]
    with s:
        r = _residual(a, s, px, pp, caps)
        if _dense(px):
            u = _solve(_jacobian(r, px), pg, px, transpose=True)
        else:  # fixed_point: v = g + J^T v, u = -v
            def step(v):
                here = get_default_graph()
                fx = replay(a["f"], here, [here.capture(px)] + [here.capture(p) for p in pp],
                            caps)[0]
                return pg + safe_vjp([fx], [here.capture(px)], [v])[0]

            u = -_iterate(a, step, pg)
        wrt = [pp[i] for i in fp] + [s.capture(caps[j]) for j in fk]
        res = safe_vjp([r], wrt, [-u])
    mapping = {px: x_star, pg: g}
    mapping.update(zip(pp, params))
    live = [t for t in res if t is not None]
    vals = dict(zip(live, inline(s, mapping, live, target=node.graph)))
    for t, i in zip(res[:len(fp)], fp):
        result[1 + i] = vals.get(t) if t is not None else None
    for t, j in zip(res[len(fp):], fk):
        result[1 + k + j] = vals.get(t) if t is not None else None
    return tuple(result)


def _implicit_jvp(node, t_x, *t_rest):
    forward = engines()[1]
    params, caps = _split(node)
    k, a, x_star = len(params), node.attrs, node.outputs[0]
    tp = [(i, t) for i, t in enumerate(t_rest[:k]) if t is not None and params[i].dtype.is_floating]
    tk = [(j, t) for j, t in enumerate(t_rest[k:]) if t is not None and caps[j].dtype.is_floating]
    if not tp and not tk:
        return (None,)
    types = [x_star.type] + [p.type for p in params] + [params[i].type for i, _ in tp]
    s, ph = new_body(node.graph, "implicit_jvp", types + [caps[j].type for j, _ in tk])
    px, pp, pt = ph[0], ph[1:1 + k], ph[1 + k:]
    with s:
        r = _residual(a, s, px, pp, caps)
        wrt = [pp[i] for i, _ in tp] + [s.capture(caps[j]) for j, _ in tk]
        (tr,) = forward.jvp([r], wrt, pt)
        if tr is None:
            return (None,)
        if _dense(px):
            out = -_solve(_jacobian(r, px), tr, px, transpose=False)
        else:  # fixed_point: t = f_p t_p + J t, and tr = f_p t_p here

            def step(t):
                here = get_default_graph()
                fx = replay(a["f"], here, [here.capture(px)] + [here.capture(p) for p in pp],
                            caps)[0]
                (jt,) = forward.jvp([fx], [here.capture(px)], [t])
                return here.capture(tr) + jt if jt is not None else here.capture(tr) + 0 * t

            out = _iterate(a, step, tr)
    mapping = {px: x_star}
    mapping.update(zip(pp, params))
    mapping.update(zip(pt, [t for _, t in tp] + [t for _, t in tk]))
    return (inline(s, mapping, [out], target=node.graph)[0],)


IMPLICIT = defop(
    "implicit",
    infer=lambda types, a: (types[0],),
    reference=lambda node, x, *rest: (x,),
    lower=lambda ctx, node, x, *rest: (ctx.emit("Identity", [x]),),
    vjp=_implicit_vjp,
    jvp=_implicit_jvp,
    doc="The solution x* of R(x, params) = 0 found by a loop (input 0); derivatives by the "
    "implicit function theorem (see graphad/ops/implicit.py).",
)


# ---------------------------------------------------------------------------------------------
# Builders


def _prepare(fn, x0, params, label, name):
    """(x0 tensor, param leaves, their treedef, f's graph) with f traced once on placeholders."""
    p_leaves, p_td = tree.flatten(tuple(params))
    tensors = [t for t in p_leaves if isinstance(t, Tensor)]
    outer = graph_of(tensors + ([x0] if isinstance(x0, Tensor) else []))
    x0 = x0 if isinstance(x0, Tensor) else as_tensor(x0, graph=outer)
    if not x0.dtype.is_floating:
        raise DTypeError(f"{label}: x0 must be floating, got {x0.dtype.name}")
    p_leaves = [p if isinstance(p, Tensor) else as_tensor(p, graph=outer) for p in p_leaves]
    types = [x0.type] + [p.type for p in p_leaves]
    fg, out_td = trace_body(fn, types, outer, name,
                            call=lambda phs: fn(phs[0], *tree.unflatten(p_td, phs[1:])))
    if len(fg.outputs) != 1 or out_td != tree.LEAF:
        raise StructureError(f"{label}: the function must return one tensor shaped like x, "
                             f"got structure {out_td}")
    o = fg.outputs[0]
    if o.dtype is not x0.dtype:
        raise DTypeError(f"{label}: the function returns {o.type!r} for x of {x0.type!r}")
    if len(o.shape) != len(x0.shape) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                            for a, b in zip(o.shape, x0.shape)):
        raise ShapeError(f"{label}: the function returns {o.type!r} for x of {x0.type!r}")
    return outer, x0, p_leaves, fg


def _frozen(outer, p_leaves, fg):
    """Parameters and captures behind stop_gradient: the loop itself is never differentiated."""
    ops = _ops()
    with outer.as_default():
        return ([ops.stop_gradient(p) for p in p_leaves],
                [ops.stop_gradient(c) for c in fg.captures])


def _f_at(fg, x, sg_p, sg_c):
    """f(x) inside the body being traced (its parameters frozen)."""
    return replay(fg, get_default_graph(), [x] + list(sg_p), sg_c)[0]


def _implicit(outer, kind, x_loop, p_leaves, fg, tol, max_iterations, name, location):
    attrs = {"f": fg, "kind": kind, "n_params": len(p_leaves), "tol": float(tol),
             "max_iterations": int(max_iterations)}
    node = outer.add_node(IMPLICIT, [x_loop] + list(p_leaves) + list(fg.captures), attrs,
                          name=name or kind, location=location)
    return node.outputs[0]


def _unconverged(err, tol):
    """The loop goes on while err > tol, and also while err is NaN (a diverged iteration must
    not pass for a converged one: it runs to max_iterations, where on_fail decides)."""
    return _ops().logical_not(_ops().less_equal(err, tol))


def _on_max(label, on_fail):
    if on_fail not in ("return", "error"):
        raise ValueError(f"{label}: on_fail must be 'return' or 'error', got {on_fail!r}")
    return "error" if on_fail == "error" else "stop"


def fixed_point(f, x0, *params, tol=1e-6, max_iterations=1000, on_fail="return", name=None):
    """`x*` with `f(x*, *params) = x*`, by iterating x <- f(x, *params) from x0 until
    max|x_new - x| <= tol (at most `max_iterations` trips). When it has not converged by then,
    `on_fail="return"` (default) gives the last iterate and `on_fail="error"` makes the run fail
    (ga.RunError naming this call's line).

    `x0` is one tensor; `params` any pytrees. Derivatives with respect to `params` (and to
    tensors f captures) come from the implicit function theorem, not from the iterations:
    dense Jacobian + solve for x of at most DENSE_MAX elements, else the adjoint fixed-point
    iteration (see the module docstring for the costs).
    """
    location = user_location()
    label = _label("fixed_point", name, location)
    on_max = _on_max(label, on_fail)
    outer, x0, p_leaves, fg = _prepare(f, x0, params, label, "fixed_point_f")
    sg_p, sg_c = _frozen(outer, p_leaves, fg)
    ops = _ops()

    def body(s):
        x = _f_at(fg, s[0], sg_p, sg_c)
        return x, ops.max(ops.abs(x - s[0]))

    with outer.as_default():
        big = as_tensor(np.asarray(np.inf, x0.dtype.np))
        x_loop = while_loop(lambda s: _unconverged(s[1], tol), body, (x0, big),
                            max_iterations=max_iterations, on_max=on_max, name="fixed_point")[0]
        return _implicit(outer, "fixed_point", x_loop, p_leaves, fg, tol, max_iterations, name,
                         location)


def root(F, x0, *params, method="newton", bracket=None, tol=1e-6, max_iterations=100,
         on_fail="return", name=None):
    """`x` with `F(x, *params) = 0`.

    `method="newton"`: x <- x - F_x^{-1} F from x0 (F_x by one forward JVP per element of x,
    so x is small and static, at most DENSE_MAX elements) until max|step| <= tol.
    `method="bisection"`: scalar x, `bracket=(lo, hi)` with F(lo), F(hi) of opposite signs;
    halves the bracket until hi - lo <= tol (x0 only gives the dtype). A bracket without a sign
    change raises ValueError when F(lo), F(hi) are known while building, else gives NaN.
    `on_fail="error"` instead makes a run fail (ga.RunError naming this call's line) when the
    iteration has not converged within `max_iterations` or the bracket has no sign change;
    `on_fail="return"` (default) gives the last iterate (or NaN for such a bracket).
    Derivatives with respect to `params` by the implicit function theorem (module docstring).
    """
    location = user_location()
    label = _label("root", name, location)
    on_max = _on_max(label, on_fail)
    if method not in ("newton", "bisection"):
        raise ValueError(f"{label}: method must be 'newton' or 'bisection', got {method!r}")
    outer, x0, p_leaves, fg = _prepare(F, x0, params, label, "root_F")
    if not _dense(x0):
        raise ShapeError(f"{label}: x must have a static shape with at most {DENSE_MAX} "
                         f"elements (its Jacobian is built densely), got {x0.type!r}")
    sg_p, sg_c = _frozen(outer, p_leaves, fg)
    with outer.as_default():
        if method == "newton":
            if bracket is not None:
                raise ValueError(f"{label}: bracket is only used by method='bisection'")
            x_loop = _newton(fg, x0, sg_p, sg_c, tol, max_iterations, on_max)
        else:
            x_loop = _bisection(fg, x0, p_leaves, sg_p, sg_c, bracket, tol, max_iterations,
                                label, on_max)
        return _implicit(outer, "root", x_loop, p_leaves, fg, tol, max_iterations, name, location)


def _newton(fg, x0, sg_p, sg_c, tol, max_iterations, on_max):
    ops = _ops()

    def body(s):
        x = s[0]
        r = _f_at(fg, x, sg_p, sg_c)
        step = _solve(_jacobian(r, x), r, x, transpose=False)
        return x - step, ops.max(ops.abs(step))

    big = as_tensor(np.asarray(np.inf, x0.dtype.np))
    return while_loop(lambda s: _unconverged(s[1], tol), body, (x0, big),
                      max_iterations=max_iterations, on_max=on_max, name="root")[0]


def _bisection(fg, x0, p_leaves, sg_p, sg_c, bracket, tol, max_iterations, label, on_max):
    ops = _ops()
    if bracket is None or len(bracket) != 2:
        raise ValueError(f"{label}: method='bisection' needs bracket=(lo, hi)")
    if x0.shape != ():
        raise ShapeError(f"{label}: bisection needs a scalar x, got {x0.type!r}")
    lo, hi = (as_tensor(b, x0.dtype) for b in bracket)
    if lo.shape != () or hi.shape != ():
        raise ShapeError(f"{label}: the bracket ends must be scalars")
    _static_sign_check(fg, lo, hi, p_leaves, label)
    f_lo = replay(fg, get_default_graph(), [lo] + list(sg_p), sg_c)[0]
    f_hi = replay(fg, get_default_graph(), [hi] + list(sg_p), sg_c)[0]
    nan = as_tensor(np.asarray(np.nan, x0.dtype.np))

    def body(s):
        a, b, fa = s
        mid = (a + b) * 0.5
        fm = _f_at(fg, mid, sg_p, sg_c)
        right = ops.greater(fm * fa, 0.0)  # same sign as at `a`: the root is right of mid
        return ops.where(right, mid, a), ops.where(right, b, mid), ops.where(right, fm, fa)

    a, b, _ = while_loop(lambda s: ops.greater(s[1] - s[0], tol), body, (lo, hi, f_lo),
                         max_iterations=max_iterations, on_max=on_max, name="root")
    mid = (a + b) * 0.5
    same_sign = ops.greater(f_lo * f_hi, 0.0)
    if on_max == "error":
        return guard(same_sign, [mid], f"{label}: the bracket has no sign change "
                                       "(F(lo) and F(hi) have the same sign)")[0]
    return ops.where(same_sign, nan, mid)


def _static_sign_check(fg, lo, hi, p_leaves, label):
    """Raise ValueError now if F(lo), F(hi) are computable while building and share a sign."""
    from ..interpret import evaluate  # noqa: PLC0415

    known = list(p_leaves) + list(fg.captures) + [lo, hi]
    if any(n.op in ("placeholder", "variable") for n in ancestors(known)):
        return
    vals = evaluate(known)
    env = dict(zip(list(fg.inputs[1:]) + list(fg.captures.values()), vals[:-2]))
    f_lo = evaluate(fg.outputs, {**env, fg.inputs[0]: vals[-2]})[0]
    f_hi = evaluate(fg.outputs, {**env, fg.inputs[0]: vals[-1]})[0]
    if float(f_lo) * float(f_hi) > 0:
        raise ValueError(f"{label}: the bracket ({float(vals[-2])}, {float(vals[-1])}) has no "
                         f"sign change: F(lo) = {float(f_lo)}, F(hi) = {float(f_hi)}")

