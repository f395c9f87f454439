"""Algebraic simplification: the rule table of simplify_rules.py applied in one rebuild, plus
the facts the rules' guards ask about values (uniform constants, shapes, signs).

Float semantics (decided here, documented per rule): with `exact=True` (the default, used by
the pipeline) a rule may only fire when the result is the same for every input, inf and NaN
included, except for the sign of a zero result (`x + 0 -> x` gives -0.0 for x = -0.0, as XLA
does). So `x * 0 -> 0`, `x - x -> 0` and `log(exp(x)) -> x` decline for floats (inf * 0 and
inf - inf are NaN; exp overflows), as JAX declines them; `exact=False` (fast-math) allows them.
"""

import numpy as np

from .rewrite import Decline, apply_rules, graph_pass, index_rules, rebuild

__all__ = ["simplify", "Facts", "uniform_value", "fits_into", "same_shape"]

# Constants larger than this are not scanned for a uniform value.
_SCAN_LIMIT = 1 << 20
_NOT_UNIFORM = object()
# Ops whose output has its (only) input's value at every element, possibly broadcast/reshaped.
_VALUE_PRESERVING = frozenset({"broadcast_to", "broadcast_to_like", "reshape", "reshape_like",
                               "expand_dims", "squeeze", "transpose", "stop_gradient",
                               "tile", "remat_barrier"})


# Ops whose output can be uniform (uniform_value's cases): anything else is not, at no cost.
MAYBE_UNIFORM = _VALUE_PRESERVING | {"constant", "full", "full_like", "cast"}


class Facts:
    """Per-rebuild memo of value facts about tensors of the new graph."""

    def __init__(self, exact=True):
        self.exact = exact
        self._uniform = {}

    def uniform(self, t):
        """The one value every element of `t` has (a Python scalar), else None."""
        if t.node.op not in MAYBE_UNIFORM:
            return None
        key = id(t)
        hit = self._uniform.get(key)
        if hit is None:
            v = uniform_value(t, self.uniform)
            if v is _NOT_UNIFORM:
                v = None
            elif isinstance(v, np.generic):
                v = v.item()  # a Python scalar: cheap to compare
            hit = (v, t)
            self._uniform[key] = hit
        return hit[0]

    def is_value(self, t, value):
        v = self.uniform(t)
        return v is not None and _same_number(v, value)


def _same_number(v, value):
    return bool(v == value)


def uniform_value(t, rec):
    """Uniform value of tensor t (a numpy scalar of t's dtype) or _NOT_UNIFORM."""
    node = t.node
    op = node.op
    if op == "constant":
        a = node.attrs["value"]
        if a.size == 0 or a.size > _SCAN_LIMIT:
            return _NOT_UNIFORM
        first = a.reshape(-1)[0]
        if a.size == 1:
            return first
        if bool(np.all(a == first)):
            if a.dtype.kind == "f" and np.signbit(a).any() != np.signbit(first):
                return _NOT_UNIFORM  # mixed signed zeros
            return first
        return _NOT_UNIFORM
    if op in ("full", "full_like"):
        return np.asarray(node.attrs["value"], dtype=t.dtype.np)[()]
    if op in _VALUE_PRESERVING and node.inputs:
        v = rec(node.inputs[0])
        return _NOT_UNIFORM if v is None else v
    if op == "cast":
        v = rec(node.inputs[0])
        if v is None:
            return _NOT_UNIFORM
        with np.errstate(all="ignore"):
            return np.asarray(v).astype(t.dtype.np)[()]
    return _NOT_UNIFORM


# ---------------------------------------------------------------------------------------------
# Shape facts


def fits_into(small, big):
    """Whether broadcasting a tensor of shape `small` against one of shape `big` gives `big`'s
    shape for every run-time value of unknown dims (so `big op small` keeps big's shape)."""
    if len(small) > len(big):
        return False
    for s, b in zip(reversed(small), reversed(big)):
        if s == 1:
            continue
        if s is None or s != b:
            return False
    return True


def same_shape(a, b):
    """Shapes equal for every run-time value (None dims equal only when fully unknown-free)."""
    return len(a) == len(b) and all(x == y and x is not None for x, y in zip(a, b))


def type_kept(new, old):
    """A replacement keeps the output's dtype and shape (it may only know more dims)."""
    if new.dtype is not old.dtype or len(new.shape) != len(old.shape):
        return False
    return all(a == b or b is None for a, b in zip(new.shape, old.shape))


# ---------------------------------------------------------------------------------------------
# The pass


def make_simplify(exact=True, rules=None):
    """A fresh rewrite function applying `rules` (default: the standard table)."""
    from .simplify_rules import RULES, count_uses  # noqa: PLC0415

    by_op = index_rules(RULES if rules is None else rules)
    facts = Facts(exact)

    def rewrite(node, inputs, b):
        if node.op not in by_op:
            return None
        mark = len(b.graph.nodes)
        res = apply_rules(by_op, node, inputs, b)
        if res is None:
            return None
        for new, old in zip(res, node.outputs):
            if not type_kept(new.type, old.type):
                b.decline("type check", f"a rule gave {new.type!r} for {old.type!r}")
                return None
        return _again(by_op, res, mark, b)

    rewrite.count_uses = count_uses
    rewrite.facts = facts
    return rewrite


def _again(by_op, res, mark, b, limit=8):
    """Simplify the node a rule just made (its result), so one pass reaches a fixpoint
    locally: reshape(reshape(x, a), b) -> reshape(x, b) -> x when b is x's shape."""
    node, attrs = b.node, b.attrs
    try:
        for _ in range(limit):
            if len(res) != 1 or res[0].node.graph is not b.graph or res[0].node.id < mark:
                break
            made = res[0].node
            if made.op not in by_op:
                break
            b.node, b.attrs = made, made.attrs
            more = apply_rules(by_op, made, list(made.inputs), b)
            if more is None or not type_kept(more[0].type, made.outputs[0].type):
                break
            res = more
    finally:
        b.node, b.attrs = node, attrs
    return res


@graph_pass
def simplify(prog, exact=True, rules=None, declines=None, fires=None):
    """Apply the algebraic rules (simplify_rules.RULES) everywhere, bodies included.

    `exact=False` also fires the rules that are exact only for finite values (see the module
    docstring). `declines` (a list) collects each guard's refusal with its reason.
    """
    rewrite = make_simplify(exact, rules)
    ctx = {"facts": rewrite.facts, "uses": rewrite.count_uses(prog)}
    return rebuild(prog, rewrite, declines=declines, fires=fires, ctx=ctx)


def is_decline(x):
    return isinstance(x, Decline)
