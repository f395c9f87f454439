"""Merging loops that compute the same thing: a loop whose carried updates, condition and scan
outputs are all computed (structurally) by another loop over the same inputs is replaced by that
loop's outputs. The VJP of a loop makes exactly such a pair: the forward "tape" loop repeats the
primal loop and also emits residuals, so the primal loop's work is done twice without this."""

from ..graph import ancestors
from .cse import attrs_key
from .rewrite import graph_pass, live_nodes, rebuild


def fire_probe(b):
    from .licm import fire_probe as fire  # noqa: PLC0415  (licm imports this module)

    fire(b)

__all__ = ["merge_loops"]

_SAME_ATTRS = ("has_trip", "n_carried", "n_xs", "reverse", "length", "on_max")


class _Signatures:
    """Structural ids of body values (hash-consed): equal ids mean equal computations, given
    equal formal inputs (by position) and equal captured outer tensors (by identity)."""

    def __init__(self):
        self.table = {}

    def _id(self, key):
        return self.table.setdefault(key, len(self.table))

    def outputs(self, g):
        """Ids of g.outputs, or None when g holds an impure node (never merged)."""
        if g is None:
            return ()
        ids = {ph: self._id(("in", i, ph.type)) for i, ph in enumerate(g.inputs)}
        for o, ph in g.captures.items():
            c = _outermost(o)  # a captured constant is keyed as the constant itself
            ids[ph] = self._const(c) if c.node.op == "constant" else self._id(("cap", id(c)))
        for n in ancestors(g.outputs):
            if n.op == "placeholder":
                if n.outputs[0] not in ids:
                    return None
                continue
            if not n.opdef.pure or n.control_inputs or n.tags.get("recompute"):
                return None
            if n.op == "constant":
                ids[n.outputs[0]] = self._const(n.outputs[0])
                continue
            try:
                key = (n.op, attrs_key(n.attrs, id), tuple(ids[t] for t in n.inputs))
            except Exception:  # an attribute that cannot be keyed: never merge
                return None
            k = self._id(key)
            for o in n.outputs:
                ids[o] = self._id((k, o.index))
        return tuple(ids[t] for t in g.outputs)

    def _const(self, t):
        return self._id(("constant", attrs_key(t.node.attrs, id)))


def _outermost(t):
    """The tensor a (nested) capture placeholder stands for."""
    while t.node.op == "placeholder" and t.node.attrs.get("captured") and t.node.graph.parent:
        outer = next((o for o, ph in t.node.graph.captures.items() if ph is t), None)
        if outer is None:
            break
        t = outer
    return t


def _prefix(node):
    a = node.attrs
    n = (1 if a["has_trip"] else 0) + a["n_carried"] + a["n_xs"]
    return tuple(_value_key(t) for t in node.inputs[:n]) + tuple(a.get(k) for k in _SAME_ATTRS)


def _value_key(t):
    """Constants by value (two traced `5`s are one trip count), other tensors by identity."""
    if t.node.op == "constant":
        return ("constant", attrs_key(t.node.attrs, id))
    return id(t)


def _covers(sig, big, small):
    """{output index of small: output index of big} when `big` computes all of `small`."""
    nc = small.attrs["n_carried"]
    sb, ss = sig.outputs(big.attrs["body"]), sig.outputs(small.attrs["body"])
    if sb is None or ss is None or sb[:nc] != ss[:nc]:
        return None
    cb, cs = sig.outputs(big.attrs["cond"]), sig.outputs(small.attrs["cond"])
    if cb is None or cb != cs:
        return None
    where = {}
    for i, s in enumerate(sb[nc:]):
        where.setdefault(s, nc + i)
    mapping = {k: k for k in range(nc)}
    for j, s in enumerate(ss[nc:]):
        if s not in where:
            return None
        mapping[nc + j] = where[s]
    return mapping


def find_pairs(prog):
    """{id(loop): (keeper loop, output mapping)} for top-level loops computed by another."""
    loops = [n for n in live_nodes(prog) if n.op == "loop"]
    groups = {}
    for n in loops:
        groups.setdefault(_prefix(n), []).append(n)
    sig, pairs = _Signatures(), {}
    for group in groups.values():
        for i, a in enumerate(group):
            for bb in group[i + 1:]:
                if id(a) in pairs or id(bb) in pairs:
                    continue
                m = _covers(sig, bb, a)
                if m is not None and not _depends(bb, a):
                    pairs[id(a)] = (bb, m)
                    continue
                m = _covers(sig, a, bb)
                if m is not None:
                    pairs[id(bb)] = (a, m)
    return pairs


def _depends(later, earlier):
    return any(n is earlier for n in ancestors(later.inputs))


@graph_pass
def merge_loops(prog, fires=None):
    """Replace loops computed by another loop (see the module docstring); top-level loops."""
    pairs = find_pairs(prog)
    if not pairs:
        return prog

    def rewrite(node, inputs, b):
        hit = pairs.get(id(node))
        if hit is None or b.graph.parent is not None:
            return None
        keeper, mapping = hit
        fire_probe(b)
        if keeper.id > node.id:  # the keeper comes later: replay it now, out of order
            b._replayer.replay(node.graph, b.graph, b.env, b.nodes, list(keeper.outputs))
        b.fired("merge loops")
        return [b.get(keeper.outputs[mapping[i]]) for i in range(len(node.outputs))]

    return rebuild(prog, rewrite, fires=fires)
