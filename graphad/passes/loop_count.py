"""While loops driven by a counter, run as counted loops.

A while loop whose condition reads only a counter `t` that the body advances by an invariant
step (`t <- t + d`, nothing else reading t) runs its trips in a known order of counter values:
t0, t0 + d, (t0 + d) + d, ... Those values come out of one running sum (cumsum adds left to
right, so they are bit-equal to the loop's own additions), the condition is evaluated on a block
of them at once, and the trip count T is the number of leading trues. A small loop over blocks
of BLOCK counters finds T (and the final counter); the original loop then runs as a counted
loop (ONNX Loop with M = T and no condition) without the counter: two nodes less per trip (the
Add and the condition). W3's `while t < 1.0: t += h` is this case.

Only conditions built from ops that are exact elementwise (comparisons, + - * /, min/max,
logical ops, casts, where) qualify, so evaluating them on a vector gives the same booleans as
on each scalar; a bounded loop (max_iterations) or one that scans xs is left alone.
"""

import numpy as np

from ..graph import Graph, ancestors, get_default_graph
from ..registry import lookup
from .loop_rebody import _copy_nodes, _placeholder
from .rewrite import graph_pass, has_op, rebuild

__all__ = ["precount_loops", "BLOCK"]

BLOCK = 256  # counters per block: a few blocks for W3's 1,000 trips, one for short loops
_EXACT = frozenset({
    "less", "less_equal", "greater", "greater_equal", "equal", "not_equal", "logical_and",
    "logical_or", "logical_not", "add", "subtract", "multiply", "divide", "negative", "abs",
    "maximum", "minimum", "cast", "where", "floor", "ceil", "sign",
})  # fmt: skip


def _counter(a):
    """(k, step tensor of the body) when loop attrs `a` match the module docstring, else None."""
    if a["cond"] is None or a["has_trip"] or a["n_xs"] or a.get("on_max", "stop") != "stop":
        return None
    body, cond = a["body"], a["cond"]
    cnodes = [n for n in ancestors(cond.outputs) if n.op != "placeholder"]
    read = [k for k, ph in enumerate(cond.inputs)
            if any(ph in n.inputs for n in cnodes) or ph in cond.outputs]
    if len(read) != 1 or any(n.op not in _EXACT and n.op != "constant" for n in cnodes):
        return None
    k = read[0]
    t = body.inputs[1 + k]
    if t.shape != () or t.dtype.name not in ("float32", "float64", "int32", "int64"):
        return None  # the dtypes onnxruntime's CumSum has kernels for
    live = ancestors(body.outputs)
    users = [n for n in live if t in n.inputs]
    nxt = body.outputs[k]
    if len(users) != 1 or users[0] is not nxt.node or nxt.node.op != "add" \
            or t in body.outputs or nxt in body.outputs[:k] + body.outputs[k + 1:] \
            or any(nxt in n.inputs for n in live):
        return None
    d = [x for x in nxt.node.inputs if x is not t]
    if len(d) != 1 or d[0].shape != () or d[0].dtype is not t.dtype or not _invariant(body, d[0]):
        return None
    return k, d[0]


def _invariant(body, x):
    if x.node.op == "constant":
        return True
    return x.node.op == "placeholder" and x in body.captures.values()


@graph_pass
def precount_loops(prog, fires=None, declines=None):
    """Counter-driven while loops as counted loops (module docstring)."""
    def rewrite(node, inputs, b):
        if node.op != "loop":
            return None
        found = _counter(b.attrs)
        if found is None:
            return None
        from .licm import fire_probe  # noqa: PLC0415  (licm imports the loop passes)

        fire_probe(b)
        b.fired("counter loop counted ahead")
        return _emit(node, inputs, b, *found)

    if not has_op(prog, "loop"):
        return prog  # no loop at all: nothing to rebuild (W4's 300,000 nodes)
    return rebuild(prog, rewrite, fires=fires, declines=declines)


def _outer_step(body, d, graph):
    """The loop-graph tensor for the body's step `d` (a constant or a capture)."""
    if d.node.op == "constant":
        return graph.add_node(d.node.opdef, (), d.node.attrs, name="counter_step",
                              location=d.node.location).outputs[0]
    return next(o for o, ph in body.captures.items() if ph is d)


def _count_trips(G, a, inputs, k, d):
    """(trip count int64, final counter) of the loop, by blocks of BLOCK counters."""
    from .. import ops  # noqa: PLC0415
    from ..build import constant  # noqa: PLC0415
    from ..ops.accumulate import cumsum  # noqa: PLC0415
    from ..ops.control import while_loop  # noqa: PLC0415
    from ..ops.control_grad import replay  # noqa: PLC0415

    cond, nc = a["cond"], a["n_carried"]
    inits = list(inputs[:nc])
    step = _outer_step(a["body"], d, G)
    with G.as_default():
        steps = ops.broadcast_to(step, (BLOCK,))

        def block(s):
            t, trips, _ = s
            seq = cumsum(ops.concat([ops.reshape(t, (1,)), steps], 0), 0)  # t .. t + BLOCK d
            args = list(inits)
            args[k] = seq[:BLOCK]
            ok = replay(cond, get_default_graph(), args, list(cond.captures))[0]
            flags = ops.concat([ops.cast(ok, "int32"), ops.zeros((1,), "int32")], 0)
            first = ops.cast(ops.argmin(flags), "int64")  # leading trues: the trips it runs
            return ops.gather(seq, first), trips + first, ops.equal(first, np.int64(BLOCK))

        t, trips, _ = while_loop(lambda s: s[2], block,
                                 (inits[k], constant(np.int64(0)), constant(True)),
                                 name="count trips")
    return trips, t


def _emit(node, inputs, b, k, d):
    a, G = b.attrs, b.graph
    nc = a["n_carried"]
    trips, t_final = _count_trips(G, a, inputs, k, d)
    body = a["body"]
    nb = Graph(name=body.name, parent=G)
    caps = {ph: o for o, ph in body.captures.items()}
    keep = [j for j in range(nc) if j != k]
    with nb.as_default():
        env = {body.inputs[0]: _placeholder(nb, body.inputs[0], "iter")}
        for j in keep:
            env[body.inputs[1 + j]] = _placeholder(nb, body.inputs[1 + j], f"carried{j}")
        outs = _copy_nodes(body, nb, env, [body.outputs[j] for j in keep]
                           + list(body.outputs[nc:]), caps)
    nb.inputs = [env[body.inputs[0]]] + [env[body.inputs[1 + j]] for j in keep]
    nb.outputs = outs
    ins = [trips] + [inputs[j] for j in keep] + list(nb.captures)
    attrs = dict(a, body=nb, cond=None, has_trip=True, n_carried=len(keep))
    attrs.pop("tape_of", None)  # merge_taped_loops pairs loops by structure this changed
    new = G.add_node(lookup("loop"), ins, attrs, name=node.name, tags=dict(node.tags),
                     location=node.location)
    res = list(new.outputs[:len(keep)])
    res.insert(k, t_final)
    return res + list(new.outputs[len(keep):])
