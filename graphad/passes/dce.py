"""Dead-code elimination: keep only what the outputs and operations need (bodies included)."""

from ..graph import ancestors
from .rewrite import body_attrs, graph_pass, live_nodes, rebuild

__all__ = ["eliminate_dead_code", "dce"]


def _has_dead(prog):
    """Whether some node of the graph or of a live body is not needed (a cheap scan)."""
    if any(t.node.op != "placeholder" for t in prog.feeds):
        return True  # a fed intermediate tensor: its producers are cut off
    live = live_nodes(prog)
    kept = {id(n) for n in live} | {id(t.node) for t in prog.feeds}
    if len(kept) != len(prog.graph.nodes):
        return True
    stack = list(live)
    while stack:
        node = stack.pop()
        for _, body in body_attrs(node):
            walked = ancestors(body.outputs)
            kept = {id(n) for n in walked} | {id(t.node) for t in body.inputs}
            if len(kept) != len(body.nodes):
                return True
            stack.extend(walked)
    return False


@graph_pass
def eliminate_dead_code(prog):
    """A program whose graph (and bodies) hold only the nodes its outputs/operations need."""
    if not _has_dead(prog):
        return prog
    return rebuild(prog, None)


dce = eliminate_dead_code
