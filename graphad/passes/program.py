"""Programs: an immutable view of what to compute (graph, outputs, operations, feeds) and the
queries every pass shares (live nodes, body graphs, sizes); `graph_pass` lets a pass take either
a Program or a pytree of outputs."""

import functools

from .. import tree
from ..errors import GraphError
from ..graph import Graph, Operation, Tensor, ancestors

__all__ = ["Program", "body_attrs", "live_nodes", "count_nodes", "graph_size", "graph_pass"]


class Program:
    """What to compute: `graph`, `outputs`, `operations`, `feeds` (tuples). Immutable."""

    __slots__ = ("graph", "outputs", "operations", "feeds", "_live")

    def __init__(self, graph, outputs=(), operations=(), feeds=()):
        object.__setattr__(self, "graph", graph)
        object.__setattr__(self, "outputs", tuple(outputs))
        object.__setattr__(self, "operations", tuple(operations))
        object.__setattr__(self, "feeds", tuple(feeds))
        object.__setattr__(self, "_live", None)

    def __setattr__(self, k, v):
        raise AttributeError("Program is immutable; use .replace(...)")

    def replace(self, **kw):
        d = {k: getattr(self, k) for k in ("graph", "outputs", "operations", "feeds")}
        d.update(kw)
        return Program(**d)

    @classmethod
    def from_outputs(cls, outputs, feeds=None):
        """(Program, rebuild_fn) for a pytree of Tensors/Operations; `rebuild_fn(prog)` gives the
        same pytree of the new program's outputs/operations. Feeds default to the placeholders
        the outputs need (captured ones excepted), in schedule order."""
        leaves, td = tree.flatten(outputs)
        outs, ops = [], []
        for x in leaves:
            if isinstance(x, Operation):
                ops.append(x)
            elif isinstance(x, Tensor):
                outs.append(x)
            else:
                raise GraphError(f"passes take Tensors or Operations, got {x!r}")
        graphs = {id(x.graph): x.graph for x in leaves}
        if len(graphs) > 1:
            raise GraphError("passes take outputs of one graph; got tensors of "
                             + ", ".join(repr(g.name) for g in graphs.values()))
        if not leaves:
            raise GraphError("passes need at least one output")
        graph = leaves[0].graph
        if feeds is None:
            feeds = [n.outputs[0] for n in ancestors(leaves)
                     if n.op == "placeholder" and not n.attrs.get("captured")]
        prog = cls(graph, outs, ops, feeds)

        def unpack(new):
            it_o, it_p = iter(new.outputs), iter(new.operations)
            return tree.unflatten(td, [next(it_p) if isinstance(x, Operation) else next(it_o)
                                       for x in leaves])

        return prog, unpack

    @property
    def roots(self):
        return self.outputs + self.operations

    def __repr__(self):
        return (f"<Program {self.graph.name!r}: {len(self.outputs)} outputs, "
                f"{len(self.operations)} operations, {len(self.feeds)} feeds, "
                f"{count_nodes(self)} live nodes>")


def body_attrs(node):
    """[(attr key, Graph)] of a node's body graphs, in attrs order (the order of its captures)."""
    a = node.attrs
    if not a:
        return ()
    return [(k, v) for k, v in a.items() if type(v) is Graph or isinstance(v, Graph)]


def live_nodes(prog):
    """Nodes of prog.graph that the outputs and operations need (feeds cut), schedule order.
    Cached on the program (graphs only grow, so the set never changes); do not mutate it."""
    live = prog._live
    if live is None:
        fed = set(prog.feeds)
        live = ancestors(prog.roots, stop=fed.__contains__)
        object.__setattr__(prog, "_live", live)
    return live


def count_nodes(prog):
    """Live nodes of a program, the live nodes of the bodies of live nodes included."""
    total = 0
    stack = [live_nodes(prog)]
    while stack:
        nodes = stack.pop()
        total += len(nodes)
        for n in nodes:
            a = n.attrs
            if a:
                stack.extend(ancestors(v.outputs) for v in a.values() if type(v) is Graph)
    return total


def has_op(prog, op):
    """Whether a live node of the program, or of the bodies of live nodes, is an `op` (a cheap
    test that lets a pass return its input unchanged without a rebuild)."""
    stack = [live_nodes(prog)]
    while stack:
        for n in stack.pop():
            if n.op == op:
                return True
            a = n.attrs
            if a:
                stack.extend(ancestors(v.outputs) for v in a.values() if type(v) is Graph)
    return False


def count_uses(prog):
    """{id(tensor): number of uses} over the live nodes of the program and of their bodies
    (outputs count as uses; dead consumers do not, so a rebuild that drops them changes
    nothing)."""
    uses = {}
    for t in prog.outputs:
        uses[id(t)] = uses.get(id(t), 0) + 1
    stack = [live_nodes(prog)]
    while stack:
        for n in stack.pop():
            for t in n.inputs:
                uses[id(t)] = uses.get(id(t), 0) + 1
            for _, body in body_attrs(n):
                for t in body.outputs:
                    uses[id(t)] = uses.get(id(t), 0) + 1
                stack.append(ancestors(body.outputs))
    return uses


def graph_size(graph):
    """All nodes of a graph and of the bodies its nodes hold (dead ones too)."""
    total = 0
    stack = [graph]
    while stack:
        g = stack.pop()
        total += len(g.nodes)
        for n in g.nodes:
            a = n.attrs
            if a:
                stack.extend(v for v in a.values() if type(v) is Graph)
    return total


# ---------------------------------------------------------------------------------------------
# Pass wrapper: Program or pytree of outputs


def graph_pass(fn):
    """Make `fn(prog, **kw) -> prog` also accept a pytree of Tensors (returning new outputs)."""

    @functools.wraps(fn)
    def wrapper(x, **kw):
        if isinstance(x, Program):
            return fn(x, **kw)
        prog, unpack = Program.from_outputs(x)
        return unpack(fn(prog, **kw))

    wrapper.is_graph_pass = True
    return wrapper
