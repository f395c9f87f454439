"""Rules for the signs, scalar factors and scattered sums that derivative graphs are full of
(W5's Hessian-vector product: neg(mul(neg(v), 2)), (2 * (100 * d)), three Pads summed). Part of
the table in simplify_rules.py; the same guard conventions (a Decline says why not).

Exactness (simplify's `exact=True`): negation is exact and rounding is symmetric in sign, so
the sign rules always hold; `(x * c1) * c2 -> x * (c1 c2)` holds when one factor is a power of
two and both are at least 1 in magnitude (the power-of-two product is exact and neither form
can overflow where the other does not), otherwise only in fast-math mode.
"""

import math

import numpy as np

from .rewrite import Decline, Rule
from .simplify import fits_into

__all__ = ["SIGN_RULES"]


def _facts(b):
    return b.ctx["facts"]


def _single_use(b, old):
    return b.ctx["uses"].get(id(old), 0) == 1


def _add(b, op, inputs, attrs=None):
    return b.add(op, inputs, attrs or {}).outputs[0]


def _scalar_factor(b, t):
    """The uniform value of `t` when it is a scalar-shaped constant factor, else None."""
    if t.shape != () or not t.dtype.is_floating:
        return None
    return _facts(b).uniform(t)


def _const_like(b, value, t):
    return b.const(np.asarray(value, dtype=t.dtype.np), dtype=t.dtype)


def neg_of_scaled(node, ins, b):
    """neg(mul(x, c)) -> mul(x, -c) for a scalar constant c."""
    inner = ins[0].node
    if inner.op != "multiply" or inner.graph is not b.graph or not _single_use(b, node.inputs[0]):
        return None
    for i in (0, 1):
        c = _scalar_factor(b, inner.inputs[1 - i])
        if c is not None:
            return _add(b, "multiply", [inner.inputs[i], _const_like(b, -c, inner.inputs[1 - i])])
    return None


def mul_of_neg(node, ins, b):
    """mul(neg(a), y) -> neg(mul(a, y)): the sign moves out, where the rules for neg(neg),
    add(x, neg) and neg(mul(x, c)) absorb it."""
    if not node.outputs[0].dtype.is_floating:
        return None
    for i in (0, 1):
        t = ins[i]
        if t.node.op == "negative" and t.node.graph is b.graph and _single_use(b, node.inputs[i]):
            other = ins[1 - i]
            if other.node.op == "negative":  # mul(neg a, neg b) -> mul(a, b)
                return _add(b, "multiply", [t.node.inputs[0], other.node.inputs[0]])
            return _add(b, "negative", [_add(b, "multiply", [t.node.inputs[0], other])])
    return None


def _power_of_two(v):
    m, _ = math.frexp(abs(v))
    return v != 0 and m == 0.5


def scaled_twice(node, ins, b):
    """mul(mul(x, c1), c2) -> mul(x, c1 * c2) for scalar constants c1, c2."""
    for i in (0, 1):
        c2 = _scalar_factor(b, ins[1 - i])
        inner = ins[i].node
        if c2 is None or inner.op != "multiply" or inner.graph is not b.graph \
                or not _single_use(b, node.inputs[i]):
            continue
        for j in (0, 1):
            c1 = _scalar_factor(b, inner.inputs[1 - j])
            if c1 is None:
                continue
            if _facts(b).exact and not ((_power_of_two(c1) or _power_of_two(c2))
                                        and min(abs(c1), abs(c2)) >= 1):
                return Decline(f"({c1}) * ({c2}) could round or overflow differently from two "
                               "multiplications (exact mode)")
            x = inner.inputs[j]
            return _add(b, "multiply", [x, _const_like(b, c1 * c2, ins[1 - i])])
    return None


def _scatter_key(t):
    n = t.node
    like = n.inputs[1]
    if not all(isinstance(d, int) for d in like.shape):
        return None
    return (n.attrs["spec"], tuple(like.shape), t.dtype, tuple(n.inputs[0].shape))


def sum_of_scatters(node, ins, b):
    """add_n(scatter_slice(a, L, s), scatter_slice(c, L, s), y) -> add_n(scatter_slice(a + c,
    L, s), y): one scatter (a Pad) for each group of equal slices (a slice's VJP, per use)."""
    groups = {}
    for pos, (old, t) in enumerate(zip(node.inputs, ins)):
        if t.node.op == "scatter_slice" and t.node.graph is b.graph and _single_use(b, old):
            key = _scatter_key(t)
            if key is not None:
                groups.setdefault(key, []).append(pos)
    merged = {key: ps for key, ps in groups.items() if len(ps) > 1}
    if not merged:
        return None
    out, done = [], set()
    for pos, t in enumerate(ins):
        if pos in done:
            continue
        key = _scatter_key(t) if t.node.op == "scatter_slice" else None
        if key in merged and pos in merged[key]:
            members = [ins[p] for p in merged[key]]
            done.update(merged[key])
            total = _add(b, "add_n", [m.node.inputs[0] for m in members])
            out.append(_add(b, "scatter_slice", [total, t.node.inputs[1]],
                            {"spec": t.node.attrs["spec"]}))
        else:
            out.append(t)
    if len(out) == 1:
        return out[0] if tuple(out[0].shape) == tuple(node.outputs[0].shape) else None
    if not all(fits_into(o.shape, node.outputs[0].shape) for o in out):
        return Decline("the operands would broadcast differently")
    return _add(b, "add_n", out)


SIGN_RULES = (
    Rule("neg(mul(x, c)) -> mul(x, -c)", ("negative",), neg_of_scaled),
    Rule("mul(neg(a), y) -> neg(mul(a, y)); mul(neg(a), neg(b)) -> mul(a, b)", ("multiply",),
         mul_of_neg),
    Rule("mul(mul(x, c1), c2) -> mul(x, c1 c2)", ("multiply",), scaled_twice),
    Rule("add_n(scatter_slice(a, s), scatter_slice(c, s), ...) -> add_n(scatter_slice(a + c, s),"
         " ...)", ("add_n",), sum_of_scatters),
)
