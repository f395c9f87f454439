"""Reverse mode: emits the vector-Jacobian product of `ys` with respect to `xs` as ordinary
graph nodes, walking only the nodes between them, iteratively (no recursion)."""

import threading
from collections import deque

import numpy as np

from .. import ops
from ..build import as_tensor, constant
from ..errors import GraphadError, GraphError, NotDifferentiableError
from ..graph import Tensor
from ..ops.accumulate import add_n, sum_to_like
from ..registry import NOT_DIFFERENTIABLE, shape_only_inputs
from ..types import default_float, format_shape, is_static

__all__ = ["gradients", "needs_gradient", "unbroadcast", "vjp"]


# ---------------------------------------------------------------------------------------------
# Public API


def vjp(ys, xs, cotangents):
    """Cotangents of `xs` given `cotangents` (one per y, None = zero) of `ys`.

    Returns one entry per x: a Tensor of x's shape and dtype, or None when no gradient reaches
    x (unconnected, integer, or blocked by stop_gradient). Raises NotDifferentiableError when a
    y depends on an x only through ops that have no derivative.
    """
    ys = _tensor_list(ys, "ys")
    xs = _tensor_list(xs, "xs")
    cotangents = list(cotangents)
    if len(cotangents) != len(ys):
        raise GraphadError(f"vjp: {len(cotangents)} cotangents for {len(ys)} outputs")
    return _reverse(ys, xs, cotangents)


def gradients(ys, xs, grad_ys=None):
    """TF-1 `tf.gradients`: d(sum of ys)/d xs, one Tensor per x.

    `ys` a Tensor or list (their gradients are summed); `grad_ys` the cotangents (default
    ones_like(y)). An x that `ys` do not depend on gets zeros_like(x); an integer x gets zeros of
    the default float dtype.
    """
    ys = _tensor_list(ys, "ys")
    xs = _tensor_list(xs, "xs")
    if grad_ys is None:
        cts = [_ONES] * len(ys)
    else:
        cts = [grad_ys] if isinstance(grad_ys, Tensor) else list(grad_ys)
        if len(cts) != len(ys):
            raise GraphadError(f"gradients: {len(cts)} grad_ys for {len(ys)} ys")
        cts = [_ONES if c is None else c for c in cts]
    results = _reverse(ys, xs, cts)
    graph = _graph_of(ys + xs)
    out = []
    with graph.as_default():
        for x, r in zip(xs, results):
            if r is None:
                dt = x.dtype if x.dtype.is_floating else default_float()
                mark = len(graph.nodes)
                r = zeros_like(x, dt)
                _tag(graph, mark, x.node, "vjp")
            out.append(r)
    return out


# ---------------------------------------------------------------------------------------------
# The engine


class _Ones:
    """Marker: the cotangent ones_like(y), built only when y actually needs a seed."""


_ONES = _Ones()


def _reverse(ys, xs, cotangents):
    graph = _graph_of(ys + xs)
    asked = [(y, c) for y, c in zip(ys, cotangents) if c is not None]
    plan = Plan([y for y, _ in asked], xs)
    plan.check_differentiable("vjp")  # an integer y too: gradients(argmax(x), x) raises
    seeded = [(y, c) for y, c in asked if y.dtype.is_floating]
    xset = set(xs)
    cot = {}
    with graph.as_default():
        for y, c in seeded:
            if y not in plan.active:
                continue
            mark = len(graph.nodes)
            if c is _ONES:
                c = ones_like(y)
            else:
                c = fit_cotangent(c if isinstance(c, Tensor) else as_tensor(c, y.dtype), y, None)
            cot.setdefault(y, []).append(c)
            _tag(graph, mark, y.node, "vjp")
        for node in reversed(plan.nodes):
            _backprop_node(graph, node, cot, xset, plan.active)
        results = []
        for x in xs:
            mark = len(graph.nodes)
            results.append(_take(cot, x, keep=True) if x.dtype.is_floating else None)
            _tag(graph, mark, x.node, "vjp")
    return results


def _backprop_node(graph, node, cot, xset, active):
    """Pop the cotangents of `node`'s outputs, apply its VJP, push its inputs' cotangents."""
    mark = len(graph.nodes)
    cts = [_take(cot, o, keep=o in xset) for o in node.outputs]
    if all(c is None for c in cts):
        return
    rule = node.opdef.vjp
    if rule is NOT_DIFFERENTIABLE:
        _tag(graph, mark, node, "vjp")
        return  # another path is differentiable (checked up front): this one adds zero
    if rule is None:
        raise GraphadError(f"no VJP rule for op {node.op!r} (node {node.name!r}, created at "
                           f"{node.location})")
    outer = _STATE.needed  # (rules of control-flow ops run the engine again, nested)
    _STATE.needed = (node, tuple(t in active and t.dtype.is_floating for t in node.inputs))
    try:
        res = verify_rule(node, rule(node, *cts), len(node.inputs), "VJP")
    finally:
        _STATE.needed = outer
    for inp, r in zip(node.inputs, res):
        if r is None or inp not in active or not inp.dtype.is_floating:
            continue  # integer/bool tensors carry no gradient
        cot.setdefault(inp, []).append(fit_cotangent(r, inp, node))
    _tag(graph, mark, node, "vjp")


class _State(threading.local):
    def __init__(self):
        self.needed = None


_STATE = _State()


def needs_gradient(node, i):
    """Whether the reverse engine will use the cotangent a VJP rule returns for input `i` of
    `node`. A rule may return None for unneeded inputs and so skip building dead nodes (a
    constant's cotangent); outside the engine, or for another node, the answer is True."""
    cur = _STATE.needed
    if cur is None or cur[0] is not node:
        return True
    return cur[1][i]


def _take(cot, t, keep):
    """The summed cotangent of `t` (one add_n for all fan-out), popped unless `keep`."""
    parts = cot.get(t) if keep else cot.pop(t, None)
    if not parts:
        return None
    total = parts[0] if len(parts) == 1 else add_n(parts)
    if keep:
        cot[t] = [total]
    return total


def verify_rule(node, res, n, what):
    """Nx's verify: a rule returns exactly one Tensor-or-None per input (VJP) / output (JVP)."""
    per = "input" if what == "VJP" else "output"
    if not isinstance(res, (tuple, list)) or len(res) != n:
        got = f"{len(res)} entries" if isinstance(res, (tuple, list)) else repr(res)
        raise GraphadError(
            f"{what} rule of op {node.op!r} (node {node.name!r}) returned {got}; expected a "
            f"tuple of {n} entries, one per {per} (None for zero)"
        )
    for i, r in enumerate(res):
        if r is not None and not isinstance(r, Tensor):
            raise GraphadError(f"{what} rule of op {node.op!r} (node {node.name!r}) returned "
                               f"{r!r} for {per} {i}; expected a Tensor or None")
    return res


def _tag(graph, mark, origin, mode):
    """Tag the nodes created since `mark` with the forward node they differentiate."""
    for n in graph.nodes[mark:]:
        n.tags.setdefault("grad_of", origin.name)
        n.tags.setdefault("mode", mode)


# ---------------------------------------------------------------------------------------------
# Which nodes lie between xs and ys, and whether a derivative can pass


class Plan:
    """Nodes backward-reachable from `ys` and forward-reachable from `xs`, in schedule order."""

    def __init__(self, ys, xs):
        self.ys, self.xs = list(ys), list(xs)
        graph_len = len(ys[0].graph.nodes) if ys else 0
        lowest = min((x.node.id for x in xs), default=graph_len)  # nothing older depends on xs
        seen, order = set(), []
        stack = [y.node for y in ys if y.node.id >= lowest]
        while stack:
            node = stack.pop()
            if node.id in seen:
                continue
            seen.add(node.id)
            order.append(node)
            for t in node.inputs:
                if t.node.id >= lowest and t.node.id not in seen:
                    stack.append(t.node)
        order.sort(key=_node_id)
        self.active = set(xs)
        self.nodes = []
        for node in order:
            if any(t in self.active for t in node.inputs):
                self.nodes.append(node)
                self.active.update(node.outputs)

    def check_differentiable(self, mode):
        """Raise NotDifferentiableError if some x reaches the ys only through ops whose `mode`
        rule ("vjp" or "jvp") is NOT_DIFFERENTIABLE."""
        need_any = {y for y in self.ys if y in self.active}
        need_diff = set(need_any)
        for node in reversed(self.nodes):
            if not any(o in need_any for o in node.outputs) or node.op == "stop_gradient":
                continue  # stop_gradient cuts the path: what lies behind it gets zero, silently
            skip = shape_only_inputs(node)  # a shape-only input is no path at all
            ins = [t for i, t in enumerate(node.inputs) if t in self.active and i not in skip]
            need_any.update(ins)
            if not _blocks(node, mode) and any(o in need_diff for o in node.outputs):
                need_diff.update(ins)
        for x in self.xs:
            if x.dtype.is_floating and x in need_any and x not in need_diff:
                raise self._blocked_error(x, need_any, mode)

    def _blocked_error(self, x, need_any, mode):
        consumers = {}
        for node in self.nodes:
            for t in node.inputs:
                consumers.setdefault(t, []).append(node)
        frontier, seen, blocker = deque([x]), {x}, None
        while frontier and blocker is None:
            t = frontier.popleft()
            for node in consumers.get(t, ()):
                outs = [o for o in node.outputs if o in need_any]
                if not outs:
                    continue
                if _blocks(node, mode):
                    blocker = node
                    break
                for o in outs:
                    if o not in seen:
                        seen.add(o)
                        frontier.append(o)
        ynames = ", ".join(repr(y.name) for y in self.ys)
        what = f"op {blocker.op!r} (node {blocker.name!r}, created at {blocker.location})"
        return NotDifferentiableError(
            f"cannot differentiate {ynames} with respect to {x.name!r} (created at "
            f"{x.node.location}): every path between them goes through {what}, which has no "
            "derivative"
        )


def _node_id(node):
    return node.id


def _blocks(node, mode):
    """Whether `node` stops derivatives in the NotDifferentiableError sense: an op without a
    `mode` rule that the user built. One a derivative rule built (the mask x > 0 in a VJP of
    relu, tagged "mode") is piecewise constant: its derivative is zero, silently, so higher
    orders of functions with kinks work."""
    return getattr(node.opdef, mode) is NOT_DIFFERENTIABLE and "mode" not in node.tags


# ---------------------------------------------------------------------------------------------
# Shapes and dtypes of cotangents: the one place broadcasting is undone


def fit_cotangent(g, x, node, kind="cotangent"):
    """`g` brought to `x`'s shape (unbroadcast) and dtype; `node` names the rule for errors
    (None: a caller-given seed, `kind` "cotangent" or "tangent")."""
    if g.dtype is x.dtype and g.shape == x.shape and None not in g.shape:
        return g  # the common case, kept cheap: graphs of 100,000 nodes go through here
    _check_compatible(g, x, node, "VJP", kind, "input")
    if g.dtype is not x.dtype and x.dtype.bits > g.dtype.bits:
        g = ops.cast(g, x.dtype)  # widen first, so the reduction runs in the wider dtype
    g = unbroadcast(g, x, node)
    if g.dtype is not x.dtype:
        g = ops.cast(g, x.dtype)
    return g


def unbroadcast(g, x, node=None):
    """Sum `g` over the axes it was broadcast along, to `x`'s shape (and expand it if a rule
    returned it smaller). Static axes use `ops.sum`; axes that unknown dims leave undecidable
    use `sum_to_like`, which decides at run time (a None dim may be fed 1). `node`, the op whose
    rule produced `g`, lets unknown dims with a single possible source count as equal."""
    if node is None and g.shape == x.shape:
        return g  # a seed: the caller promises y's shape
    lead, axes, expand, undecided = _broadcast_axes(g.shape, x.shape, node)
    if undecided or (not hasattr(ops, "sum") and (lead > 0 or axes)):
        return sum_to_like(g, x)
    if lead > 0:
        g = ops.sum(g, axis=tuple(range(lead)))
    if axes:
        g = ops.sum(g, axis=tuple(a - max(lead, 0) for a in axes), keepdims=True)
    if expand:
        g = broadcast_like(g, x)
    return g


def broadcast_like(t, y):
    """`t` broadcast up to the shape of `y` (static when y's shape is known)."""
    if is_static(y.shape) and hasattr(ops, "broadcast_to"):
        return ops.broadcast_to(t, y.shape)
    if hasattr(ops, "broadcast_to_like"):
        return ops.broadcast_to_like(t, y)  # Expand(t, Shape(y))
    return sum_to_like(t, y)


def _broadcast_axes(gs, xs, node=None):
    """How shape `gs` relates to shape `xs`: (extra leading axes of g, axes of g to sum keeping
    dims, whether g must be expanded, whether unknown dims leave it undecidable)."""
    lead = len(gs) - len(xs)
    axes, expand, undecided = [], lead < 0, False
    for i, xd in enumerate(xs):
        j = i + lead
        if j < 0:
            continue  # an axis g lacks: `expand` is set already
        gd = gs[j]
        if gd == xd and isinstance(xd, (int, str)):
            continue
        if xd == 1:
            axes.append(j)  # (a None gd that is 1 at run time sums over one element)
        elif gd == 1:
            expand = True
        elif not isinstance(xd, int) and not isinstance(gd, int) and node is not None and (
            _single_unknown_source(node, len(xs), i)
        ):
            continue  # both unknown, and only one tensor of the op can set this dim
        else:
            undecided = True
    return lead, axes, expand, undecided


def _single_unknown_source(node, rank, i):
    """Whether axis `i` of a rank-`rank` tensor aligned (numpy-style, from the right) with the
    inputs of `node` meets at most one unknown dim (one tensor's None, or one dim name). Then an
    unknown dim of a rule's result there is that dim: there is nothing it could broadcast with.
    """
    sources = set()
    for t in node.inputs:
        k = i - (rank - len(t.shape))
        if k < 0:
            continue
        d = t.shape[k]
        if not isinstance(d, int):
            sources.add(d if isinstance(d, str) else id(t))
    return len(sources) <= 1


def _check_compatible(g, x, node, what, kind, per):
    gs, xs = g.shape, x.shape
    for gd, xd in zip(reversed(gs), reversed(xs)):
        if isinstance(gd, int) and isinstance(xd, int) and gd != xd and 1 not in (gd, xd):
            where = "the given value" if node is None else (
                f"the {what} rule of op {node.op!r} (node {node.name!r}, created at "
                f"{node.location})")
            raise GraphadError(
                f"{where} gave a {kind} of shape {format_shape(gs)} for {per} {x.name!r} of "
                f"shape {format_shape(xs)}: the shapes cannot be broadcast together"
            )


# ---------------------------------------------------------------------------------------------
# Small helpers


def ones_like(x, dtype=None):
    return _filled_like(x, 1, dtype)


def zeros_like(x, dtype=None):
    return _filled_like(x, 0, dtype)


def _filled_like(x, value, dtype):
    dtype = dtype or x.dtype
    scalar = constant(np.asarray(value, dtype=dtype.np), dtype=dtype)
    return scalar if x.shape == () else broadcast_like(scalar, x)


def _tensor_list(v, what):
    items = [v] if isinstance(v, Tensor) else list(v)
    for t in items:
        if not isinstance(t, Tensor):
            raise GraphError(f"{what}: {t!r} is not a Tensor")
    return items


def _graph_of(tensors):
    if not tensors:
        from ..graph import get_default_graph

        return get_default_graph()
    g = tensors[0].graph
    for t in tensors:
        if t.graph is not g:
            raise GraphError(
                f"tensor {t.name!r} belongs to graph {t.graph.name!r}, not {g.name!r}: "
                "derivatives are taken within one graph"
            )
    return g
