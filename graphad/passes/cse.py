"""Common-subexpression elimination by structural hashing: (op, inputs, attrs, control inputs),
inside body graphs too, and across them (a body node equal to a node of an enclosing graph reads
that node's value through a capture). Never merges impure ops, `recompute`-tagged nodes or
`remat_barrier` (checkpointing relies on recomputed values staying separate)."""

import numpy as np

from ..graph import Graph
from .rewrite import graph_pass, rebuild

__all__ = ["cse", "eliminate_common_subexpressions", "attrs_key", "NEVER_MERGE"]

NEVER_MERGE = frozenset({"remat_barrier"})
_BIG = 1 << 16  # arrays larger than this are keyed by a digest of their bytes


def value_key(v, graph_key):
    """A hashable key for an attribute value: equal keys mean interchangeable values.

    Floats are keyed by their bits (0.0 and -0.0 differ, NaN equals NaN), Python types are
    part of the key (True is not 1), numpy arrays by dtype/shape/bytes, Graphs structurally
    (`graph_key`), anything else (functions, user objects) by identity.
    """
    t = type(v)
    if t is float:
        return ("f", v.hex())
    if t in (int, bool, str) or v is None:
        return (t.__name__, v)
    if t in (tuple, list):
        return (t.__name__,) + tuple(value_key(x, graph_key) for x in v)
    if t is dict:
        return ("dict",) + tuple(sorted((str(k), value_key(x, graph_key)) for k, x in v.items()))
    if isinstance(v, (np.ndarray, np.generic)):
        a = np.asarray(v)
        data = a.tobytes()
        if len(data) > _BIG:
            import hashlib  # noqa: PLC0415

            data = hashlib.blake2b(data, digest_size=20).digest()
        return ("nd", a.dtype.str, a.shape, data)
    if isinstance(v, Graph):
        return ("graph", graph_key(v))
    try:
        hash(v)
    except TypeError:
        return ("id", id(v))
    if t.__module__.startswith("graphad") and t.__name__ in ("DType", "TreeDef", "TensorType"):
        return (t.__name__, v)
    return ("id", id(v))


def attrs_key(attrs, graph_key):
    return tuple((k, value_key(v, graph_key)) for k, v in attrs.items())


class _Hasher:
    """Structural keys of nodes (by input identity) and of body graphs (by shape of dataflow)."""

    def __init__(self):
        self.graph_keys = {}
        self.outer = {}  # id(body) -> {capture placeholder: outer tensor}

    def graph_key(self, g):
        k = self.graph_keys.get(id(g))
        if k is None:
            k = self._graph_key(g)
            self.graph_keys[id(g)] = (k, g)  # keep g alive: ids must not be reused
            return k
        return k[0]

    def _graph_key(self, g):
        """Nodes of g with inputs as (position, output) pairs; formal inputs by index; captures
        by their index among the captures (the node's matching inputs are in its own key)."""
        pos = {}
        caps = {ph: i for i, ph in enumerate(g.captures.values())}
        formals = {ph: i for i, ph in enumerate(g.inputs)}
        items = []
        for i, n in enumerate(g.nodes):
            pos[id(n)] = i
            if n.op == "placeholder":
                t = n.outputs[0]
                items.append(("in", formals.get(t), caps.get(t), t.type))
                continue
            ins = tuple((pos[id(t.node)], t.index) for t in n.inputs)
            items.append((n.op, ins, attrs_key(n.attrs, self.graph_key),
                          tuple(pos[id(c)] for c in n.control_inputs)))
        outs = tuple((pos[id(t.node)], t.index) for t in g.outputs)
        return (tuple(items), outs)

    def canonical(self, t):
        """The tensor a value stands for: a capture placeholder stands for its outer tensor."""
        while True:
            g = t.node.graph
            if g.parent is None or not t.node.attrs.get("captured"):
                return t
            m = self.outer.get(id(g))
            if m is None or len(m) != len(g.captures):
                m = {ph: o for o, ph in g.captures.items()}
                self.outer[id(g)] = m
            o = m.get(t)
            if o is None:
                return t
            t = o


def mergeable(node):
    return (node.opdef.pure and node.outputs and node.op not in NEVER_MERGE
            and not node.tags.get("recompute"))


def make_cse():
    """The CSE rewrite function; its table lives in `b.ctx` (one per rebuild or probe)."""

    def rewrite(node, inputs, b):
        if not mergeable(node):
            return None
        ctx = b.ctx
        h = ctx.get("cse_hasher")
        if h is None:
            h = ctx["cse_hasher"] = _Hasher()
            ctx["cse_table"] = {}
        table = ctx["cse_table"]
        try:
            key = (node.op, tuple(id(h.canonical(t)) for t in inputs),
                   attrs_key(b.attrs, h.graph_key),
                   tuple(id(b.nodes.get(id(c))) for c in node.control_inputs))
            if not inputs:  # constants and other sources: merged within a graph only (an
                key = key + (id(b.graph),)  # initializer either way; a capture gains nothing)
        except Exception:  # an attribute we cannot key: never merge it
            return None
        hit = table.get(key)
        if hit is not None and b.graph.encloses(hit[0].node.graph):
            b.fired("cse")
            return hit
        outs = b.copy()  # a plain copy: not a change
        table[key] = outs
        return outs

    return rewrite


@graph_pass
def eliminate_common_subexpressions(prog):
    """Merge structurally equal pure nodes (see the module docstring)."""
    return rebuild(prog, make_cse())


cse = eliminate_common_subexpressions
