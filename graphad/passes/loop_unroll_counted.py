"""Counted loops with small bodies unrolled k times, with a remainder loop for the last T mod k
trips; the trip count may be known only at run time (a counter loop after precount_loops).

onnxruntime's Loop costs about 0.5 µs per trip on top of its body's nodes, which for a body of
two or three small nodes is half the time. k copies of the body per trip divide that by k. Each
trip stacks the k steps' scan outputs with one Concat, so the stacked result, reshaped once,
has the original layout (T, ...). W3's forward loop (FusedGemm + GatedAdd per step), measured by
hand on the exported model: 2.37 ms at k = 1, 1.81 ms at k = 8, 1.73 ms at k = 20.

Only loops with a run-time trip count that scan no xs, have no condition, do not read the
iteration number and whose scan outputs have a static shape of rank >= 1 qualify; the loops made
here are tagged and left alone (a static trip count is licm.unroll_loops' business).
"""

import numpy as np

from ..graph import Graph, ancestors
from ..registry import lookup
from .loop_rebody import _copy_nodes, _placeholder
from .rewrite import graph_pass, has_op, rebuild

__all__ = ["unroll_counted_loops", "MAX_BODY_NODES", "MAX_UNROLL"]

MAX_BODY_NODES = 8  # larger bodies: the per-trip overhead is a small part of their time
MAX_UNROLL = 32
_TAG = "unrolled"  # the main loop: k steps per trip (the tag's value)
_REST = "unrolled_rest"  # its remainder loop


def _factor(a, node, m):
    """The unroll factor for loop attrs `a`, or None when the loop does not qualify. A trip
    count known while building (`m` a constant) is left to licm's unroll_loops."""
    if node.tags.get(_TAG) or node.tags.get(_REST) or not a["has_trip"] or a["cond"] is not None \
            or a["n_xs"] or m.node.op == "constant":
        return None
    body, nc = a["body"], a["n_carried"]
    nodes = [n for n in ancestors(body.outputs) if n.op != "placeholder"]
    if not nodes or len(nodes) > MAX_BODY_NODES or any(n.op == "loop" for n in nodes):
        return None
    if any(body.inputs[0] in n.inputs for n in nodes) or body.inputs[0] in body.outputs:
        return None  # reads the iteration number
    if any(not t.shape or not all(isinstance(d, int) for d in t.shape)
           for t in body.outputs[nc:]):
        return None
    return max(2, min(MAX_UNROLL, 96 // len(nodes)))


def _unrolled_body(body, nc, k, parent):
    """k chained copies of `body`: one trip of the new loop is k trips of the old one."""
    nb = Graph(name=f"{body.name}_x{k}", parent=parent)
    caps = {ph: o for o, ph in body.captures.items()}
    concat = lookup("concat")
    with nb.as_default():
        it = _placeholder(nb, body.inputs[0], "iter")
        carried = [_placeholder(nb, ph, f"carried{j}") for j, ph in enumerate(body.inputs[1:])]
        first = list(carried)
        ys = [[] for _ in body.outputs[nc:]]
        cap_env = {body.captures[o]: nb.capture(o) for o in body.captures}
        for _ in range(k):
            env = dict(cap_env)
            env[body.inputs[0]] = it
            env.update(zip(body.inputs[1:], carried))
            outs = _copy_nodes(body, nb, env, list(body.outputs), caps)
            carried = outs[:nc]
            for acc, y in zip(ys, outs[nc:]):
                acc.append(y)
        stacked = [nb.add_node(concat, acc, {"axis": 0}, name="unrolled_ys").outputs[0]
                   for acc in ys]
    nb.inputs = [it] + first
    nb.outputs = list(carried) + stacked
    return nb


@graph_pass
def unroll_counted_loops(prog, fires=None, declines=None):
    """Unroll small counted loops k times plus a remainder loop (module docstring)."""
    def rewrite(node, inputs, b):
        if node.op != "loop":
            return None
        k = _factor(b.attrs, node, inputs[0])
        if k is None:
            return None
        from .licm import fire_probe  # noqa: PLC0415  (licm imports the loop passes)

        fire_probe(b)
        b.fired("counted loop unrolled")
        return _emit(node, inputs, b, k)

    if not has_op(prog, "loop"):
        return prog  # no loop at all: nothing to rebuild (W4's 300,000 nodes)
    return rebuild(prog, rewrite, fires=fires, declines=declines)


def _split_trips(G, m, k):
    """(m // k, m mod k) for a non-negative int64 trip count `m` (exact in float64 below 2**53;
    graphad has no integer division)."""
    from .. import ops  # noqa: PLC0415

    with G.as_default():
        q = ops.cast(ops.floor(ops.cast(m, "float64") / float(k)), "int64")
        return q, m - q * np.int64(k)


def _emit(node, inputs, b, k):
    from .. import ops  # noqa: PLC0415

    a, G = b.attrs, b.graph
    nc = a["n_carried"]
    loop = lookup("loop")
    m, inits = inputs[0], list(inputs[1:1 + nc])
    body = a["body"]
    blocks, rest = _split_trips(G, m, k)
    ub = _unrolled_body(body, nc, k, G)
    attrs = dict(a, length=None)
    attrs.pop("tape_of", None)
    main = G.add_node(loop, [blocks] + inits + list(ub.captures), dict(attrs, body=ub),
                      name=node.name, tags=dict(node.tags, **{_TAG: k}), location=node.location)
    tail = G.add_node(loop, [rest] + list(main.outputs[:nc]) + list(inputs[1 + nc:]), attrs,
                      name=f"{node.name}/rest", tags=dict(node.tags, **{_REST: True}),
                      location=node.location)
    outs = list(tail.outputs[:nc])
    with G.as_default():
        for j, old in enumerate(node.outputs[nc:]):
            step_shape = tuple(body.outputs[nc + j].shape)
            flat = ops.reshape(main.outputs[nc + j], (-1,) + step_shape)
            ys = ops.concat([flat, tail.outputs[nc + j]], 0)
            if ys.shape != old.shape and all(isinstance(d, int) for d in old.shape):
                ys = ops.reshape(ys, old.shape)  # a static trip count keeps its static length
            outs.append(ys)
    return outs
