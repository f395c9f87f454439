"""A graph pass: let a loop's tape loop (made by its VJP) also give the loop's own outputs.

Reverse mode retraces a loop in a "tape" loop that returns the same carried values and ys plus
the residuals (control_tape.py); when a program needs both the loop's outputs (a loss value, the
seed of its gradient) and the gradient, the forward pass would run twice. This pass replaces the
loop's outputs by the tape loop's first outputs, so it runs once. Meant to run early in the
pipeline (before passes that rewrite loop bodies); it returns the program unchanged when no
such pair is live.
"""

from ..graph import Graph, ancestors
from .control import make_loop, split_loop_inputs
from .control_grad import copy_cond, finish, new_body, replay

__all__ = ["merge_taped_loops"]


def _pairs(prog):
    """{loop node: its tape loop} for pairs that are both live and share their inputs."""
    from ..passes.rewrite import live_nodes  # noqa: PLC0415  (the passes import the ops)

    stack, found = [live_nodes(prog)], {}
    while stack:
        nodes = stack.pop()
        by_uid = {}
        for n in nodes:
            if n.op == "loop":
                by_uid.setdefault(n.attrs.get("uid"), []).append(n)
        for n in nodes:
            mark = n.attrs.get("tape_of") if n.op == "loop" else None
            if mark is None:
                continue
            uid, n_src, n_tape = mark
            for src in by_uid.get(uid, ()):
                # still the pair the VJP made: same graph, shared inputs, untouched arities
                if (src.graph is n.graph and src not in found and src is not n
                        and len(src.outputs) == n_src and len(n.outputs) == n_tape
                        and set(map(id, n.inputs)) <= set(map(id, src.inputs))):
                    found[src] = n
                    break
            stack.extend(ancestors(v.outputs) for v in n.attrs.values() if type(v) is Graph)
    return found


def _copy_loop(t, b):
    """A copy of loop node `t` in the graph being built (its inputs mapped by the builder)."""
    a = t.attrs
    m, inits, xs, bcaps, ccaps = split_loop_inputs(t, [b.get(x) for x in t.inputs])
    body = a["body"]
    nb, ph = new_body(b.graph, body.name, [p.type for p in body.inputs])
    finish(nb, replay(body, nb, ph, bcaps))
    cnd = None
    if a["cond"] is not None:
        cnd = copy_cond(_Shim(t, b.graph), ccaps)
    return make_loop(b.graph, m, inits, xs, nb, cnd, length=a["length"], reverse=a["reverse"],
                     name=t.name, location=t.location, checkpoint=a.get("checkpoint"),
                     on_max=a.get("on_max", "stop"), label=a.get("label"),
                     tags=dict(t.tags), tape_of=a.get("tape_of"))


class _Shim:
    """What copy_cond reads of a node: its attrs and the graph to build in."""

    def __init__(self, node, graph):
        self.attrs, self.graph = node.attrs, graph


def merge_taped_loops(prog):
    """Program -> Program (the same object when nothing changes); see the module docstring."""
    from ..passes.rewrite import rebuild  # noqa: PLC0415

    pairs = _pairs(prog)
    if not pairs:
        return prog

    def rewrite(node, inputs, b):
        if node.op != "loop":
            return None
        # keyed by the new graph too: a body graph shared by several nodes is rebuilt per node
        done = b.ctx.setdefault("merged", {})
        if (b.graph, node) in done:  # the tape loop itself, already copied at its source
            return done[(b.graph, node)]
        tape = pairs.get(node)
        if tape is None:
            return None
        new = _copy_loop(tape, b)
        done[(b.graph, tape)] = new.outputs
        return new.outputs[:len(node.outputs)]

    # no probe: the pairs are known, and probing would build the copies into the old graph
    return rebuild(prog, rewrite, probe=False)
