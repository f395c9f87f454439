"""Forward mode: emits the Jacobian-vector product of `ys` with respect to `xs` as ordinary graph
nodes, visiting the nodes between them once, in schedule (topological) order."""

from .. import ops
from ..build import as_tensor
from ..errors import GraphadError
from ..graph import Tensor
from ..ops.accumulate import add_n, sum_to_like
from ..registry import NOT_DIFFERENTIABLE
from .autodiff import (
    Plan,
    _broadcast_axes,
    _check_compatible,
    _graph_of,
    _tag,
    _tensor_list,
    broadcast_like,
    fit_cotangent,
    verify_rule,
)

__all__ = ["jvp"]


def jvp(ys, xs, tangents):
    """Tangents of `ys` given `tangents` (one per x, None = zero) of `xs`.

    Returns one entry per y: a Tensor of y's shape and dtype, or None when no tangent reaches y
    (unconnected, integer output, or blocked by stop_gradient). Raises NotDifferentiableError
    when a y depends on an x only through ops that have no derivative.
    """
    ys = _tensor_list(ys, "ys")
    xs = _tensor_list(xs, "xs")
    tangents = list(tangents)
    if len(tangents) != len(xs):
        raise GraphadError(f"jvp: {len(tangents)} tangents for {len(xs)} inputs")
    graph = _graph_of(ys + xs)
    seeded = [(x, t) for x, t in zip(xs, tangents) if t is not None and x.dtype.is_floating]
    plan = Plan(ys, [x for x, _ in seeded])
    plan.check_differentiable("jvp")
    yset = set(ys)
    uses = {}
    for node in plan.nodes:
        for t in node.inputs:
            uses[t] = uses.get(t, 0) + 1
    tan = {}
    with graph.as_default():
        for x, t in seeded:
            mark = len(graph.nodes)
            t = t if isinstance(t, Tensor) else as_tensor(t, x.dtype)
            t = fit_cotangent(t, x, None, "tangent")  # a tangent has x's shape and dtype
            tan[x] = add_n([tan[x], t]) if x in tan else t
            _tag(graph, mark, x.node, "jvp")
        for node in plan.nodes:
            _push_node(graph, node, tan)
            for t in node.inputs:  # release tangents whose last consumer has run
                uses[t] -= 1
                if uses[t] == 0 and t not in yset:
                    tan.pop(t, None)
    return [tan.get(y) if y.dtype.is_floating else None for y in ys]


def _push_node(graph, node, tan):
    """Apply `node`'s JVP rule to its inputs' tangents; record its outputs' tangents."""
    ins = [tan.get(t) for t in node.inputs]
    if all(t is None for t in ins):
        return
    rule = node.opdef.jvp
    if rule is NOT_DIFFERENTIABLE:
        return  # another path is differentiable (checked up front): this one adds zero
    if rule is None:
        raise GraphadError(f"no JVP rule for op {node.op!r} (node {node.name!r}, created at "
                           f"{node.location})")
    mark = len(graph.nodes)
    res = verify_rule(node, rule(node, *ins), len(node.outputs), "JVP")
    for o, r in zip(node.outputs, res):
        if r is None or not o.dtype.is_floating:
            continue  # integer/bool outputs carry no tangent
        r = fit_tangent(r, o, node)
        tan[o] = add_n([tan[o], r]) if o in tan else r  # an x downstream of another x
    _tag(graph, mark, node, "jvp")


def fit_tangent(t, y, node):
    """`t` brought to `y`'s dtype and broadcast up to `y`'s shape (rules may return it smaller).
    A tangent larger than its output is a rule bug and raises a GraphadError naming the op."""
    _check_compatible(t, y, node, "JVP", "tangent", "output")
    if t.dtype is not y.dtype:
        t = ops.cast(t, y.dtype)
    lead, axes, expand, undecided = _broadcast_axes(t.shape, y.shape, node)
    if lead > 0 or any(isinstance(t.shape[j], int) and t.shape[j] != 1 for j in axes):
        raise GraphadError(
            f"the JVP rule of op {node.op!r} (node {node.name!r}, created at {node.location}) "
            f"gave a tangent of shape {t.shape} for output {y.name!r} of shape {y.shape}: "
            "larger than the output"
        )
    if undecided or axes:
        return sum_to_like(t, y)
    if expand:
        return broadcast_like(t, y)
    return t
